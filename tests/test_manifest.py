from pathlib import Path

import pandas as pd
import pytest

from maskreid.data.manifest import read_manifest, summarize, write_manifest
from maskreid.data.market import DatasetFormatError, scan_market_folder


def test_summary_counts_and_protocol_checks(market_folder: Path) -> None:
    summary = summarize(scan_market_folder(market_folder), "mini")
    assert summary.images == {"train": 4, "query": 2, "gallery": 5}
    assert summary.ids == {"train": 2, "query": 2, "gallery": 3}   # 10, 11 and the distractor id 0
    assert summary.junk_gallery_images == 1 and summary.distractor_gallery_images == 1
    # query 0010 (cam 1) has 0010 under cam 2 in the gallery; query 0011 (cam 2) has it under cam 1.
    assert summary.queries_without_cross_camera_match == 0
    assert summary.cameras == 3


def test_query_without_cross_camera_match_is_reported(market_folder: Path) -> None:
    (market_folder / "bounding_box_test" / "0011_c1s1_000200_01.jpg").rename(
        market_folder / "bounding_box_test" / "0011_c2s1_000200_01.jpg")
    summary = summarize(scan_market_folder(market_folder), "mini")
    assert summary.queries_without_cross_camera_match == 1
    assert "1 of 2 queries" in summary.warnings[0]


def test_ids_shared_by_train_and_test_are_an_error(market_folder: Path) -> None:
    (market_folder / "bounding_box_train" / "0002_c1s1_000451_03.jpg").rename(
        market_folder / "bounding_box_train" / "0010_c1s1_000451_03.jpg")
    with pytest.raises(DatasetFormatError, match="both train and test"):
        summarize(scan_market_folder(market_folder), "mini")


def test_write_and_read_back(market_folder: Path, tmp_path: Path) -> None:
    df = scan_market_folder(market_folder)
    write_manifest(df, summarize(df, "mini"), tmp_path / "out")
    back = read_manifest(tmp_path / "out" / "manifest.csv")
    pd.testing.assert_frame_equal(back, df.reset_index(drop=True))
    assert '"dataset": "mini"' in (tmp_path / "out" / "summary.json").read_text()
    assert not list((tmp_path / "out").glob("*.tmp"))

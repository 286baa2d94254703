from pathlib import Path

import pytest

from maskreid.data.market import DatasetFormatError, parse_market_name, scan_market_folder


@pytest.mark.parametrize("name, pid, camid", [
    ("0002_c1s1_000451_03.jpg", 2, 1),
    ("-1_c1s1_000401_03.jpg", -1, 1),
    ("0000_c6s2_064744_01.jpg", 0, 6),
    ("0001_c2_f0046182.jpg", 1, 2),          # DukeMTMC-reID
    ("1467_c10s1_000001_00.jpg", 1467, 10),  # camera ids are not limited to one digit
])
def test_parse_market_name(name: str, pid: int, camid: int) -> None:
    parsed = parse_market_name(name)
    assert (parsed.pid, parsed.camid) == (pid, camid)


@pytest.mark.parametrize("bad", ["Thumbs.db", "c1_0002.jpg", "0002c1s1.jpg", "abcd_c1s1_000451_03.jpg", "-2_c1.jpg"])
def test_parse_market_name_rejects_with_expected_form(bad: str) -> None:
    with pytest.raises(DatasetFormatError, match="PPPP_cC"):
        parse_market_name(bad)


def test_scan_keeps_junk_and_distractors_and_ignores_thumbs(market_folder: Path) -> None:
    df = scan_market_folder(market_folder, max_camera=6)
    assert len(df) == 11
    assert (df.split == "train").sum() == 4 and (df.split == "query").sum() == 2
    gallery = df[df.split == "gallery"]
    assert sorted(gallery.pid.tolist()) == [-1, 0, 10, 10, 11]
    assert not df.path.str.contains("Thumbs").any()


def test_scan_missing_split_folder_is_named(market_folder: Path) -> None:
    (market_folder / "query").rename(market_folder / "queries")
    with pytest.raises(DatasetFormatError, match="query: split folder missing"):
        scan_market_folder(market_folder)


def test_scan_bad_name_and_camera_listed(market_folder: Path) -> None:
    (market_folder / "query" / "0010_c9s1_000099_01.jpg").write_bytes(b"x")
    (market_folder / "query" / "person10.jpg").write_bytes(b"x")
    with pytest.raises(DatasetFormatError) as err:
        scan_market_folder(market_folder, max_camera=6)
    message = str(err.value)
    assert "2 file name(s)" in message
    assert "person10.jpg" in message and "camera id 9 outside 1..6" in message


def test_scan_empty_split_is_an_error(market_folder: Path) -> None:
    for f in (market_folder / "query").iterdir():
        f.unlink()
    with pytest.raises(DatasetFormatError, match="no images"):
        scan_market_folder(market_folder)

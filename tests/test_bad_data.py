"""Bad images, odd image modes, and what the prepare stage does about them."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from maskreid.data.checks import image_problem
from maskreid.data.loading import load_rgb
from maskreid.data.market import DatasetFormatError
from maskreid.params import load_params
from maskreid.paths import DatasetPaths
from maskreid.pipeline.prepare import prepare
from tests.conftest import REPO


def _corrupt(folder: Path) -> dict[str, str]:
    good = (folder / "bounding_box_train" / "0002_c1s1_000451_03.jpg").read_bytes()
    files = {
        "bounding_box_train/0002_c3s1_000001_01.jpg": b"",                        # zero bytes
        "bounding_box_train/0007_c2s1_000002_01.jpg": good[: len(good) // 2],     # truncated JPEG
        "bounding_box_test/0010_c3s1_000003_01.jpg": b"<html>not an image</html>",  # not an image
    }
    for name, data in files.items():
        (folder / name).write_bytes(data)
    return files


def test_every_bad_file_is_listed_with_its_reason(tmp_path: Path, market_folder: Path) -> None:
    bad = _corrupt(market_folder)
    params = load_params(REPO / "params.yaml", ["datasets=[custom]"])
    with pytest.raises(DatasetFormatError) as err:
        prepare(params, DatasetPaths("custom", tmp_path))
    message = str(err.value)
    assert "3 image file(s) cannot be used" in message and "on_bad_image: skip" in message
    for name in bad:
        assert name.split("/")[1] in message
    assert "empty file (0 bytes)" in message and "not an image" in message and "cannot be decoded" in message
    assert not (tmp_path / "data" / "prepared" / "custom" / "manifest.csv").exists()


def test_skip_drops_them_and_lists_them_in_the_summary(tmp_path: Path, market_folder: Path) -> None:
    _corrupt(market_folder)
    params = load_params(REPO / "params.yaml", ["datasets=[custom]",
                                                "data.on_bad_image=skip"])
    summary = prepare(params, DatasetPaths("custom", tmp_path))
    assert len(summary["skipped_bad_images"]) == 3
    assert summary["images"]["train"] == 4
    on_disk = json.loads((tmp_path / "data" / "prepared" / "custom" / "summary.json").read_text())
    assert len(on_disk["skipped_bad_images"]) == 3


@pytest.mark.parametrize("mode", ["L", "RGBA", "P", "CMYK", "I;16", "LA", "1"])
def test_any_image_mode_loads_as_rgb(tmp_path: Path, mode: str) -> None:
    rgb = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 20, 3), dtype=np.uint8))
    if mode == "I;16":
        img = Image.fromarray((np.asarray(rgb.convert("L"), dtype=np.uint16) * 257))
        path = tmp_path / "x16.png"
    else:
        img = rgb.convert(mode)
        path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    img.save(path)
    assert image_problem(path) is None
    arr = load_rgb(path, (32, 16))
    assert arr.shape == (32, 16, 3) and arr.dtype == np.uint8 and arr.std() > 10

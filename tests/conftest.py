"""Shared fixtures: seeded RNGs and tiny Market-format folders written as real JPEG files."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


def write_jpeg(path: Path, colour: tuple[int, int, int] = (120, 60, 30), size: tuple[int, int] = (64, 128)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def market_folder(tmp_path: Path) -> Path:
    """A miniature Market-1501 folder: 2 train ids, 2 test ids, a distractor, a junk image and Thumbs.db, where
    the `custom` dataset of a project rooted at tmp_path reads it (data/raw/custom)."""
    root = tmp_path / "data" / "raw" / "custom"
    names = {
        "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s3_012345_02.jpg",
                               "0007_c1s1_000111_01.jpg"],
        "bounding_box_test": ["0010_c2s1_000100_01.jpg", "0011_c1s1_000200_01.jpg", "0000_c3s1_000300_01.jpg",
                              "-1_c1s1_000401_03.jpg", "0010_c1s1_000101_01.jpg"],
        "query": ["0010_c1s1_000099_01.jpg", "0011_c2s1_000201_01.jpg"],
    }
    for folder, files in names.items():
        for name in files:
            write_jpeg(root / folder / name)
    (root / "bounding_box_test" / "Thumbs.db").write_bytes(b"\x00thumbs")
    return root

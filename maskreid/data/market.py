"""Parse Market-1501-style folders (`bounding_box_train/`, `bounding_box_test/`, `query/`).

Names start `PPPP_cC` (Market `0002_c1s1_000451_03.jpg`, Duke `0001_c2_f0046182.jpg`); person id -1 is
junk, 0 is a distractor. Non-image files (e.g. `Thumbs.db`) are ignored, as every re-ID toolkit does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")
SPLIT_FOLDERS = {"train": "bounding_box_train", "query": "query", "gallery": "bounding_box_test"}
JUNK_PID = -1
DISTRACTOR_PID = 0
_NAME = re.compile(r"^(-1|\d+)_c(\d+)")


class DatasetFormatError(ValueError):
    """A dataset folder or file name does not have the expected form."""


@dataclass(frozen=True)
class ParsedName:
    pid: int
    camid: int


def parse_market_name(name: str) -> ParsedName:
    """Person and camera id of one image file name, e.g. `0002_c1s1_000451_03.jpg` -> (2, 1)."""
    match = _NAME.match(name)
    if match is None:
        raise DatasetFormatError(
            f"{name}: file name does not start with 'PPPP_cC' (person id, '_c', camera id), "
            "e.g. 0002_c1s1_000451_03.jpg or -1_c3s2_000101_01.jpg")
    return ParsedName(pid=int(match.group(1)), camid=int(match.group(2)))


def is_image_file(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def scan_market_folder(root: Path, max_camera: int | None = None) -> pd.DataFrame:
    """Table of every image under the three split folders: path, pid, camid, split.

    Raises DatasetFormatError naming the folder or file when the layout or a name is wrong, or a camera id
    is outside 1..max_camera.
    """
    root = Path(root)
    rows: list[dict[str, object]] = []
    problems: list[str] = []
    for split, folder in SPLIT_FOLDERS.items():
        directory = root / folder
        if not directory.is_dir():
            raise DatasetFormatError(f"{directory}: split folder missing; a Market-1501 layout needs "
                                     f"{', '.join(SPLIT_FOLDERS.values())} under {root}")
        files = sorted(p for p in directory.iterdir() if is_image_file(p))
        if not files:
            raise DatasetFormatError(f"{directory}: no images ({', '.join(IMAGE_SUFFIXES)}) in this split folder")
        for path in files:
            try:
                parsed = parse_market_name(path.name)
            except DatasetFormatError as err:
                problems.append(f"{path}: {err}")
                continue
            if parsed.camid < 1 or (max_camera is not None and parsed.camid > max_camera):
                problems.append(f"{path}: camera id {parsed.camid} outside 1..{max_camera}")
                continue
            rows.append({"path": str(path), "pid": parsed.pid, "camid": parsed.camid, "split": split})
    if problems:
        shown = "\n  ".join(problems[:20])
        more = f"\n  ... and {len(problems) - 20} more" if len(problems) > 20 else ""
        raise DatasetFormatError(f"{len(problems)} file name(s) in {root} do not parse:\n  {shown}{more}")
    return pd.DataFrame(rows, columns=["path", "pid", "camid", "split"])

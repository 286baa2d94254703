"""The splits the stages load: a prepared dataset's manifest rows of one split, decoded into an image cache."""

from __future__ import annotations

import pandas as pd

from maskreid.data.loading import ImageCache
from maskreid.data.manifest import read_manifest
from maskreid.data.market import JUNK_PID
from maskreid.paths import DatasetPaths


def _split(manifest: pd.DataFrame, split: str, drop_junk: bool = True) -> pd.DataFrame:
    part = manifest[manifest.split == split]
    return part[part.pid != JUNK_PID] if drop_junk else part


def load_split(paths: DatasetPaths, split: str, size: tuple[int, int], drop_junk: bool = True) -> ImageCache:
    """train, query or gallery of a prepared dataset, resized to `size` (junk images left out unless asked)."""
    part = _split(read_manifest(paths.manifest), split, drop_junk)
    root = paths.root
    name = split if drop_junk else f"{split}_with_junk"
    return ImageCache.load_or_build([str(root / p) for p in part.path], part.pid.tolist(), part.camid.tolist(),
                                    size, paths.decoded, name, desc=f"decoding {paths.dataset}/{split}")

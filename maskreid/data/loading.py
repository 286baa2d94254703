"""Decode each image once into a uint8 tensor cache; augment whole batches as tensor operations.

Re-ID crops are small, so a dataset's training split fits in RAM after one decode (Market-1501 at
234x117: about 1 GB), and is kept as a .npy file for the next stage. Batched crops and flips then cost far
less than a PIL pipeline per image.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from PIL import Image
from tqdm import tqdm

from maskreid.io import atomic_path, files_key

log = logging.getLogger(__name__)

def load_rgb(path: Path | str, size: tuple[int, int]) -> np.ndarray:
    """Decode one image file to RGB (any mode: L, RGBA, P, CMYK, 16-bit) resized to size=(h, w), as HWC uint8."""
    with Image.open(path) as img:
        if img.mode in ("I;16", "I;16B", "I;16L", "I"):
            arr = np.asarray(img, dtype=np.float64)
            img = Image.fromarray((arr / max(arr.max(), 1.0) * 255).astype(np.uint8))
        img = img.convert("RGB").resize((size[1], size[0]), Image.BILINEAR)
        return np.array(img, dtype=np.uint8)  # a writable copy


@dataclass
class ImageCache:
    """All images of one split, resized to a common size: images (N, 3, H, W) uint8 plus their labels."""

    images: torch.Tensor
    pids: np.ndarray
    camids: np.ndarray
    paths: list[str]

    @classmethod
    def build(cls, paths: Sequence[str], pids: Sequence[int], camids: Sequence[int], size: tuple[int, int],
              desc: str = "decoding") -> "ImageCache":
        out = torch.empty((len(paths), 3, size[0], size[1]), dtype=torch.uint8)
        for i, path in enumerate(tqdm(paths, desc=desc, unit="img", leave=False)):
            out[i] = torch.from_numpy(load_rgb(path, size)).permute(2, 0, 1)
        return cls(out, np.asarray(pids, dtype=np.int64), np.asarray(camids, dtype=np.int64), list(paths))

    @classmethod
    def load_or_build(cls, paths: Sequence[str], pids: Sequence[int], camids: Sequence[int],
                      size: tuple[int, int], store: Path, name: str, desc: str = "decoding") -> "ImageCache":
        """The same cache, decoded once per dataset and size: later stages read a .npy file instead of decoding
        every JPEG again. The file name carries a key of the image files' paths, sizes and modification times,
        so changed images are decoded afresh; an unreadable or mismatched file is rebuilt."""
        key = files_key(paths, salt=f"{size}")
        file = store / f"{name}_{size[0]}x{size[1]}_{key}.npy"
        expected = (len(paths), 3, size[0], size[1])
        if file.is_file():
            try:
                images = np.load(file, allow_pickle=False)
                if images.shape == expected and images.dtype == np.uint8:
                    return cls(torch.from_numpy(images), np.asarray(pids, dtype=np.int64),
                               np.asarray(camids, dtype=np.int64), list(paths))
                log.warning("%s: shape %s, expected %s; decoding again", file, images.shape, expected)
            except (OSError, ValueError) as err:
                log.warning("%s: unreadable (%s); decoding again", file, err)
        cache = cls.build(paths, pids, camids, size, desc)
        store.mkdir(parents=True, exist_ok=True)
        for old in store.glob(f"{name}_{size[0]}x{size[1]}_*.npy"):   # one file per split and size
            old.unlink()
        with atomic_path(file, durable=False) as tmp, open(tmp, "wb") as handle:
            np.save(handle, cache.images.numpy())
        return cache

    def __len__(self) -> int:
        return len(self.paths)

    def subset(self, keep: np.ndarray) -> "ImageCache":
        """The images where the boolean `keep` (one per image) is true, in their order."""
        index = np.flatnonzero(keep)
        return ImageCache(self.images[torch.from_numpy(index)], self.pids[index], self.camids[index],
                          [self.paths[i] for i in index])

    def evenly_spaced(self, count: int) -> "ImageCache":
        """Up to `count` images spread evenly over the cache (first and last included): a sample that spans every
        camera and identity block of a cache stored in file order."""
        keep = np.zeros(len(self), dtype=bool)
        keep[np.linspace(0, len(self) - 1, num=min(count, len(self))).round().astype(int)] = True
        return self.subset(keep)

    @classmethod
    def concat(cls, caches: Sequence["ImageCache"]) -> "ImageCache":
        """One cache holding the images of `caches` one after the other (all of one size)."""
        return cls(torch.cat([c.images for c in caches]), np.concatenate([c.pids for c in caches]),
                   np.concatenate([c.camids for c in caches]), [p for c in caches for p in c.paths])

"""The decoded-image cache: built once per dataset and size, read back by later stages, rebuilt when the
images change or the file is damaged; batched crop and flip."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import maskreid.data.loading as loading
from maskreid.data.loading import ImageCache
from maskreid.data.transforms import random_crop_flip


def _images(folder: Path, n: int = 5) -> list[str]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths = []
    for i in range(n):
        path = folder / f"{i + 1:04d}_c1s1_000001_00.png"
        Image.fromarray(rng.integers(0, 256, (32, 16, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def _load(paths: list[str], store: Path) -> ImageCache:
    return ImageCache.load_or_build(paths, list(range(len(paths))), [1] * len(paths), (24, 12), store, "train")


def test_second_load_reads_the_file_and_decodes_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    paths = _images(tmp_path / "img")
    first = _load(paths, tmp_path / "store")
    assert len(list((tmp_path / "store").glob("train_24x12_*.npy"))) == 1

    def no_decoding(*args):
        raise AssertionError("decoded again")

    monkeypatch.setattr(loading, "load_rgb", no_decoding)
    second = _load(paths, tmp_path / "store")
    assert torch.equal(first.images, second.images) and second.pids.tolist() == [0, 1, 2, 3, 4]


def test_a_changed_image_is_decoded_afresh(tmp_path: Path) -> None:
    paths = _images(tmp_path / "img")
    first = _load(paths, tmp_path / "store")
    Image.new("RGB", (16, 32), (255, 0, 0)).save(paths[2])
    os.utime(paths[2], ns=(1, 1))                       # a different modification time, whatever the clock
    second = _load(paths, tmp_path / "store")
    assert not torch.equal(first.images[2], second.images[2])
    assert (second.images[2, 0] == 255).all() and torch.equal(first.images[0], second.images[0])
    assert len(list((tmp_path / "store").glob("train_24x12_*.npy"))) == 1       # the stale file is gone


def test_a_damaged_file_is_rebuilt_with_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    paths = _images(tmp_path / "img")
    first = _load(paths, tmp_path / "store")
    stored = next((tmp_path / "store").glob("*.npy"))
    stored.write_bytes(stored.read_bytes()[:100])
    with caplog.at_level(logging.WARNING):
        again = _load(paths, tmp_path / "store")
    assert torch.equal(first.images, again.images)
    assert "decoding again" in caplog.text and stored.name in caplog.text


def test_crop_and_flip_are_per_image_and_seeded() -> None:
    batch = torch.arange(2 * 3 * 6 * 4, dtype=torch.uint8).reshape(2, 3, 6, 4)
    a = random_crop_flip(batch, (4, 2), 0.5, torch.Generator().manual_seed(3))
    b = random_crop_flip(batch, (4, 2), 0.5, torch.Generator().manual_seed(3))
    assert a.shape == (2, 3, 4, 2) and torch.equal(a, b)
    for image, source in zip(a, batch):     # every output is a (possibly flipped) window of its own input
        windows = [source[:, t:t + 4, l:l + 2] for t in range(3) for l in range(3)]
        assert any(torch.equal(image, w) or torch.equal(image, w.flip(-1)) for w in windows)


def test_image_cache_subset_and_concat_keep_images_and_labels_together() -> None:
    """The mask figure joins query and gallery and drops distractors; validation splits off held-out ids:
    every row's image, pid, camera and path must stay aligned."""
    def cache(first: int, n: int, cam: int) -> ImageCache:
        ids = np.arange(first, first + n)
        return ImageCache(torch.from_numpy(ids.astype(np.uint8)).view(n, 1, 1, 1).expand(n, 3, 2, 2).clone(),
                          ids, np.full(n, cam), [f"{i}.jpg" for i in ids])

    both = ImageCache.concat([cache(0, 3, 1), cache(3, 2, 2)])
    assert both.pids.tolist() == [0, 1, 2, 3, 4] and both.camids.tolist() == [1, 1, 1, 2, 2] and len(both) == 5
    kept = both.subset(both.pids % 2 == 1)
    assert kept.pids.tolist() == [1, 3] and kept.camids.tolist() == [1, 2] and kept.paths == ["1.jpg", "3.jpg"]
    assert kept.images[:, 0, 0, 0].tolist() == [1, 3]


def test_evenly_spaced_sample_spans_the_cache_once_per_image() -> None:
    cache = ImageCache(torch.zeros(5, 3, 2, 2, dtype=torch.uint8), np.arange(5), np.ones(5, dtype=int),
                       [f"{i}.jpg" for i in range(5)])
    assert cache.evenly_spaced(3).pids.tolist() == [0, 2, 4]
    assert cache.evenly_spaced(9).pids.tolist() == [0, 1, 2, 3, 4]

"""The embedding-space picture and the mask figure: what they draw, read back from real PNGs."""

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from maskreid.data.loading import ImageCache
from maskreid.figures.embeddings import embedding_figure, pca_2d, pick_identities


def test_identities_are_seeded_and_have_enough_images() -> None:
    pids = np.repeat(np.arange(0, 40), np.r_[5, np.tile([1, 4], 19), 3])      # pid 0: distractors
    first, again = pick_identities(pids, 10, seed=3), pick_identities(pids, 10, seed=3)
    assert (first == again).all() and len(first) == 10 and 0 not in first
    counts = {p: (pids == p).sum() for p in first}
    assert min(counts.values()) >= 3
    assert not np.array_equal(first, pick_identities(pids, 10, seed=4))


def test_pca_keeps_planar_data_exactly() -> None:
    rng = np.random.default_rng(0)
    plane = rng.normal(0, 1, (50, 2)) @ rng.normal(0, 1, (2, 16))            # rank-2 data in 16-d
    points, share = pca_2d(plane)
    assert share > 0.999
    d_before = np.linalg.norm(plane[:, None] - plane[None], axis=2)
    d_after = np.linalg.norm(points[:, None] - points[None], axis=2)
    np.testing.assert_allclose(d_after, d_before, atol=1e-9)               # a rotation: distances kept


def test_figure_has_one_panel_per_model(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    pids = np.repeat(np.arange(1, 31), 4)
    feats = {name: rng.normal(0, 1, (len(pids), 8)) + pids[:, None] * k for k, name in ((0.0, "stage1"), (1.0, "stage3"))}
    out = tmp_path / "e.png"
    embedding_figure(feats, pids, out)
    with Image.open(out) as picture:
        assert picture.width > 2 * picture.height * 0.9 and np.asarray(picture.convert("L")).std() > 10


def test_mask_figure_takes_images_from_every_camera() -> None:
    from maskreid.figures.masks import images_across_cameras

    camids = np.array([1] * 10 + [2] * 3 + [5] * 7)
    chosen = images_across_cameras(camids, 8)
    assert len(chosen) == 8 == len(set(chosen))
    assert [camids[i] for i in chosen[:3]] == [1, 2, 5] and set(camids[chosen]) == {1, 2, 5}
    assert images_across_cameras(np.array([3, 3]), 8) == [0, 1]


def test_mask_figure_shows_each_person_once_when_cameras_hold_the_same_people() -> None:
    """CUHK01's layout: queries all from camera 1, the gallery all from camera 2, the same people in both, in
    the same order; evenly spaced picks alone would show each chosen person twice."""
    from maskreid.figures.masks import images_across_cameras

    pids = np.repeat(np.arange(1, 21), 2)                      # 20 people x 2 images per camera
    all_pids = np.concatenate([pids, pids])
    camids = np.array([1] * 40 + [2] * 40)
    chosen = images_across_cameras(camids, 8, all_pids)
    assert sorted(set(camids[chosen])) == [1, 2] and len(chosen) == 8
    assert len(set(all_pids[chosen])) == 8
    assert len(set(all_pids[images_across_cameras(camids, 8)])) < 8    # without pids: people repeat


class _MaskNet:
    """A stand-in M: a fixed left-half pattern, plus (when `follows`) the image's red channel."""

    def __init__(self, follows: bool) -> None:
        self.follows = follows

    def eval(self) -> "_MaskNet":
        return self

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        fixed = torch.zeros_like(images[:, :1])
        fixed[..., : images.shape[-1] // 2] = 0.5
        red = (images[:, :1] - images[:, :1].amin()) / (images[:, :1].amax() - images[:, :1].amin() + 1e-6)
        return (fixed + 0.5 * red) if self.follows else fixed


def _cache_of_plain_colours(count: int = 12) -> ImageCache:
    rng = np.random.default_rng(0)
    images = torch.from_numpy(np.repeat(rng.integers(0, 256, (count, 3, 1, 1), dtype=np.uint8), 32 * 16)
                              .reshape(count, 3, 32, 16))
    pids, camids = np.arange(1, count + 1), np.tile([1, 2, 3], count // 3)
    return ImageCache(images, pids, camids, [f"{p}.jpg" for p in pids])


def test_average_mask_is_the_mean_over_an_even_sample() -> None:
    from maskreid.masks.measures import average_mask, masks_of

    cache = _cache_of_plain_colours()
    net = _MaskNet(follows=True)
    everything, count = average_mask(net, cache, (32, 16), torch.device("cpu"))
    assert count == 12
    torch.testing.assert_close(everything, masks_of(net, cache, (32, 16), torch.device("cpu")).mean(0))
    _, count = average_mask(net, cache, (32, 16), torch.device("cpu"), limit=5)
    assert count == 5


def test_mask_figure_difference_row_is_blank_only_for_a_fixed_mask(tmp_path: Path) -> None:
    """Row 3 subtracts the average mask: a fixed pattern leaves it grey-white (the diverging scale's zero); a
    mask that follows the image colours it. The figure is read back from the PNG, as a user sees it."""
    from maskreid.figures.masks import mask_figure

    cache = _cache_of_plain_colours()
    spread = {}
    for follows in (False, True):
        out = tmp_path / f"m{follows}.png"
        mask_figure(_MaskNet(follows), cache, (32, 16), 0.3, out, count=6)
        with Image.open(out) as picture:
            pixels = np.asarray(picture.convert("RGB")).astype(float)
        height = pixels.shape[0]
        band = pixels[int(0.52 * height): int(0.70 * height), : int(0.85 * pixels.shape[1])]   # row 3, no colour bar
        spread[follows] = ((band.max(axis=2) - band.min(axis=2)) > 30).mean()     # coloured, not grey, pixels
    assert spread[False] < 0.01, spread             # frames and background are grey
    assert spread[True] > 0.2, spread

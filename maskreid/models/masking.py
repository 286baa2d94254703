"""Applying masks to images: soft (M(a) * a, for L_identity) and hard (hide drop_ratio of the pixels).

Which pixels stage 3 hides is the `hiding` parameter: `learned` (the paper: M's top drop_ratio pixels) or one
of the controls that hide the same number of pixels without M (`random_blocks`, `random_pixels`); `none`
hides nothing (see maskreid.train.epochs.train_joint_epoch).
"""

from __future__ import annotations

import math

import torch

from maskreid.data.transforms import Normalizer

# random_blocks: each rectangle covers this fraction of the image and has this height/width ratio, drawn
# uniformly (the area) and log-uniformly (the ratio): the ranges of random erasing (Zhong et al. 2020).
BLOCK_AREA = (0.02, 0.33)
BLOCK_ASPECT = (0.3, 3.3)


MASK_SPACES = ("pixel", "normalized")


def apply_soft_mask(images: torch.Tensor, masks: torch.Tensor, normalizer: Normalizer,
                    space: str = "pixel") -> torch.Tensor:
    """M(a) * a for normalised `images`, in one of two spaces (params `mask_space`):
    pixel (the authors' code): on the pixel values, re-normalised before F; a removed pixel becomes black, so
      removing an already dark pixel changes nothing and costs L_identity nothing;
    normalized: on the normalised image; a removed pixel becomes the dataset's mean colour, so removing any
      pixel, dark or bright, changes what F sees."""
    if space == "normalized":
        return images * masks
    if space != "pixel":
        raise ValueError(f"mask_space: {space!r} is not one of {', '.join(MASK_SPACES)}")
    return normalizer.normalize(normalizer.denormalize(images) * masks)


def hidden_count(h: int, w: int, drop_ratio: float) -> int:
    """How many pixels of an h x w image are hidden: round(drop_ratio * h * w), the same for every hiding."""
    return int(round(drop_ratio * h * w))


def _keep_from_scores(scores: torch.Tensor, n_hide: int, h: int, w: int) -> torch.Tensor:
    """Keep-mask (b, 1, h, w) hiding the n_hide highest-scoring pixels of each image. Equal scores (many, in bf16,
    or where M saturates) are taken in pixel order: a stable sort, not topk, which promises no order for ties, so
    the same masks hide the same pixels on every machine."""
    b = scores.shape[0]
    keep = torch.ones(b, h * w, dtype=torch.float32, device=scores.device)
    if n_hide > 0:
        order = scores.reshape(b, h * w).sort(dim=1, descending=True, stable=True).indices
        keep.scatter_(1, order[:, :n_hide], 0.0)
    return keep.view(b, 1, h, w)


def top_fraction_mask(masks: torch.Tensor, drop_ratio: float) -> torch.Tensor:
    """Keep-mask (1 = keep, 0 = hide) hiding exactly round(drop_ratio * h * w) pixels per image: those with
    the highest mask values (ties broken by pixel order, row-major, so the count and the pixels are exact)."""
    b, _, h, w = masks.shape
    return _keep_from_scores(masks, hidden_count(h, w, drop_ratio), h, w).to(masks.dtype)


def random_pixel_mask(b: int, h: int, w: int, drop_ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Keep-mask hiding round(drop_ratio * h * w) pixels per image, chosen uniformly at random."""
    scores = torch.rand(b, h * w, generator=generator)
    return _keep_from_scores(scores, hidden_count(h, w, drop_ratio), h, w)


def random_block_mask(b: int, h: int, w: int, drop_ratio: float, generator: torch.Generator) -> torch.Tensor:
    """Keep-mask hiding exactly round(drop_ratio * h * w) pixels per image in random rectangles.

    Rectangles (area and aspect ratio as random erasing draws them, position uniform) are drawn one after
    another until their union covers at least the count; pixels are then hidden rectangle by rectangle in the
    order drawn, and the last rectangle only in part (its first rows, in raster order), so the count is exact.
    """
    n_hide = hidden_count(h, w, drop_ratio)
    position = torch.arange(h * w, dtype=torch.int64).view(h, w)
    scores = torch.zeros(b, h, w, dtype=torch.int64)
    log_lo, log_hi = math.log(BLOCK_ASPECT[0]), math.log(BLOCK_ASPECT[1])
    for i in range(b):
        order = torch.zeros(h, w, dtype=torch.int64)       # 0: not covered; k: covered first by rectangle k
        drawn = 0
        while int((order > 0).sum()) < n_hide:
            area_frac, ratio_u, top_u, left_u = torch.rand(4, generator=generator).tolist()
            area = (BLOCK_AREA[0] + area_frac * (BLOCK_AREA[1] - BLOCK_AREA[0])) * h * w
            ratio = math.exp(log_lo + ratio_u * (log_hi - log_lo))
            bh = min(h, max(1, round(math.sqrt(area * ratio))))
            bw = min(w, max(1, round(math.sqrt(area / ratio))))
            top, left = int(top_u * (h - bh + 1)), int(left_u * (w - bw + 1))
            drawn += 1
            region = order[top:top + bh, left:left + bw]
            region[region == 0] = drawn
        # earlier rectangles first, then raster order within a rectangle: all integers, no ties
        priority = torch.where(order > 0, (drawn + 1 - order) * (h * w) + (h * w - 1 - position), 0)
        scores[i] = priority
    return _keep_from_scores(scores, n_hide, h, w)


def hide_pixels(images: torch.Tensor, keep: torch.Tensor, normalizer: Normalizer, space: str = "pixel") -> torch.Tensor:
    """Set the pixels where keep == 0 to zero in `space`: black (pixel), or the mean colour (normalized)."""
    return apply_soft_mask(images, keep.to(images.dtype), normalizer, space)


def hide_top_pixels(images: torch.Tensor, masks: torch.Tensor, drop_ratio: float,
                    normalizer: Normalizer, space: str = "pixel") -> torch.Tensor:
    """Set the top drop_ratio mask pixels of each image to zero in `space` (see apply_soft_mask)."""
    return hide_pixels(images, top_fraction_mask(masks.detach(), drop_ratio), normalizer, space)

"""Applying masks to images: soft (M(a) * a, for L_identity) and hard (hide the top drop_ratio pixels)."""

from __future__ import annotations

import torch

from maskreid.data.loading import Normalizer


def apply_soft_mask(images: torch.Tensor, masks: torch.Tensor, normalizer: Normalizer) -> torch.Tensor:
    """M(a) * a on the pixel values, re-normalised before it enters F (as in the authors' code)."""
    return normalizer.normalize(normalizer.denormalize(images) * masks)


def top_fraction_mask(masks: torch.Tensor, drop_ratio: float) -> torch.Tensor:
    """Keep-mask (1 = keep, 0 = hide) hiding exactly round(drop_ratio * h * w) pixels per image: those with
    the highest mask values (ties broken by position, so the count is exact)."""
    b, _, h, w = masks.shape
    n_hide = int(round(drop_ratio * h * w))
    keep = torch.ones(b, h * w, dtype=masks.dtype, device=masks.device)
    if n_hide > 0:
        top = masks.reshape(b, h * w).topk(n_hide, dim=1).indices
        keep.scatter_(1, top, 0.0)
    return keep.view(b, 1, h, w)


def hide_top_pixels(images: torch.Tensor, masks: torch.Tensor, drop_ratio: float,
                    normalizer: Normalizer) -> torch.Tensor:
    """Set the top drop_ratio mask pixels of each image to zero (black, in pixel space), re-normalised."""
    keep = top_fraction_mask(masks.detach(), drop_ratio)
    return apply_soft_mask(images, keep, normalizer)

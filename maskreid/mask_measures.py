"""Numbers that say whether M's masks follow the image: a mask that is the same on every image (a fixed
pattern) hides the same pixels everywhere, which random hiding would do as well."""

from __future__ import annotations

import torch
from torch import nn

from maskreid.data.loading import ImageCache
from maskreid.features import extract_features


def masks_of(mask_net: nn.Module, cache: ImageCache, crop: tuple[int, int], device: torch.device,
             batch_size: int = 64, memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """M's masks (N, H, W) in fp32 for the centre-cropped images of `cache` (the test transform, batched as
    for F's embeddings)."""
    return torch.from_numpy(extract_features(mask_net, cache, crop, batch_size, device, memory_format))[:, 0]


def input_dependence(masks: torch.Tensor) -> float:
    """Mean over pixels of the across-image standard deviation of the mask divided by its across-image mean:
    0 for a fixed pattern, about 1 or more when each image gets a mask of its own."""
    mean = masks.mean(0)
    std = masks.std(0, unbiased=False)
    return float((std / mean.clamp_min(1e-6)).mean())

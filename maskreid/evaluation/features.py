"""Embeddings for evaluation: the trained F, or a colour-histogram baseline, on centre-cropped test images."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from maskreid.data.loading import ImageCache
from maskreid.data.transforms import Normalizer, center_crop, embed_test_batch, test_transform


@torch.no_grad()
def extract_features(model: nn.Module, cache: ImageCache, crop: tuple[int, int], batch_size: int,
                     device: torch.device,
                     memory_format: torch.memory_format = torch.contiguous_format, flip: bool = False) -> np.ndarray:
    """F's embedding of every cached image (the test transform), in fp32; flip: with its mirror's
    (`embed_test_batch`)."""
    model.eval()
    normalizer = Normalizer(device)
    out = []
    for start in range(0, len(cache), batch_size):
        batch = test_transform(cache.images[start:start + batch_size], crop, normalizer, device, memory_format)
        out.append(embed_test_batch(lambda images: model(images).float(), batch, flip).cpu())
    return torch.cat(out).numpy()


def color_histograms(cache: ImageCache, crop: tuple[int, int], bins: int = 8) -> np.ndarray:
    """Joint RGB histogram (bins^3) per image, L1-normalised, square-rooted (Hellinger embedding):
    a classic re-ID baseline that knows colour and nothing else."""
    images = center_crop(cache.images, crop).long() * bins // 256          # (N, 3, H, W) bin per channel
    codes = (images[:, 0] * bins + images[:, 1]) * bins + images[:, 2]     # (N, H, W)
    n = codes.shape[0]
    flat = codes.reshape(n, -1) + torch.arange(n)[:, None] * bins ** 3
    hist = torch.bincount(flat.reshape(-1), minlength=n * bins ** 3).reshape(n, -1).double()
    hist /= hist.sum(1, keepdim=True)
    return hist.sqrt().numpy()

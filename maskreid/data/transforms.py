"""The image transforms, train and test, on batches of cached uint8 images (B, 3, H, W).

One test transform serves every caller that embeds test images (the evaluate and cross_evaluate stages,
validation, the mask measures and diagnostics, `maskreid extract/search/evaluate`, the ONNX export), so the
numbers a stage reports and the embeddings a user extracts come from the same pixels.
"""

from __future__ import annotations

from typing import Callable, Sequence, TypeVar

import numpy as np
import torch

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Normalizer:
    """Mean/std normalisation (ImageNet's unless a model file says otherwise) and its inverse (the masked image
    is re-normalised, as the authors do)."""

    def __init__(self, device: torch.device | str = "cpu", mean: Sequence[float] = IMAGENET_MEAN,
                 std: Sequence[float] = IMAGENET_STD) -> None:
        self.mean = torch.tensor(tuple(mean), device=device).view(1, 3, 1, 1)
        self.std = torch.tensor(tuple(std), device=device).view(1, 3, 1, 1)

    def normalize(self, images01: torch.Tensor) -> torch.Tensor:
        return (images01 - self.mean) / self.std

    def denormalize(self, images: torch.Tensor) -> torch.Tensor:
        return images * self.std + self.mean


def center_crop(batch: torch.Tensor, crop: tuple[int, int]) -> torch.Tensor:
    h, w = batch.shape[-2:]
    top, left = (h - crop[0]) // 2, (w - crop[1]) // 2
    return batch[..., top:top + crop[0], left:left + crop[1]]


def random_crop_flip(batch: torch.Tensor, crop: tuple[int, int], flip_prob: float,
                     generator: torch.Generator) -> torch.Tensor:
    """The train transform's geometry: an independent random crop and horizontal flip per image."""
    b, _, h, w = batch.shape
    tops = torch.randint(0, h - crop[0] + 1, (b,), generator=generator)
    lefts = torch.randint(0, w - crop[1] + 1, (b,), generator=generator)
    flips = torch.rand(b, generator=generator) < flip_prob
    out = torch.stack([batch[i, :, t:t + crop[0], l:l + crop[1]] for i, (t, l) in enumerate(zip(tops.tolist(),
                                                                                             lefts.tolist()))])
    if flips.any():
        out[flips] = out[flips].flip(-1)
    return out


def to_model_input(batch_uint8: torch.Tensor, normalizer: Normalizer, device: torch.device | str,
                   memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """uint8 (B, 3, H, W) -> normalised float on `device`, in the models' memory layout."""
    images = normalizer.normalize(to_unit_range(batch_uint8, device))
    return images.contiguous(memory_format=memory_format)


def to_unit_range(batch_uint8: torch.Tensor, device: torch.device | str = "cpu") -> torch.Tensor:
    """uint8 -> float32 in [0, 1] on `device` (what the mask measures read, before normalisation)."""
    return batch_uint8.to(device, non_blocking=True).float().div_(255.0)


def test_crop(images_uint8: torch.Tensor, crop: tuple[int, int], device: torch.device | str = "cpu") -> torch.Tensor:
    """The test transform before normalisation: the centre crop of the resized image, in [0, 1]."""
    return to_unit_range(center_crop(images_uint8, crop), device)


def test_transform(images_uint8: torch.Tensor, crop: tuple[int, int], normalizer: Normalizer,
                   device: torch.device | str = "cpu",
                   memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """The test transform: centre crop of the resized image, [0, 1], mean/std, in the models' layout."""
    return to_model_input(center_crop(images_uint8, crop), normalizer, device, memory_format)


Features = TypeVar("Features", torch.Tensor, np.ndarray)


def embed_test_batch(embed: Callable[[torch.Tensor], Features], batch: torch.Tensor, flip: bool) -> Features:
    """`embed` of a test-transformed batch; flip: the mean of it and of the mirror images' (test-time
    augmentation, mirrored after the crop; training flips at random, so both are views F was trained on). One
    rule for the evaluate stage and for the PyTorch and ONNX embedders of `maskreid extract/search/evaluate`."""
    features = embed(batch)
    return (features + embed(batch.flip(-1))) / 2 if flip else features

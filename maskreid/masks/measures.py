"""Numbers that say whether M's masks follow the image: a mask that is the same on every image (a fixed
pattern) hides the same pixels everywhere, which random hiding would do as well; and, where silhouettes are
known (the generated set), whether the hidden pixels are the person or the background."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch import nn

from maskreid.data.loading import ImageCache
from maskreid.data.transforms import center_crop
from maskreid.evaluation.features import extract_features
from maskreid.models.masking import top_fraction_mask


def masks_of(mask_net: nn.Module, cache: ImageCache, crop: tuple[int, int], device: torch.device,
             batch_size: int = 64, memory_format: torch.memory_format = torch.contiguous_format) -> torch.Tensor:
    """M's masks (N, H, W) in fp32 for the centre-cropped images of `cache` (the test transform, batched as
    for F's embeddings)."""
    return torch.from_numpy(extract_features(mask_net, cache, crop, batch_size, device, memory_format))[:, 0]


def average_mask(mask_net: nn.Module, cache: ImageCache, crop: tuple[int, int], device: torch.device,
                 limit: int = 512, batch_size: int = 64) -> tuple[torch.Tensor, int]:
    """M's mask averaged over up to `limit` evenly spaced images of `cache` (H, W), and how many: the fixed part
    of the masks, which a per-image mask is compared with to see what in it follows the image."""
    sample = cache.evenly_spaced(limit)
    return masks_of(mask_net, sample, crop, device, batch_size).mean(0), len(sample)


def input_dependence(masks: torch.Tensor) -> float:
    """Mean over pixels of the across-image standard deviation of the mask divided by its across-image mean:
    0 for a fixed pattern, about 1 or more when each image gets a mask of its own."""
    mean = masks.mean(0)
    std = masks.std(0, unbiased=False)
    return float((std / mean.clamp_min(1e-6)).mean())


def silhouettes_of(cache: ImageCache, images_root: Path, silhouettes_root: Path, size: tuple[int, int],
                   crop: tuple[int, int]) -> torch.Tensor | None:
    """The person silhouettes (N, H, W, bool) of the cached images under the test transform (resize as the
    images were, centre crop), or None when an image has none (only the generated set has them)."""
    out = torch.zeros((len(cache), *crop), dtype=torch.bool)
    for i, image in enumerate(cache.paths):
        try:
            file = silhouettes_root / Path(image).relative_to(images_root).with_suffix(".png")
        except ValueError:
            return None
        if not file.is_file():
            return None
        with Image.open(file) as sil:
            resized = np.asarray(sil.convert("L").resize((size[1], size[0]), Image.BILINEAR)) >= 128
        out[i] = center_crop(torch.from_numpy(resized), crop)
    return out


def hidden_on_person(masks: torch.Tensor, person: torch.Tensor, drop_ratio: float) -> tuple[float, float]:
    """(share of the pixels stage 3 hides, M's top drop_ratio, that fall on the person; the person's share of
    the image, which is what random hiding gets on average). Above the person's share: M hides the person
    more than chance would; below: mostly background."""
    hidden = top_fraction_mask(masks[:, None].float(), drop_ratio)[:, 0] == 0
    return float((hidden & person).sum() / hidden.sum()), float(person.float().mean())


def person_measures(masks: torch.Tensor, person: torch.Tensor, drop_ratio: float) -> dict[str, float]:
    """hidden_on_person and person_share (hidden_on_person above), and hidden_on_person_fixed: the same share
    when every image is hidden with one mask, M's average (what a fixed occluder gets), the control that says
    whether M's per-image masks add anything."""
    share, person_share = hidden_on_person(masks, person, drop_ratio)
    fixed, _ = hidden_on_person(masks.mean(0, keepdim=True).expand_as(masks), person, drop_ratio)
    return {"hidden_on_person": share, "hidden_on_person_fixed": fixed, "person_share": person_share}

"""One epoch of each training stage. The loops share the input pipeline; what differs is what is trained.

Stage 1: F with L_triplet (Eq. 1) on PK batches.
Stage 2: M with L_mask (Eq. 6), F frozen, on plain shuffled batches.
Stage 3: F with L_extractor (Eq. 2) on PK batches, hiding the top drop_ratio pixels of M's mask; M is
         updated with L_mask by a stage-2 pass every `mask_update_every` epochs (the caller decides when).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Iterable, Iterator

import numpy as np
import torch
from torch import nn
from tqdm import tqdm

from maskreid.data.loading import ImageCache
from maskreid.data.sampler import PKSampler
from maskreid.data.transforms import Normalizer, random_crop_flip, to_model_input
from maskreid.models import losses
from maskreid.models.batchnorm import bn_running_stats_frozen
from maskreid.models.masking import (
    apply_soft_mask,
    hide_pixels,
    random_block_mask,
    random_pixel_mask,
    top_fraction_mask,
)
from maskreid.runtime.precision import MixedPrecision
from maskreid.train.distributed import SINGLE, Cluster


class NonFiniteLossError(RuntimeError):
    """A loss became NaN or Inf; training stops rather than corrupt the checkpoint."""


@dataclass
class BatchMaker:
    """Turns dataset indices into augmented, normalised model input on the training device.

    With several processes every rank augments the whole global batch (the same random draws as one
    process) and keeps its own rows: the input pipeline is under 1% of a step, so this costs nothing
    that matters, and the batches are exactly the one-process batches."""

    cache: ImageCache
    crop: tuple[int, int]
    flip: float
    device: torch.device
    generator: torch.Generator
    normalizer: Normalizer
    amp: MixedPrecision
    memory_format: torch.memory_format = torch.contiguous_format
    seconds: float = 0.0        # time spent making batches (the input pipeline's share of a training epoch)
    cluster: Cluster = SINGLE

    def __call__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """This rank's rows of the augmented batch, and the identities of the whole global batch."""
        start = time.perf_counter()
        raw = random_crop_flip(self.cache.images[indices], self.crop, self.flip, self.generator)
        pids = torch.as_tensor(self.cache.pids[indices], device=self.device)
        images = to_model_input(raw[self.cluster.shard(len(indices))], self.normalizer, self.device,
                                self.memory_format)
        self.seconds += time.perf_counter() - start
        return images, pids


def shuffled_batches(n: int, batch_size: int, rng: np.random.Generator) -> Iterator[list[int]]:
    """Plain shuffled batches over the whole split (stage 2's M training); the last partial batch is dropped
    when it would hold a single image (BatchNorm needs two)."""
    order = rng.permutation(n).tolist()
    for start in range(0, n, batch_size):
        batch = order[start:start + batch_size]
        if len(batch) > 1:
            yield batch


def _check_finite(value: torch.Tensor, stage: str, epoch: int, step: int, precision: str = "fp32") -> None:
    if not torch.isfinite(value):
        suspect = ("training in bf16: a suspect first (bf16 convolutions on small feature maps return NaN on "
                   "some CPUs, docs/troubleshooting.md; try precision fp32), then the learning rate"
                   if precision == "bf16" else "lower the learning rate?")
        raise NonFiniteLossError(f"{stage}: loss is {value.item()} at epoch {epoch + 1}, step {step + 1}; "
                                 f"training stopped ({suspect}). The last complete checkpoint was kept.")


def _mean(records: list[dict[str, float]]) -> dict[str, float]:
    return {k: float(np.mean([r[k] for r in records])) for k in records[0]} if records else {}


def _progress(batches: Iterable[list[int]], total: int, desc: str, cluster: Cluster = SINGLE) -> Iterable[list[int]]:
    return tqdm(batches, total=total, desc=desc, unit="batch", leave=False, disable=not cluster.is_main)


def train_extractor_epoch(extractor: nn.Module, optimizer: torch.optim.Optimizer, make: BatchMaker,
                          sampler: PKSampler, margin: float, epoch: int) -> dict[str, float]:
    """Stage 1: batch-hard triplet loss on PK batches."""
    extractor.train()
    records = []
    for step, indices in enumerate(_progress(sampler, len(sampler), f"stage1 epoch {epoch + 1}", make.cluster)):
        images, pids = make(indices)
        with make.amp.autocast():
            embeddings = make.cluster.gather(extractor(images), len(indices))   # the whole batch, for mining
        loss = losses.batch_hard_triplet(embeddings.float(), pids, margin)
        _check_finite(loss, "train_extractor (stage 1)", epoch, step, make.amp.name)
        make.amp.step(loss, optimizer)
        records.append({"triplet": loss.item()})
    return _mean(records)


def _freeze(module: nn.Module, frozen: bool) -> None:
    for p in module.parameters():
        p.requires_grad_(not frozen)


def train_mask_epoch(mask_net: nn.Module, extractor: nn.Module, optimizer: torch.optim.Optimizer,
                     make: BatchMaker, batch_size: int, lambda2: float, sparsity_weight: float,
                     rng: np.random.Generator, epoch: int, stage: str = "train_mask (stage 2)",
                     mask_space: str = "pixel") -> dict[str, float]:
    """One pass of M with L_mask over shuffled batches; F is frozen (eval mode, no parameter updates)."""
    extractor.eval()
    _freeze(extractor, True)
    mask_net.train()
    records = []
    n = len(make.cache)
    total = n // batch_size + (n % batch_size > 1)
    try:
        for step, indices in enumerate(_progress(shuffled_batches(n, batch_size, rng), total,
                                                 f"mask epoch {epoch + 1}", make.cluster)):
            images, _ = make(indices)
            with make.amp.autocast():
                masks = mask_net(images).float()
                with torch.no_grad():
                    target = extractor(images).float()
                features_masked = extractor(apply_soft_mask(images, masks, make.normalizer, mask_space)).float()
            # with several processes: the whole batch's masks and features, so L_mask is the one-process loss
            masks, target, features_masked = (make.cluster.gather(t, len(indices))
                                              for t in (masks, target, features_masked))
            ident = losses.identity_loss(target, features_masked)
            sparse = losses.sparsity_loss(masks)
            contig = losses.contiguity_loss(masks)
            loss = losses.mask_loss(ident, sparse, contig, lambda2, sparsity_weight)
            _check_finite(loss, stage, epoch, step, make.amp.name)
            make.amp.step(loss, optimizer)
            records.append({"mask": loss.item(), "identity": ident.item(), "sparsity": sparse.item(),
                            "contiguity": contig.item(), "mask_mean": masks.mean().item()})
    finally:
        _freeze(extractor, False)
    return _mean(records)


def keep_mask(hiding: str, images: torch.Tensor, mask_net: nn.Module | None, drop_ratio: float,
              generator: torch.Generator | None, batch: int | None = None, rows: slice = slice(None)) -> torch.Tensor:
    """Which pixels stage 3 keeps (1) and hides (0): M's top drop_ratio (`learned`, the paper), or the same
    number chosen without M (`random_blocks`, `random_pixels`; drawn on the CPU from `generator` for the whole
    global batch of `batch` images, of which `images` are the `rows`, so several processes draw as one)."""
    b, _, h, w = images.shape
    if hiding == "learned":
        with torch.no_grad():
            return top_fraction_mask(mask_net(images).float(), drop_ratio)
    if hiding == "random_blocks":
        return random_block_mask(batch or b, h, w, drop_ratio, generator)[rows].to(images.device)
    if hiding == "random_pixels":
        return random_pixel_mask(batch or b, h, w, drop_ratio, generator)[rows].to(images.device)
    raise ValueError(f"hiding: {hiding!r} hides no pixels or is unknown")


def train_joint_epoch(extractor: nn.Module, mask_net: nn.Module | None, optimizer: torch.optim.Optimizer,
                      make: BatchMaker, sampler: PKSampler, lambda1: float, drop_ratio: float, margin: float,
                      epoch: int, hiding: str = "learned", hide_generator: torch.Generator | None = None,
                      mask_space: str = "pixel", freeze_hidden_bn: bool = True) -> dict[str, float]:
    """Stage 3, F's part: L_extractor (Eq. 2) on original images and on images with drop_ratio of their pixels
    hidden (which ones: `hiding`). `hiding="none"` is the "just train longer" control: the same schedule and
    optimizer with L_triplet on original images only (triplet_hidden is logged as NaN). `mask_space`: how a
    hidden pixel is filled (maskreid.models.masking.apply_soft_mask); `freeze_hidden_bn`: the hidden pass leaves F's
    BatchNorm running statistics alone (they then describe original images, the only ones seen at test time)."""
    extractor.train()
    if mask_net is not None:
        mask_net.eval()
    records = []
    cluster = make.cluster
    for step, indices in enumerate(_progress(sampler, len(sampler), f"stage3 epoch {epoch + 1}", cluster)):
        images, pids = make(indices)
        n = len(indices)
        with make.amp.autocast():
            if hiding != "none":
                keep = keep_mask(hiding, images, mask_net, drop_ratio, hide_generator, n, cluster.shard(n))
                hidden = hide_pixels(images, keep, make.normalizer, mask_space)
            emb_orig = cluster.gather(extractor(images), n)
            if hiding != "none":
                with bn_running_stats_frozen(extractor) if freeze_hidden_bn else nullcontext():
                    emb_hidden = cluster.gather(extractor(hidden), n)
        t_orig = losses.batch_hard_triplet(emb_orig.float(), pids, margin)
        if hiding == "none":
            t_hidden, loss = torch.tensor(float("nan")), t_orig
        else:
            t_hidden = losses.batch_hard_triplet(emb_hidden.float(), pids, margin)
            loss = losses.extractor_loss(t_orig, t_hidden, lambda1)
        _check_finite(loss, "train_joint (stage 3)", epoch, step, make.amp.name)
        make.amp.step(loss, optimizer)
        records.append({"extractor": loss.item(), "triplet_original": t_orig.item(),
                        "triplet_hidden": t_hidden.item()})
    return _mean(records)

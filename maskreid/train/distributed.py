"""Training on several processes with torch.distributed (started by torchrun), without changing the method.

How the paper's batches stay the paper's batches when N processes share them:
- every rank draws the same global batch (the same sampler, augmentation and hiding generators, all seeded
  from `seed`) and computes only its share of the rows (`Cluster.shard`);
- the per-image outputs a loss needs (embeddings; M's masks and F's features in stage 2) are gathered from all
  ranks with gradients (`torch.distributed.nn.functional.all_gather`), so every rank computes the loss of the
  whole batch: batch-hard mining sees all 60 images, exactly as in one process;
- all_gather's backward sums the N identical gradients and DistributedDataParallel averages over N ranks, so
  each parameter receives the gradient of the one-process loss;
- BatchNorm normalises with the statistics of the whole global batch (SyncBatchNorm on GPUs; on CPUs, where
  torch's SyncBatchNorm refuses to run, `GlobalBatchNorm2d`, the same arithmetic over gloo).
What remains different is floating-point summation order (tests: within 1e-5 of one process).
"""

from __future__ import annotations

import datetime
import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn.functional as nnf
from torch import nn

# torch.distributed.nn.functional's all_gather / all_reduce are the public collectives with autograd (their
# suggested replacements live in the private torch.distributed._functional_collectives): keep them, quietly
warnings.filterwarnings("ignore", r"torch\.distributed\.nn\.functional\.all_(gather|reduce) is deprecated",
                        FutureWarning)


@dataclass(frozen=True)
class Cluster:
    """This process's place among the training processes (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """Rank 0 alone writes checkpoints, progress files, logs and progress bars."""
        return self.rank == 0

    def bounds(self, n: int) -> list[int]:
        """Row offsets of each rank's share of a global batch of n rows (the first n % world ranks take one
        more), so uneven batches (stage 2's last one, P*K not divisible by N) are split too."""
        base, extra = divmod(n, self.world)
        offsets = [0]
        for r in range(self.world):
            offsets.append(offsets[-1] + base + (r < extra))
        return offsets

    def shard(self, n: int) -> slice:
        """The rows of a global batch of n rows that this rank computes."""
        offsets = self.bounds(n)
        return slice(offsets[self.rank], offsets[self.rank + 1])

    def gather(self, local: torch.Tensor, n: int) -> torch.Tensor:
        """All ranks' rows of a global batch of n rows, in rank order (= the one-process batch order), with
        gradients flowing back to each rank's own rows."""
        if not self.enabled:
            return local
        offsets = self.bounds(n)
        largest = max(b - a for a, b in zip(offsets, offsets[1:]))
        padded = nnf.pad(local, (0,) * (2 * (local.dim() - 1)) + (0, largest - local.shape[0]))
        from torch.distributed.nn.functional import all_gather
        pieces = all_gather(padded.contiguous())
        return torch.cat([p[:b - a] for p, a, b in zip(pieces, offsets, offsets[1:])])

    def barrier(self) -> None:
        if self.enabled:
            dist.barrier()

    def wrap(self, module: nn.Module, device: torch.device) -> nn.Module:
        """DistributedDataParallel around a module whose BatchNorms already share statistics (`sync_batchnorm`).
        Buffers are synchronised once at the start, not at every forward: with global-batch statistics every
        rank's running estimates stay equal."""
        if not self.enabled:
            return module
        from torch.nn.parallel import DistributedDataParallel
        ids = [device.index] if device.type == "cuda" else None
        try:
            return DistributedDataParallel(module, device_ids=ids, forward_sync_buffers=False)
        except TypeError:   # torch before 2.14 names it broadcast_buffers (the pinned 2.14.1 deprecates that)
            return DistributedDataParallel(module, device_ids=ids, broadcast_buffers=False)


SINGLE = Cluster()


def start(backend: str, timeout_s: int, device_setting: str) -> tuple[Cluster, str]:
    """Join the process group torchrun prepared (or stay single when not under torchrun). Returns the cluster
    and the device setting this rank should use: with CUDA, each rank takes GPU LOCAL_RANK.

    A rank that stops answering makes the collectives of the others fail after `timeout_s` instead of
    hanging; torchrun then stops every rank and exits non-zero."""
    if not dist.is_torchelastic_launched() or int(os.environ["WORLD_SIZE"]) == 1:   # started by torchrun?
        return SINGLE, device_setting
    rank, world, local = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"]), int(os.environ["LOCAL_RANK"])
    use_cuda = device_setting.startswith("cuda") or (device_setting == "auto" and torch.cuda.is_available())
    if backend == "auto":
        backend = "nccl" if use_cuda else "gloo"
    if backend == "nccl" and not use_cuda:
        raise RuntimeError("distributed.backend: nccl needs CUDA GPUs (device: cpu, or no GPU here); use gloo")
    if use_cuda:
        if local >= torch.cuda.device_count():
            raise RuntimeError(f"distributed: local rank {local} but torch sees {torch.cuda.device_count()} GPU(s) "
                               "on this node; lower distributed.processes")
        torch.cuda.set_device(local)
        device_setting = f"cuda:{local}"
    if not dist.is_initialized():
        dist.init_process_group(backend, timeout=datetime.timedelta(seconds=timeout_s))
    return Cluster(rank, world, local), device_setting


def stop(cluster: Cluster) -> None:
    if cluster.enabled and dist.is_initialized():
        dist.destroy_process_group()


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose training-mode statistics are those of the whole global batch (sum, sum of squares and
    count all-reduced over the ranks, with gradients), for CPUs where torch's SyncBatchNorm does not run.
    Same parameters and buffers as BatchNorm2d, so checkpoints load into a plain model."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or not dist.is_initialized():
            return super().forward(x)
        from torch.distributed.nn.functional import all_reduce
        xf = x.float()
        stats = torch.cat([xf.sum((0, 2, 3)), xf.pow(2).sum((0, 2, 3)),
                           xf.new_tensor([x.shape[0] * x.shape[2] * x.shape[3]])])
        stats = all_reduce(stats)
        c = self.num_features
        count = stats[2 * c]
        mean = stats[:c] / count
        var = (stats[c:2 * c] / count - mean.pow(2)).clamp_min(0.0)
        if self.track_running_stats:
            with torch.no_grad():
                self.num_batches_tracked.add_(1)
                momentum = (1.0 / float(self.num_batches_tracked) if self.momentum is None else self.momentum)
                unbiased = var * count / (count - 1).clamp_min(1.0)
                self.running_mean.mul_(1 - momentum).add_(mean.detach(), alpha=momentum)
                self.running_var.mul_(1 - momentum).add_(unbiased.detach(), alpha=momentum)
        shape = (1, c, 1, 1)
        out = (xf - mean.view(shape)) * torch.rsqrt(var.view(shape) + self.eps)
        if self.affine:
            out = out * self.weight.view(shape) + self.bias.view(shape)
        return out.to(x.dtype)


def sync_batchnorm(module: nn.Module, device: torch.device, cluster: Cluster) -> nn.Module:
    """Make every BatchNorm of `module` use the global batch's statistics (nothing to do in one process)."""
    if not cluster.enabled:
        return module
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(module)
    return _convert_cpu(module)


def _convert_cpu(module: nn.Module) -> nn.Module:
    if type(module) is nn.BatchNorm2d:
        converted = GlobalBatchNorm2d(module.num_features, module.eps, module.momentum, module.affine,
                                      module.track_running_stats)
        converted.load_state_dict(module.state_dict())
        converted.train(module.training)
        return converted.to(next(iter(module.buffers()), torch.empty(0)).device)
    for name, child in module.named_children():
        setattr(module, name, _convert_cpu(child))
    return module

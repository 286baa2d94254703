"""torch.compile (inductor) against eager for the quick profile's three training steps and for extraction, with
the compile time counted: is it worth a param?

    python bench/compile_speed.py [--size 128 64] [--steps 20] [--threads N]

Random inputs at the quick profile's batch sizes (F: 20 x 3 = 60; M: 50; extraction: 128), fp32, channels_last
as the pipeline runs them. Per case: the first call's time (compilation included), then images/s over `--steps`
further steps, and the loss after the same steps from the same initial weights (how far compiled numerics move).
Net gain: what a stage of the default profile would save, compile time counted (steps per epoch x epochs)."""

from __future__ import annotations

import argparse
import os
import platform
import time
from typing import Callable

import torch

from maskreid.models import losses
from maskreid.models.extractor import FeatureExtractor
from maskreid.models.unet import UNet


def _time(step: Callable[[], torch.Tensor], steps: int) -> tuple[float, float, float]:
    """(first call seconds, seconds per later step, last loss)."""
    began = time.perf_counter()
    step()
    first = time.perf_counter() - began
    began = time.perf_counter()
    for _ in range(steps):
        loss = step()
    return first, (time.perf_counter() - began) / steps, float(loss)


def _cases(size: tuple[int, int], compiled: bool) -> dict[str, tuple[int, Callable[[], torch.Tensor]]]:
    torch.manual_seed(0)
    fmt = torch.channels_last
    wrap = (lambda m: torch.compile(m)) if compiled else (lambda m: m)
    f = FeatureExtractor("resnet18").to(memory_format=fmt)
    u = UNet(8).to(memory_format=fmt)
    frozen = FeatureExtractor("resnet18").to(memory_format=fmt).eval().requires_grad_(False)
    f_run, u_run, frozen_run = wrap(f), wrap(u), wrap(frozen)
    opt_f, opt_u = torch.optim.Adam(f.parameters(), 2e-4), torch.optim.Adam(u.parameters(), 1e-3)
    generator = torch.Generator().manual_seed(0)
    x60 = torch.randn(60, 3, *size, generator=generator).contiguous(memory_format=fmt)
    x50 = torch.randn(50, 3, *size, generator=generator).contiguous(memory_format=fmt)
    x128 = torch.randn(128, 3, *size, generator=generator).contiguous(memory_format=fmt)
    keep = (torch.rand(60, 1, *size, generator=generator) > 0.3).float()
    pids = torch.arange(20).repeat_interleave(3)

    def stage1() -> torch.Tensor:
        f.train()
        loss = losses.batch_hard_triplet(f_run(x60), pids, 1.0)
        opt_f.zero_grad()
        loss.backward()
        opt_f.step()
        return loss.detach()

    def stage2() -> torch.Tensor:
        masks = u_run(x50)
        loss = losses.identity_loss(frozen_run(x50), frozen_run(x50 * masks)) + losses.contiguity_loss(masks)
        opt_u.zero_grad()
        loss.backward()
        opt_u.step()
        return loss.detach()

    def stage3() -> torch.Tensor:           # F on originals and on hidden images (Eq. 2)
        f.train()
        loss = 0.9 * losses.batch_hard_triplet(f_run(x60), pids, 1.0) + \
            0.1 * losses.batch_hard_triplet(f_run(x60 * keep), pids, 1.0)
        opt_f.zero_grad()
        loss.backward()
        opt_f.step()
        return loss.detach()

    @torch.no_grad()
    def extract() -> torch.Tensor:
        return frozen_run(x128).sum()

    return {"stage 1 step (F, batch 60)": (60, stage1), "stage 2 step (M + frozen F, batch 50)": (50, stage2),
            "stage 3 step (F, 2 passes, batch 60)": (60, stage3), "extraction (batch 128)": (128, extract)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, nargs=2, default=[128, 64])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--threads", type=int, default=None)
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} threads; torch {torch.__version__}; fp32, channels_last, "
          f"{args.size[0]}x{args.size[1]}")
    eager, compiled = _cases(tuple(args.size), False), _cases(tuple(args.size), True)
    print("| case | eager img/s | compiled img/s | speed-up | first compiled call (s) | loss eager / compiled |")
    print("|---|---|---|---|---|---|")
    for name, (batch, step) in eager.items():
        _, eager_step, eager_loss = _time(step, args.steps)
        first, compiled_step, compiled_loss = _time(compiled[name][1], args.steps)
        print(f"| {name} | {batch / eager_step:.1f} | {batch / compiled_step:.1f} | {eager_step / compiled_step:.2f}x "
              f"| {first:.1f} | {eager_loss:.4f} / {compiled_loss:.4f} |")


if __name__ == "__main__":
    main()

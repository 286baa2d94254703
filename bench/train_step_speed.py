"""Images/s of one training step of F (stage 1) and of M with a frozen F (stage 2), by precision.

    python bench/train_step_speed.py [--size 128 64] [--backbone resnet18] [--width 64] [--unet-width 8]
                                     [--variants fp32 bf16 bf16+cl]

Random inputs, batch 60 (20 ids x 3) for F and 50 for M, as in the quick profile; 2 warm-up steps, then the
mean of 5. Compares fp32, bf16 autocast and bf16 autocast + channels_last on this machine's CPU (or GPU), or
the variants named by --variants (on a CPU without bf16 units, bf16 is emulated and takes minutes: use
--variants fp32 fp32+cl there).
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import torch

from maskreid.models import losses
from maskreid.models.extractor import FeatureExtractor
from maskreid.models.unet import UNet

VARIANTS = {"fp32": ("fp32", False), "fp32+cl": ("fp32", True), "bf16": ("bf16", False), "bf16+cl": ("bf16", True)}


def images_per_second(step, batch: int, warmup: int = 2, runs: int = 5) -> float:
    for _ in range(warmup):
        step()
    start = time.perf_counter()
    for _ in range(runs):
        step()
    return batch * runs / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--size", type=int, nargs=2, default=[128, 64])
    parser.add_argument("--backbone", default="resnet18")
    parser.add_argument("--width", type=int, default=64, help="F's first-stage channels (model.width)")
    parser.add_argument("--unet-width", type=int, default=8)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=["fp32", "bf16", "bf16+cl"],
                        help="precision, and +cl for the channels_last layout")
    args = parser.parse_args()
    torch.manual_seed(0)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    h, w = args.size
    print(f"machine: {platform.machine()}, {os.cpu_count()} cores, device {device}; torch {torch.__version__}; "
          f"{args.backbone} width {args.width}, {h}x{w}")
    print("| step | " + " | ".join(f"{v} img/s" for v in args.variants) + " |\n|---|" + "---|" * len(args.variants))
    rows = {}
    for name, batch in (("stage 1: F + triplet", 60), ("stage 2: M + frozen F", 50)):
        rates = []
        for precision, channels_last in (VARIANTS[v] for v in args.variants):
            fmt = torch.channels_last if channels_last else torch.contiguous_format
            f = FeatureExtractor(args.backbone, width=args.width).to(device, memory_format=fmt)
            x = torch.randn(batch, 3, h, w, device=device).contiguous(memory_format=fmt)
            amp = torch.autocast(device.type, dtype=torch.bfloat16, enabled=precision == "bf16")
            if name.startswith("stage 1"):
                opt = torch.optim.Adam(f.parameters(), 2e-4)
                pids = torch.arange(20, device=device).repeat_interleave(3)

                def step():
                    with amp:
                        e = f(x)
                    loss = losses.batch_hard_triplet(e.float(), pids, 1.0)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            else:
                u = UNet(args.unet_width).to(device, memory_format=fmt)
                f.eval().requires_grad_(False)
                opt = torch.optim.Adam(u.parameters())

                def step():
                    with amp:
                        m = u(x)
                        loss = losses.identity_loss(f(x).float(), f(x * m).float()) + losses.contiguity_loss(m.float())
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
            rates.append(images_per_second(step, batch))
        rows[name] = rates
        print(f"| {name} | " + " | ".join(f"{r:.0f}" for r in rates) + " |")


if __name__ == "__main__":
    main()

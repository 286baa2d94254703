"""Stage 1 of the quick profile on 1 and on N gloo processes, and the communication a step of the paper profile
needs (what decides whether 8 GPUs help).

    python bench/distributed_speed.py                  # 1 process, then 2 under torchrun: about 3 minutes
    python bench/distributed_speed.py --processes 1 2 4
    python bench/distributed_speed.py --volume-only    # the paper profile's bytes per step, no timing

Timing: the pipeline's own stage-1 step (maskreid.train.epochs.train_extractor_epoch: PK batch 20x3, ResNet-18 at
128x64, 512-d embedding, fp32, batch-hard mining over the gathered global batch, global-batch BatchNorm and
DistributedDataParallel when N > 1) on generated images, 2 warm-up steps then --steps timed steps; images/s
counts global-batch images. One process uses every core (torch's default threads); with N processes torchrun
gives each OMP_NUM_THREADS=1, as it does by default.
"""

from __future__ import annotations

import argparse
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import torch

from maskreid.data.loading import ImageCache
from maskreid.data.transforms import Normalizer
from maskreid.models.extractor import FeatureExtractor
from maskreid.models.unet import UNet
from maskreid.runtime.precision import MixedPrecision
from maskreid.train.distributed import SINGLE, Cluster, start, stop, sync_batchnorm
from maskreid.train.epochs import BatchMaker, train_extractor_epoch

P, K, RESIZE, CROP = 20, 3, (134, 67), (128, 64)


def time_stage1(cluster: Cluster, steps: int) -> float:
    """Global-batch images per second of the stage-1 step."""
    torch.manual_seed(0)
    cpu = torch.device("cpu")
    extractor = sync_batchnorm(FeatureExtractor("resnet18", 512), cpu, cluster).to(memory_format=torch.channels_last)
    model = cluster.wrap(extractor, cpu)
    optimizer = torch.optim.Adam(extractor.parameters(), lr=2e-4)
    ids, per_id = 60, 4
    images = torch.randint(0, 256, (ids * per_id, 3, *RESIZE), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0))
    pids = np.repeat(np.arange(ids), per_id)
    cache = ImageCache(images, pids, np.zeros_like(pids), [""] * len(pids))
    make = BatchMaker(cache, CROP, 0.5, cpu, torch.Generator().manual_seed(1), Normalizer(cpu),
                      MixedPrecision("fp32", cpu), torch.channels_last, cluster=cluster)
    rng = np.random.default_rng(0)
    batches = [[int(i) for pid in rng.choice(ids, P, replace=False) for i in pid * per_id + rng.choice(per_id, K, replace=False)]
               for _ in range(steps + 2)]
    train_extractor_epoch(model, optimizer, make, batches[:2], 1.0, 0)
    cluster.barrier()
    began = time.perf_counter()
    train_extractor_epoch(model, optimizer, make, batches[2:], 1.0, 1)
    cluster.barrier()
    return steps * P * K / (time.perf_counter() - began)


def volume(gpu_rate: float) -> list[str]:
    """Bytes a step of the paper profile moves between ranks, and what that costs at stated bandwidths."""
    f = FeatureExtractor("resnet50", 512)
    m = UNet(32)
    rows = []
    for name, net, batch, gathered in (("F (ResNet-50 + 512-d head), stages 1 and 3", f, P * K, [(P * K, 512)]),
                                       ("M (U-Net, width 32), stage 2 and stage-3 updates", m, 50,
                                        [(50, 224 * 112), (50, 512), (50, 512)])):
        params = sum(p.numel() for p in net.parameters())
        grad_bytes = 4 * params
        bn_channels = sum(b.num_features for b in net.modules() if isinstance(b, torch.nn.BatchNorm2d))
        bn_bytes = 4 * (2 * bn_channels + len([b for b in net.modules() if isinstance(b, torch.nn.BatchNorm2d)]))
        gather_bytes = 4 * sum(r * c for r, c in gathered)
        rows.append((name, params, grad_bytes, bn_bytes, gather_bytes))
    lines = ["| model | parameters | gradient all-reduce (fp32) | BatchNorm statistics per forward | gathered outputs per step |",
             "|---|---|---|---|---|"]
    for name, params, grad, bn, gather in rows:
        lines.append(f"| {name} | {params / 1e6:.2f} M | {grad / 2**20:.1f} MiB | {bn / 2**10:.1f} KiB | {gather / 2**10:.0f} KiB |")
    lines.append("")
    lines.append("Ring all-reduce: each of N GPUs sends and receives 2(N-1)/N of the gradient bytes per step; at N = 8:")
    lines.append("")
    lines.append("| model | bytes per GPU per step (N = 8) | NVLink 4 (H100 SXM, ~450 GB/s per direction) | PCIe 4.0 x16 (~25 GB/s) | 100 Gb/s Ethernet between nodes (~12 GB/s) |")
    lines.append("|---|---|---|---|---|")
    for name, params, grad, bn, gather in rows:
        per_gpu = 2 * 7 / 8 * grad + gather
        cells = [f"{per_gpu / bw * 1e3:.2f} ms" for bw in (450e9, 25e9, 12e9)]
        lines.append(f"| {name} | {per_gpu / 2**20:.1f} MiB | " + " | ".join(cells) + " |")
    flops = _stage1_flops_per_image()
    lines.append("")
    lines.append(f"Projected stage-1 step of the paper profile (PK 20x3 = 60 images, {flops / 1e9:.2f} GFLOP per image forward "
                 f"and backward, counted by torch's FlopCounterMode) from one GPU's measured {gpu_rate:.0f} images/s "
                 f"({gpu_rate * flops / 1e12:.1f} TFLOP/s; bench/gpu_train_speed.py on an H200, fp32), assuming the "
                 "compute splits perfectly over 8 GPUs (optimistic: 7-8 images per GPU use a GPU even less well):")
    lines.append("")
    lines.append("| GPUs, interconnect | compute per GPU | F's all-reduce | step, no overlap | step, full overlap | speed-up over 1 GPU |")
    lines.append("|---|---|---|---|---|---|")
    one = P * K / gpu_rate
    lines.append(f"| 1 | {one * 1e3:.2f} ms | 0 | {one * 1e3:.2f} ms | {one * 1e3:.2f} ms | 1.00x |")
    per_gpu = 2 * 7 / 8 * rows[0][2] + rows[0][4]
    for label, bw in (("8, NVLink 4 (450 GB/s)", 450e9), ("8, PCIe 4.0 (25 GB/s)", 25e9), ("8 over 2 nodes, 100 Gb/s (12 GB/s)", 12e9)):
        compute, comm = one / 8, per_gpu / bw
        lines.append(f"| {label} | {compute * 1e3:.2f} ms | {comm * 1e3:.2f} ms | {(compute + comm) * 1e3:.2f} ms | "
                     f"{max(compute, comm) * 1e3:.2f} ms | {one / (compute + comm):.2f}x to {one / max(compute, comm):.2f}x |")
    return lines


def _stage1_flops_per_image() -> float:
    """Forward and backward floating-point operations of F (paper profile) for one 224x112 image."""
    from torch.utils.flop_counter import FlopCounterMode
    f = FeatureExtractor("resnet50", 512)
    x = torch.randn(2, 3, 224, 112)
    with FlopCounterMode(display=False) as counter:
        f(x).sum().backward()
    return counter.get_total_flops() / 2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--processes", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--volume-only", action="store_true")
    ap.add_argument("--gpu-rate", type=float, default=3110.0,
                    help="one GPU's stage-1 images/s for the projection (default: measured on an H200, fp32)")
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        cluster, _ = start("gloo", 600, "cpu")
        try:
            rate = time_stage1(cluster, args.steps)
            if cluster.is_main:
                print(f"RESULT {rate:.3f}", flush=True)
        finally:
            stop(cluster)
        return
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; torch {torch.__version__}")
    if not args.volume_only:
        print("\n| processes (gloo) | threads each | stage 1 images/s | speed-up | scaling efficiency |")
        print("|---|---|---|---|---|")
        base = None
        for n in args.processes:
            if n == 1:
                rate, threads = time_stage1(SINGLE, args.steps), torch.get_num_threads()
            else:
                out = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone",
                                      f"--nproc-per-node={n}", __file__, "--worker", "--steps", str(args.steps)],
                                     capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(Path(__file__).parents[1])})
                found = [line for line in out.stdout.splitlines() if line.startswith("RESULT")]
                if out.returncode or not found:
                    raise SystemExit(out.stdout[-2000:] + out.stderr[-2000:])
                rate, threads = float(found[0].split()[1]), 1
            base = base or rate
            print(f"| {n} | {threads} | {rate:.1f} | {rate / base:.2f}x | {100 * rate / base / n:.0f}% |", flush=True)
    print()
    print("\n".join(volume(args.gpu_rate)))


if __name__ == "__main__":
    main()

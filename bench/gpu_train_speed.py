"""Training throughput of the paper profile on a GPU, through the pipeline's own epoch functions, and the
GPU-only code paths run once (device selection, bf16/fp16 autocast with the gradient scaler, SyncBatchNorm).

    python bench/gpu_train_speed.py                 # paper profile: ResNet-50, 224x112, U-Net width 32
    python bench/gpu_train_speed.py --tiny          # a smoke run of the same code (any machine)

Each stage runs maskreid.train.epochs's epoch function (stage 1: train_extractor_epoch on PK 20x3 batches; stage 2:
train_mask_epoch on batches of 50 with F frozen; stage 3: train_joint_epoch with M's top 30% hidden) over a
generated uint8 image cache (--ids identities x 4 images at 234x117), so the input pipeline (crops, flips,
normalisation, host-to-device copy) is included: one warm-up epoch, then one timed epoch, CUDA synchronised.
Precisions: fp32 (the paper profile's setting) and bf16 autocast (`precision: auto` on a bf16 GPU), both
channels_last. The last lines project the paper's 50/25/100-epoch schedule on Market-1501 (12,936 training
images; a PK epoch uses about 12,000) from the measured rates.
"""

from __future__ import annotations

import argparse
import platform
import time

import numpy as np
import torch

from maskreid.data.loading import ImageCache
from maskreid.data.sampler import PKSampler
from maskreid.data.transforms import Normalizer
from maskreid.models.extractor import FeatureExtractor
from maskreid.models.unet import UNet
from maskreid.runtime.precision import MixedPrecision
from maskreid.train.epochs import BatchMaker, train_extractor_epoch, train_joint_epoch, train_mask_epoch


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def gpu_branch_checks(device: torch.device) -> list[str]:
    """The branches only a GPU reaches, each run once; returns what each did."""
    from maskreid.runtime.device import pick_device
    from maskreid.runtime.precision import resolve_precision
    from maskreid.train.distributed import Cluster, sync_batchnorm

    done = [f"pick_device('auto') -> {pick_device('auto')}, pick_device('cuda:0') -> {pick_device('cuda:0')}"]
    try:
        pick_device(f"cuda:{torch.cuda.device_count()}")
    except RuntimeError as err:
        done.append(f"pick_device(cuda:{torch.cuda.device_count()}) refused: {err}")
    done.append(f"precision auto resolves to {resolve_precision('auto', device)}")
    f = FeatureExtractor("resnet18", 64).to(device, memory_format=torch.channels_last)
    opt = torch.optim.Adam(f.parameters(), lr=2e-4)
    amp = MixedPrecision("fp16", device)
    x = torch.randn(12, 3, 128, 64, device=device).contiguous(memory_format=torch.channels_last)
    with amp.autocast():
        y = f(x)
    from maskreid.models.losses import batch_hard_triplet
    loss = batch_hard_triplet(y.float(), torch.arange(4, device=device).repeat_interleave(3), 1.0)
    amp.step(loss, opt)
    done.append(f"fp16 autocast + GradScaler step: loss {loss.item():.4f}, scale {amp.scaler.get_scale():.0f}, "
                f"weights finite {all(torch.isfinite(p).all().item() for p in f.parameters())}")
    converted = sync_batchnorm(FeatureExtractor("resnet18", 64), device, Cluster(0, 2, 0))
    kinds = {type(m).__name__ for m in converted.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)}
    done.append(f"sync_batchnorm on {device.type} with 2 ranks -> {sorted(kinds)}")
    return done


def time_stages(device: torch.device, precision: str, ids: int, backbone: str, width: int,
                size: tuple[int, int], crop: tuple[int, int]) -> dict[str, float]:
    """Images/s of one epoch of each stage (after a warm-up epoch)."""
    torch.manual_seed(0)
    fmt = torch.channels_last
    images = torch.randint(0, 256, (ids * 4, 3, *size), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    pids = np.repeat(np.arange(ids), 4)
    cache = ImageCache(images, pids, np.zeros_like(pids), [""] * len(pids))
    make = BatchMaker(cache, crop, 0.5, device, torch.Generator().manual_seed(1), Normalizer(device),
                      MixedPrecision(precision, device), fmt)
    f = FeatureExtractor(backbone, 512).to(device, memory_format=fmt)
    m = UNet(width).to(device, memory_format=fmt)
    opt_f, opt_m = torch.optim.Adam(f.parameters(), lr=2e-4), torch.optim.Adam(m.parameters(), lr=1e-3)
    rng = np.random.default_rng(0)
    sampler = PKSampler(pids, 20, 3, 0)
    runs = {
        "stage1": lambda e: train_extractor_epoch(f, opt_f, make, sampler, 1.0, e),
        "stage2": lambda e: train_mask_epoch(m, f, opt_m, make, 50, 0.95, 1.0, rng, e),
        "stage3": lambda e: train_joint_epoch(f, m, opt_f, make, sampler, 0.9, 0.3, 1.0, e, "learned"),
    }
    rates = {}
    for name, run in runs.items():
        run(0)
        _sync(device)
        count = len(sampler) * 60 if name != "stage2" else len(cache) // 50 * 50
        began, make.seconds = time.perf_counter(), 0.0
        run(1)
        _sync(device)
        seconds = time.perf_counter() - began
        rates[name] = count / seconds
        rates[f"{name}_input_share"] = make.seconds / seconds
    return rates


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiny", action="store_true", help="ResNet-18, U-Net width 4, 128x64, 40 ids: a smoke run")
    ap.add_argument("--ids", type=int, default=1000)
    args = ap.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    name = torch.cuda.get_device_name(device) if device.type == "cuda" else platform.processor()
    print(f"device: {name}; torch {torch.__version__}; {torch.get_num_threads()} CPU threads", flush=True)
    if device.type == "cuda":
        for line in gpu_branch_checks(device):
            print("check:", line, flush=True)
    if args.tiny:
        setting = dict(ids=40, backbone="resnet18", width=4, size=(134, 67), crop=(128, 64))
    else:
        setting = dict(ids=args.ids, backbone="resnet50", width=32, size=(234, 117), crop=(224, 112))
    print("\n| precision | stage 1 img/s | stage 2 img/s | stage 3 img/s | input pipeline share (1/2/3) |")
    print("|---|---|---|---|---|")
    results = {}
    for precision in ("fp32", "bf16"):
        if precision == "bf16" and (device.type != "cuda" or not torch.cuda.is_bf16_supported()):
            continue    # bf16 is emulated on CPUs without BF16 units: not a setting anyone would time
        r = time_stages(device, precision, **setting)
        results[precision] = r
        print(f"| {precision} | {r['stage1']:.1f} | {r['stage2']:.1f} | {r['stage3']:.1f} | "
              f"{100 * r['stage1_input_share']:.1f}% / {100 * r['stage2_input_share']:.1f}% / "
              f"{100 * r['stage3_input_share']:.1f}% |", flush=True)
    print()
    for precision, r in results.items():
        # 50 x 12,000 / s1 + 25 x 12,936 / s2 + 100 x 12,000 / s3 + 25 M updates x 12,936 / s2
        hours = (50 * 12000 / r["stage1"] + 50 * 12936 / r["stage2"] + 100 * 12000 / r["stage3"]) / 3600
        print(f"paper schedule on Market-1501, {precision}: {hours:.2f} hours on this device", flush=True)


if __name__ == "__main__":
    main()

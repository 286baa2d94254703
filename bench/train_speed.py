"""Training and feature-extraction throughput of the pipeline's input path and precision, against the plain
loop the authors' code runs, and against the machine's matrix-product ceiling.

    python bench/train_speed.py --profile quick      # about 2 minutes on 2 CPU cores
    python bench/train_speed.py --profile paper      # ResNet-50 at 224x112: about 10 minutes on 2 CPU cores

For each of stage 1 (F, triplet), stage 2 (M with F frozen), stage 3 (F on original and hidden images) and
feature extraction, the same maskreid.train.epochs epoch function runs twice on the same batches:

* plain: fp32, default memory layout, a torch DataLoader (`--workers` processes) that opens every image with
  PIL and applies torchvision's Resize / RandomCrop / RandomHorizontalFlip / ToTensor / Normalize per image;
* maskreid: the pipeline's path: images decoded once into a uint8 cache, crops and flips as batched tensor
  operations, `precision: auto` (bf16 autocast where the CPU has AVX-512 BF16 or AMX) and channels_last.

Images/s is end to end (input pipeline included). The share of wall time spent making batches is given for
maskreid. FLOP efficiency: floating-point operations of one step (torch's FlopCounterMode: matrix products
and convolutions, forward and backward) times steps/s, divided by the rate of a large bf16 (resp. fp32) matrix
product timed in the same run. Random initial weights (speed does not depend on them); 60 identities x 4
generated JPEG images at Market-1501's native 128x64.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode
from torchvision import transforms as T

from maskreid.data.loading import ImageCache
from maskreid.data.sampler import PKSampler
from maskreid.data.transforms import IMAGENET_MEAN, IMAGENET_STD, Normalizer
from maskreid.evaluation.features import extract_features
from maskreid.models.extractor import FeatureExtractor
from maskreid.models.unet import UNet
from maskreid.params import Params, load_params
from maskreid.runtime.precision import MixedPrecision
from maskreid.train.epochs import (
    BatchMaker,
    shuffled_batches,
    train_extractor_epoch,
    train_joint_epoch,
    train_mask_epoch,
)

HERE = Path(__file__).resolve().parent
IMAGES = HERE / ".cache" / "images_128x64"
IDS, PER_ID = 60, 4


def make_images() -> tuple[list[str], list[int], list[int]]:
    """Seeded smooth-noise JPEGs, 128x64, in Market-1501's file naming."""
    IMAGES.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    paths, pids, cams = [], [], []
    for pid in range(1, IDS + 1):
        for i in range(PER_ID):
            path = IMAGES / f"{pid:04d}_c{i % 6 + 1}s1_{i:06d}_00.jpg"
            if not path.exists():
                small = rng.integers(0, 256, (16, 8, 3), dtype=np.uint8)
                Image.fromarray(small).resize((64, 128), Image.BICUBIC).save(path, quality=90)
            paths.append(str(path))
            pids.append(pid)
            cams.append(i % 6 + 1)
    return paths, pids, cams


class Replay:
    """A fixed list of batches, iterated like a sampler (same batches for both input paths)."""

    def __init__(self, batches: list[list[int]]) -> None:
        self.batches = batches

    def __iter__(self) -> Iterator[list[int]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class PilImages(Dataset):
    def __init__(self, paths: list[str], resize: tuple[int, int], crop: tuple[int, int], train: bool) -> None:
        self.paths = paths
        steps = [T.Resize(resize)] + ([T.RandomCrop(crop), T.RandomHorizontalFlip()] if train else
                                      [T.CenterCrop(crop)])
        self.transform = T.Compose(steps + [T.ToTensor(), T.Normalize(IMAGENET_MEAN, IMAGENET_STD)])

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> torch.Tensor:
        with Image.open(self.paths[index]) as img:
            return self.transform(img.convert("RGB"))


class LoaderBatches:
    """The plain input path behind BatchMaker's interface: the next batch of a PIL DataLoader that was given
    the same batches the epoch function will ask for."""

    def __init__(self, dataset: PilImages, pids: np.ndarray, batches: list[list[int]], workers: int,
                 cache: ImageCache) -> None:
        loader = DataLoader(dataset, batch_sampler=batches, num_workers=workers)
        self.iterator, self.pids, self.cache = iter(loader), pids, cache
        self.amp = MixedPrecision("fp32", torch.device("cpu"))
        self.normalizer = Normalizer("cpu")
        self.seconds = 0.0

    def __call__(self, indices: list[int]) -> tuple[torch.Tensor, torch.Tensor]:
        start = time.perf_counter()
        images = next(self.iterator)
        self.seconds += time.perf_counter() - start
        return images, torch.as_tensor(self.pids[indices])


def matmul_rate(dtype: torch.dtype, n: int = 4096, repeats: int = 3) -> float:
    """FLOP/s of a large square matrix product (best of `repeats`)."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best = min(_timed(lambda: torch.mm(a, b)) for _ in range(repeats))
    return 2 * n ** 3 / best


def _timed(fn: Callable[[], object]) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def stage_runners(params: Params, cache: ImageCache, stage: str, fmt: torch.memory_format):
    """(models, a function running one epoch over given batches with a given batch source)."""
    m = params.model
    extractor = FeatureExtractor(m.backbone, m.embedding_dim, "none").to(memory_format=fmt)
    if stage == "stage1":
        opt = torch.optim.Adam(extractor.parameters(), lr=params.stage1.lr)
        return lambda make, batches: train_extractor_epoch(extractor, opt, make, Replay(batches),
                                                           params.triplet_margin, 0)
    mask_net = UNet(m.unet_width).to(memory_format=fmt)
    if stage == "stage2":
        opt = torch.optim.Adam(mask_net.parameters(), lr=params.stage2.lr)
        return lambda make, batches: train_mask_epoch(mask_net, extractor, opt, make, params.stage2.batch_size,
                                                      params.lambda2, params.sparsity_weight,
                                                      np.random.default_rng(0), 0)
    opt = torch.optim.Adam(extractor.parameters(), lr=params.stage1.lr)
    return lambda make, batches: train_joint_epoch(extractor, mask_net, opt, make, Replay(batches),
                                                   params.lambda1, params.drop_ratio, params.triplet_margin, 0)


def epoch_batches(params: Params, cache: ImageCache, stage: str, epoch: int) -> list[list[int]]:
    if stage == "stage2":   # train_mask_epoch draws these itself from a fresh generator seeded 0
        return list(shuffled_batches(len(cache), params.stage2.batch_size, np.random.default_rng(0)))
    s1 = params.stage1
    return list(PKSampler(cache.pids, s1.ids_per_batch, s1.images_per_id, epoch))


def measure_stage(params: Params, cache: ImageCache, paths: list[str], stage: str, plain: bool, epochs: int,
                  workers: int) -> dict[str, float]:
    torch.manual_seed(0)
    fmt = torch.contiguous_format if plain else torch.channels_last
    run = stage_runners(params, cache, stage, fmt)
    generator = torch.Generator().manual_seed(0)
    images = seconds = data = 0.0
    for epoch in range(epochs + 1):                       # epoch 0 warms up (oneDNN primitives, workers)
        batches = epoch_batches(params, cache, stage, epoch)
        if plain:
            make = LoaderBatches(PilImages(paths, params.input.resize, params.input.crop, True), cache.pids,
                                 batches, workers, cache)
        else:
            make = BatchMaker(cache, params.input.crop, params.input.flip, torch.device("cpu"), generator,
                              Normalizer("cpu"), MixedPrecision(params.precision, torch.device("cpu")), fmt)
        took = _timed(lambda: run(make, batches))
        if epoch > 0:
            images += sum(len(b) for b in batches)
            seconds += took
            data += make.seconds
    return {"img_s": images / seconds, "data_share": data / seconds}


def stage_flops(params: Params, cache: ImageCache, stage: str) -> float:
    """FLOPs per image of one training step of `stage` (fp32 count; the same operations run in bf16)."""
    run = stage_runners(params, cache, stage, torch.contiguous_format)
    batch = epoch_batches(params, cache, stage, 0)[:1]
    make = BatchMaker(cache, params.input.crop, params.input.flip, torch.device("cpu"),
                      torch.Generator().manual_seed(0), Normalizer("cpu"), MixedPrecision("fp32", torch.device("cpu")))
    if stage == "stage2":
        batch = [list(range(params.stage2.batch_size))]
        make.cache = ImageCache(cache.images[batch[0]], cache.pids[batch[0]], cache.camids[batch[0]],
                                [cache.paths[i] for i in batch[0]])
    counter = FlopCounterMode(display=False)
    with counter:
        run(make, batch)
    return counter.get_total_flops() / len(batch[0])


def measure_features(params: Params, cache: ImageCache, paths: list[str], plain: bool, workers: int,
                     repeats: int) -> float:
    torch.manual_seed(0)
    fmt = torch.contiguous_format if plain else torch.channels_last
    m = params.model
    extractor = FeatureExtractor(m.backbone, m.embedding_dim, "none").to(memory_format=fmt).eval()
    batch = params.evaluation.batch_size

    def plain_pass() -> None:
        loader = DataLoader(PilImages(paths, params.input.resize, params.input.crop, False), batch_size=batch,
                            num_workers=workers)
        with torch.no_grad():
            for images in loader:
                extractor(images)

    def ours() -> None:
        extract_features(extractor, cache, params.input.crop, batch, torch.device("cpu"), fmt)

    fn = plain_pass if plain else ours
    fn()
    return len(paths) * repeats / sum(_timed(fn) for _ in range(repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--profile", default="quick", choices=["quick", "paper"])
    parser.add_argument("--epochs", type=int, default=None, help="timed epochs per case (default 3 quick, 1 paper)")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader processes of the plain path")
    parser.add_argument("--stages", nargs="+", default=["stage1", "stage2", "stage3", "features"])
    args = parser.parse_args()
    epochs = args.epochs or (3 if args.profile == "quick" else 1)
    params = load_params(HERE.parent / "params.yaml", [f"profile={args.profile}"])
    paths, pids, cams = make_images()
    decode = time.perf_counter()
    cache = ImageCache.build(paths, pids, cams, params.input.resize)
    decode = time.perf_counter() - decode
    amp = MixedPrecision(params.precision, torch.device("cpu"))
    bf16, fp32 = matmul_rate(torch.bfloat16), matmul_rate(torch.float32)
    m = params.model
    print(f"machine: {platform.machine()} {platform.processor() or ''}, {os.cpu_count()} cores, "
          f"{torch.get_num_threads()} torch threads; torch {torch.__version__}; python {platform.python_version()}")
    print(f"profile {args.profile}: {m.backbone}, U-Net width {m.unet_width}, input {params.input.crop[0]}x"
          f"{params.input.crop[1]}, PK {params.stage1.ids_per_batch}x{params.stage1.images_per_id}, stage-2 batch "
          f"{params.stage2.batch_size}; maskreid precision {amp.name} + channels_last; plain fp32 + PIL DataLoader "
          f"({args.workers} workers); {epochs} timed epoch(s) of {IDS * PER_ID} images after one warm-up")
    print(f"ceiling: 4096^3 matrix product {bf16 / 1e9:.0f} GFLOP/s bf16, {fp32 / 1e9:.0f} GFLOP/s fp32; "
          f"decoding the {len(paths)} images into the cache once: {decode:.2f} s\n")
    print("| case | plain fp32 img/s | maskreid img/s | speed-up | input pipeline share (maskreid) | "
          "GFLOP/image | plain: % of fp32 ceiling | maskreid: % of bf16 ceiling |")
    print("|---|---|---|---|---|---|---|---|")
    for stage in args.stages:
        if stage == "features":
            plain = measure_features(params, cache, paths, True, args.workers, epochs)
            ours = measure_features(params, cache, paths, False, args.workers, epochs)
            print(f"| feature extraction (fp32 both) | {plain:.1f} | {ours:.1f} | {ours / plain:.2f}x | | | | |")
            continue
        flops = stage_flops(params, cache, stage)
        plain = measure_stage(params, cache, paths, stage, True, epochs, args.workers)
        ours = measure_stage(params, cache, paths, stage, False, epochs, args.workers)
        ceiling = bf16 if amp.name == "bf16" else fp32
        print(f"| {stage} | {plain['img_s']:.1f} | {ours['img_s']:.1f} | {ours['img_s'] / plain['img_s']:.2f}x | "
              f"{100 * ours['data_share']:.1f}% | {flops / 1e9:.2f} | {100 * flops * plain['img_s'] / fp32:.0f}% | "
              f"{100 * flops * ours['img_s'] / ceiling:.0f}% |")
        sys.stdout.flush()


if __name__ == "__main__":
    main()

"""Inference speed of F as `maskreid extract` runs it: PyTorch fp32 (contiguous and channels_last), PyTorch
bf16 autocast + channels_last, and onnxruntime on the ONNX export, for both profiles.

    python bench/inference_speed.py            # a Markdown table: images/s per variant, same images

Weights are random (speed does not depend on them); the input is a seeded batch of uint8 images at the
profile's resize, so each row includes the test transform (crop, normalisation) as extract does.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from maskreid.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from maskreid.models.checkpoints import save_checkpoint
from maskreid.models.extractor import FeatureExtractor
from maskreid.models.spec import ModelSpec
from maskreid.runtime.precision import cpu_has_fast_bf16
from maskreid.runtime.provenance import device_name
from maskreid.serve.export import export_onnx
from maskreid.serve.inference import OnnxEmbedder, TorchEmbedder, preprocess

PROFILES = {"paper": ("resnet50", (234, 117), (224, 112)), "quick": ("resnet18", (134, 67), (128, 64))}


def images_per_second(call, batch: torch.Tensor, repeats: int) -> float:
    call(batch)                                              # warm-up (oneDNN / onnxruntime plan the kernels)
    best = float("inf")
    for _ in range(repeats):
        began = time.perf_counter()
        call(batch)
        best = min(best, time.perf_counter() - began)
    return len(batch) / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--batch", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--profiles", default="paper,quick")
    args = parser.parse_args()
    print(f"machine: {device_name(torch.device('cpu'))}, {torch.get_num_threads()} threads, torch {torch.__version__},"
          f" bf16 units: {'yes' if cpu_has_fast_bf16() else 'no (bf16 is emulated: slow)'}\n")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.profiles.split(","):
            backbone, resize, crop = PROFILES[name]
            spec = ModelSpec(backbone, 512, resize, crop, IMAGENET_MEAN, IMAGENET_STD, "benchmark", 3, "-")
            torch.manual_seed(0)
            ckpt = Path(tmp) / f"{name}.pt"
            save_checkpoint(ckpt, {"extractor": FeatureExtractor(backbone, 512, "none").state_dict(),
                                   "inference": spec.to_dict()})
            batch = torch.randint(0, 256, (args.batch, 3, *resize), dtype=torch.uint8,
                                  generator=torch.Generator().manual_seed(0))
            contiguous, nhwc = TorchEmbedder(ckpt, channels_last=False), TorchEmbedder(ckpt, channels_last=True)

            @torch.inference_mode()
            def bf16(images: torch.Tensor) -> np.ndarray:
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    x = preprocess(images, spec).to(memory_format=torch.channels_last)
                    return nhwc.model(x).float().numpy()

            onnx_file = Path(tmp) / f"{name}.onnx"
            export_onnx(ckpt, onnx_file)
            ort = OnnxEmbedder(onnx_file)
            reference = contiguous(batch)
            variants = {"PyTorch fp32, contiguous": contiguous, "PyTorch fp32, channels_last (extract's default)": nhwc,
                        "PyTorch bf16 autocast + channels_last": bf16, "onnxruntime fp32 (CPU provider)": ort}
            for label, call in variants.items():
                speed = images_per_second(call, batch, args.repeats if "bf16" not in label else 1)
                diff = float(np.abs(call(batch) - reference).max())
                rows.append((f"{name} ({backbone}, {crop[0]}x{crop[1]})", label, f"{speed:.1f}", f"{diff:.1e}"))
                print(f"  {rows[-1]}", flush=True)
    print(f"\n| profile | variant | images/s (batch {args.batch}) | max abs diff vs fp32 |\n|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

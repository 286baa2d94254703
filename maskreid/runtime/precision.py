"""Mixed precision for training: bf16 autocast where the hardware has it (CPUs with AVX-512 BF16 or AMX,
recent GPUs), fp16 with loss scaling on CUDA, or plain fp32. Losses are always computed in fp32."""

from __future__ import annotations

import logging
from contextlib import AbstractContextManager
from pathlib import Path

import torch

from maskreid.params import PRECISIONS

log = logging.getLogger("maskreid")

# On CPUs that compute in bf16 (AVX-512 BF16, AMX), torch 2.14.1's bf16 convolution returns NaN on some small
# feature maps: Conv2d(256, 512, 3, stride=2, padding=1) on a (16, 256, 4, 2) bf16 input gives NaN in 17 of 50
# random draws (fp32 never; 8x4 never). A ResNet's layer4 gets a 4x2 map from a 64x32 crop; from 128x64 up the
# maps are 8x4 or more and the runs are clean (docs/troubleshooting.md). So bf16 on the CPU needs this crop.
BF16_CPU_MIN_CROP = (128, 64)


def cpu_has_fast_bf16() -> bool:
    """True where the CPU multiplies bf16 matrices natively (avx512_bf16 or amx_bf16 in /proc/cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def bf16_unsafe_on_cpu(crop: tuple[int, int] | None) -> bool:
    """Whether F's feature maps at this crop are small enough for the CPU's bf16 convolutions to return NaN."""
    return crop is not None and (crop[0] < BF16_CPU_MIN_CROP[0] or crop[1] < BF16_CPU_MIN_CROP[1])


def resolve_precision(precision: str, device: torch.device,
                      crop: tuple[int, int] | None = None) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device` (None = fp32); 'auto' picks the fastest safe one: bf16 on
    a CPU that has it only where the crop keeps F's maps out of the NaN range (BF16_CPU_MIN_CROP)."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        if not cpu_has_fast_bf16():
            return None
        if bf16_unsafe_on_cpu(crop):
            log.info("precision auto: fp32, not bf16, at crop %s (the CPU's bf16 convolutions return NaN on maps "
                     "this small; docs/troubleshooting.md)", list(crop or ()))
            return None
        return torch.bfloat16
    if precision == "bf16" and device.type == "cpu" and bf16_unsafe_on_cpu(crop):
        raise ValueError(f"precision: bf16 on the CPU with crop {list(crop or ())}: the CPU's bf16 convolutions "
                         "return NaN on F's feature maps this small (docs/troubleshooting.md); use precision fp32 "
                         f"or auto, or a crop of at least {BF16_CPU_MIN_CROP[0]}x{BF16_CPU_MIN_CROP[1]}")
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision: fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]


class MixedPrecision:
    """Autocast context plus an optimizer step that scales the loss when fp16 needs it."""

    def __init__(self, precision: str, device: torch.device, crop: tuple[int, int] | None = None) -> None:
        self.device = device
        self.dtype = resolve_precision(precision, device, crop)
        self.scaler = torch.amp.GradScaler(device.type, enabled=self.dtype == torch.float16)

    @property
    def name(self) -> str:
        return {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[self.dtype]

    def autocast(self) -> AbstractContextManager:
        return torch.autocast(self.device.type, dtype=self.dtype or torch.float32, enabled=self.dtype is not None)

    def step(self, loss: torch.Tensor, optimizer: torch.optim.Optimizer) -> None:
        optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(optimizer)
        self.scaler.update()

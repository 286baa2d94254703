"""Mixed precision for training: bf16 autocast where the hardware has it (CPUs with AVX-512 BF16 or AMX,
recent GPUs), fp16 with loss scaling on CUDA, or plain fp32. Losses are always computed in fp32."""

from __future__ import annotations

from contextlib import AbstractContextManager
from pathlib import Path

import torch

from maskreid.params import PRECISIONS


def cpu_has_fast_bf16() -> bool:
    """True where the CPU multiplies bf16 matrices natively (avx512_bf16 or amx_bf16 in /proc/cpuinfo)."""
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for `precision` on `device` (None = fp32); 'auto' picks the fastest safe one."""
    if precision not in PRECISIONS:
        raise ValueError(f"precision: {precision!r} is not one of {', '.join(PRECISIONS)}")
    if precision == "auto":
        if device.type == "cuda":
            return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.bfloat16 if cpu_has_fast_bf16() else None
    if precision == "fp16" and device.type != "cuda":
        raise ValueError("precision: fp16 needs a CUDA device; use bf16 or fp32 on the CPU")
    return {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}[precision]


class MixedPrecision:
    """Autocast context plus an optimizer step that scales the loss when fp16 needs it."""

    def __init__(self, precision: str, device: torch.device) -> None:
        self.device = device
        self.dtype = resolve_precision(precision, device)
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

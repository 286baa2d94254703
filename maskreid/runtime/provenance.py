"""Where and with what a result was made: library versions, the machine, the precision `auto` resolves to.
Written beside every metrics file, so a number read months later still says how it was produced."""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path
from typing import Any

import torch

from maskreid.runtime.precision import cpu_has_fast_bf16, resolve_precision

PACKAGES = ("torch", "torchvision", "timm", "dvc", "numpy", "maskreid")


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def provenance(device: torch.device, precision: str, crop: tuple[int, int] | None = None) -> dict[str, Any]:
    """Versions, device (the CPU's model and whether it computes in bf16) and the training precision this
    machine resolves `precision` to at this crop: results move between bf16 and fp32 machines."""
    try:
        dtype = resolve_precision(precision, device, crop)
    except ValueError:               # fp16 or a small-crop bf16 asked for here: this machine would refuse it
        dtype = None
    return {"device": str(device), "device_name": device_name(device), "cpu_bf16": cpu_has_fast_bf16(),
            "cpu_threads": torch.get_num_threads(),
            "precision_param": precision,
            "precision_resolved_here": {torch.bfloat16: "bf16", torch.float16: "fp16", None: "fp32"}[dtype],
            "python": platform.python_version(), "platform": platform.platform(),
            "versions": {p: _version(p) for p in PACKAGES}}

"""Where a stage computes and how its random draws start: the device setting and the seeding of every RNG."""

from __future__ import annotations

import random

import numpy as np
import torch


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(setting: str = "auto") -> torch.device:
    """params `device`: auto (the first GPU when torch sees one, else the CPU), cpu, cuda or cuda:N.
    A GPU that is asked for and absent is an error, not a silent CPU run of a GPU-sized job."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(f"device: {setting!r}, but torch sees no CUDA GPU (a CPU-only torch build, or no GPU "
                           "here); set device: auto or cpu")
    index = int(setting.split(":")[1]) if ":" in setting else 0
    if index >= torch.cuda.device_count():
        raise RuntimeError(f"device: {setting!r}, but torch sees {torch.cuda.device_count()} GPU(s) "
                           f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    return torch.device("cuda", index)

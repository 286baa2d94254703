"""Where a stage computes and how its random draws start: the device setting and the seed of every random stream."""

from __future__ import annotations

import random

import numpy as np
import torch

# Every random stream of a training run, named by its purpose; with the stage that draws it (0: the same in
# every stage) and the run's `seed`, it gives the stream's seed
STREAMS = ("init", "augment", "sampler", "batches", "hiding", "held_out", "mask_augment")


def stream_seed(seed: int, stage: int, purpose: str) -> int:
    """The 64-bit seed of one random stream, spawned from (seed, stage, purpose) by numpy's SeedSequence, so no
    two streams of any two runs coincide (with `seed + offset`, stage 3's sampler of seed s was stage 1's of
    seed s + 3)."""
    words = np.random.SeedSequence(seed, spawn_key=(stage, STREAMS.index(purpose))).generate_state(2, np.uint32)
    return (int(words[0]) << 32) | int(words[1])


def seed_everything(seed: int) -> None:
    """Python's, NumPy's global and torch's generators (what building a model draws from)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)        # the legacy global generator takes 32 bits
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

"""F's learning rate per epoch: constant (the paper's Adam at 2e-4) or a linear warm-up followed by a cosine
decay, as torchreid and fast-reid train from scratch. The rate is a function of the epoch index alone, so a
resumed stage sets the same rates as an uninterrupted one without saving a scheduler's state."""

from __future__ import annotations

import math

SCHEDULES = ("constant", "cosine")


def learning_rate(base: float, epoch: int, epochs: int, schedule: str = "constant", warmup_epochs: int = 0) -> float:
    """The rate for 0-based `epoch` of `epochs`. Warm-up: base * (epoch + 1) / (warmup_epochs + 1), so the first
    epoch already moves; cosine: half a cosine from base (first epoch after the warm-up) towards 0, which it would
    reach one epoch after the last, so no epoch is spent at rate 0."""
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule {schedule!r}: expected one of {', '.join(SCHEDULES)}")
    if not 0 <= epoch < epochs:
        raise ValueError(f"epoch {epoch} outside 0..{epochs - 1}")
    if epoch < warmup_epochs:
        return base * (epoch + 1) / (warmup_epochs + 1)
    if schedule == "constant":
        return base
    progress = (epoch - warmup_epochs) / (epochs - warmup_epochs)
    return base * 0.5 * (1 + math.cos(math.pi * progress))

"""BatchNorm during stage 3's hidden pass."""

from __future__ import annotations

from contextlib import contextmanager
from typing import Iterator

from torch import nn


@contextmanager
def bn_running_stats_frozen(module: nn.Module) -> Iterator[None]:
    """BatchNorm still normalises with batch statistics but leaves its running estimates alone.

    Stage 3 feeds F both original and hidden images; only originals are seen at test time, so only they
    should shape the running mean/variance used there.
    """
    norms = [m for m in module.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [m.momentum for m in norms]
    for m in norms:
        m.momentum = 0.0
    try:
        yield
    finally:
        for m, momentum in zip(norms, saved):
            m.momentum = momentum

"""Every random stream of a run has a seed of its own, derived from (seed, stage, purpose): no stream of one
seed replays a stream of another seed, as `seed + offset` did (stage 3's sampler of seed s = stage 1's of s + 3)."""

from __future__ import annotations

import ast

import numpy as np
import torch

from maskreid.runtime.device import STREAMS, stream_seed
from maskreid.train.resume import TrainingState
from tests.conftest import REPO


def test_no_two_streams_of_any_two_seeds_coincide() -> None:
    seen: dict[int, tuple[int, int, str]] = {}
    for seed in range(100):
        for stage in range(4):
            for purpose in STREAMS:
                value = stream_seed(seed, stage, purpose)
                assert value not in seen, ((seed, stage, purpose), seen.get(value))
                assert 0 <= value < 2**64
                seen[value] = (seed, stage, purpose)
    assert stream_seed(7, 3, "sampler") == stream_seed(7, 3, "sampler")       # a function of its arguments


def test_the_stages_seed_through_stream_seed_only() -> None:
    """No arithmetic on params.seed left in the stage modules: every generator gets stream_seed(...)."""
    for module in ("train.py", "evaluate.py"):
        tree = ast.parse((REPO / "maskreid" / "pipeline" / module).read_text())
        sums = [node.lineno for node in ast.walk(tree) if isinstance(node, ast.BinOp)
                and any(isinstance(side, ast.Attribute) and side.attr == "seed" for side in (node.left, node.right))]
        assert sums == [], f"{module}: seed arithmetic at lines {sums}"


def test_a_saved_state_without_a_generator_of_today_is_not_restored() -> None:
    """A progress file of an older maskreid (no "mask_augment" generator) makes the stage start over."""
    net = torch.nn.Linear(2, 2)
    opt = torch.optim.Adam(net.parameters())
    old = TrainingState({"extractor": net}, {"extractor": opt}, {"augment": torch.Generator()},
                        {"batches": np.random.default_rng(0)})
    new = TrainingState({"extractor": net}, {"extractor": opt},
                        {"augment": torch.Generator(), "mask_augment": torch.Generator()},
                        {"batches": np.random.default_rng(0)})
    assert old.fits(old.capture()) and new.fits(new.capture())
    assert not new.fits(old.capture())

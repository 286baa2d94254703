"""F's learning-rate schedule: the rates of each epoch, and that a schedule is part of a stage's settings."""

from __future__ import annotations

import math

import pytest

from maskreid.params import ParamsError, load_params
from maskreid.train.schedule import learning_rate
from tests.conftest import REPO


def test_constant_is_the_base_rate_after_the_warm_up() -> None:
    assert [learning_rate(2e-4, e, 5) for e in range(5)] == [2e-4] * 5
    assert [learning_rate(3.0, e, 5, "constant", 2) for e in range(5)] == [1.0, 2.0, 3.0, 3.0, 3.0]


def test_cosine_falls_from_the_base_rate_and_never_reaches_zero() -> None:
    rates = [learning_rate(1.0, e, 10, "cosine", 2) for e in range(10)]
    assert rates[:3] == pytest.approx([1 / 3, 2 / 3, 1.0])
    # half a cosine over the 8 epochs after the warm-up, written out
    assert rates[2:] == pytest.approx([0.5 * (1 + math.cos(math.pi * k / 8)) for k in range(8)])
    assert all(a > b for a, b in zip(rates[2:], rates[3:])) and rates[-1] > 0


def test_rates_outside_the_stage_are_refused() -> None:
    with pytest.raises(ValueError, match="epoch 5 outside 0..4"):
        learning_rate(1.0, 5, 5)
    with pytest.raises(ValueError, match="schedule 'step'"):
        learning_rate(1.0, 0, 5, "step")


def test_a_schedule_changes_the_settings_hash_and_a_warm_up_must_fit() -> None:
    from maskreid.models.spec import settings_hash
    from maskreid.pipeline.train import _stage_settings

    plain = load_params(REPO / "params.yaml", overrides=["profiles.quick.stage1.schedule=constant",
                                                         "profiles.quick.stage1.warmup_epochs=0"])
    cosine = load_params(REPO / "params.yaml", overrides=["profiles.quick.stage1.schedule=cosine",
                                                          "profiles.quick.stage1.warmup_epochs=0"])
    assert settings_hash(_stage_settings(plain, 1)) != settings_hash(_stage_settings(cosine, 1))
    with pytest.raises(ParamsError, match="warmup_epochs=40 leaves no epoch of epochs=30"):
        load_params(REPO / "params.yaml", overrides=["profiles.quick.stage1.epochs=30",
                                                     "profiles.quick.stage1.warmup_epochs=40"])

"""A loss that becomes NaN/Inf stops the stage with a message naming stage, epoch and step."""

from pathlib import Path

import pytest
import yaml

from maskreid.params import load_params
from maskreid.paths import DatasetPaths
from maskreid.pipeline.prepare import prepare
from maskreid.pipeline.train import train_stage1
from maskreid.train.epochs import NonFiniteLossError
from tests.conftest import REPO
from tests.test_pipeline import TINY, TINY_PROFILE


def test_far_too_high_learning_rate_stops_with_stage_epoch_and_step(tmp_path: Path) -> None:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw.update(TINY)
    raw["profiles"]["quick"] = {**TINY_PROFILE, "precision": "fp32",
                                "stage1": {**TINY_PROFILE["stage1"], "lr": 1e30, "epochs": 2}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(tmp_path / "params.yaml")
    paths = DatasetPaths("synthetic", tmp_path)
    prepare(params, paths)
    with pytest.raises(NonFiniteLossError, match=r"train_extractor \(stage 1\): loss is (nan|inf) at epoch 1, step \d+"):
        train_stage1(params, paths)
    assert not paths.checkpoint(1).exists()          # no checkpoint from a diverged run
    assert not list(paths.checkpoint(1).parent.glob("*.tmp"))

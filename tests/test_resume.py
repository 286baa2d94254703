"""Kill a real training stage and resume it: the final weights equal those of an uninterrupted run."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from maskreid.params import load_params
from maskreid.paths import DatasetPaths
from maskreid.pipeline.prepare import prepare
from tests.conftest import REPO
from tests.test_pipeline import TINY, TINY_PROFILE

pytestmark = pytest.mark.slow
EPOCHS = 6


def _project(root: Path) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw.update(TINY)
    raw["profiles"]["quick"] = {**TINY_PROFILE, "stage1": {**TINY_PROFILE["stage1"], "epochs": EPOCHS}}
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    prepare(load_params(root / "params.yaml"), DatasetPaths("synthetic", root))
    return root


def _stage(root: Path) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, str(REPO / "stages" / "train_extractor.py"), "synthetic"], cwd=root,
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _epoch_of(progress: Path) -> int:
    if not progress.is_file():
        return 0
    return int(torch.load(progress, weights_only=True)["epoch"])


def _wait_for_epoch(progress: Path, epoch: int, proc: subprocess.Popen) -> None:
    deadline = time.time() + 120
    while _epoch_of(progress) < epoch:
        assert proc.poll() is None, proc.stdout.read()
        assert time.time() < deadline, "training made no progress"
        time.sleep(0.05)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory: pytest.TempPathFactory) -> dict[str, torch.Tensor]:
    root = _project(tmp_path_factory.mktemp("a") / "p")
    proc = _stage(root)
    assert proc.wait() == 0, proc.stdout.read()
    return torch.load(root / "models/synthetic/stage1.pt", weights_only=True)["extractor"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_stage_resumes_to_identical_weights(tmp_path: Path, uninterrupted: dict, sig: int) -> None:
    root = _project(tmp_path / "p")
    paths = DatasetPaths("synthetic", root)
    proc = _stage(root)
    _wait_for_epoch(paths.progress(1), 2, proc)
    proc.send_signal(sig)
    output = proc.communicate(timeout=60)[0]
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
    else:
        assert proc.returncode == 130 and "resume from their last complete epoch" in output
    assert not paths.checkpoint(1).exists()
    saved_epoch = _epoch_of(paths.progress(1))
    assert 2 <= saved_epoch < EPOCHS
    assert not list(paths.checkpoint(1).parent.glob("*.tmp"))

    again = _stage(root)
    output = again.communicate(timeout=300)[0]
    assert again.returncode == 0, output
    assert f"resuming after epoch {saved_epoch} of {EPOCHS}" in output
    resumed = torch.load(paths.checkpoint(1), weights_only=True)["extractor"]
    assert resumed.keys() == uninterrupted.keys()
    for key in resumed:
        assert torch.equal(resumed[key], uninterrupted[key]), key
    losses = paths.losses("stage1").read_text().splitlines()
    assert len(losses) == EPOCHS + 1


def test_progress_is_resumed_only_when_unfinished_and_made_with_the_same_inputs(tmp_path: Path) -> None:
    from maskreid.resume import Progress, TrainingState

    net = torch.nn.Linear(2, 2)
    state = TrainingState({"net": net}, {"net": torch.optim.Adam(net.parameters())})
    path = tmp_path / "p.pt"
    Progress(path, "abc").save(3, state, {"main": [{"epoch": 1}]})
    assert Progress(path, "abc").load()["epoch"] == 3
    assert Progress(path, "other params").load() is None
    Progress(path, "abc").save(5, state, {"main": []}, complete=True)
    assert Progress(path, "abc").load() is None
    path.write_bytes(b"garbage")
    assert Progress(path, "abc").load() is None

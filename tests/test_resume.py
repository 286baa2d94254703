"""Kill a real training stage and resume it: the final weights equal those of an uninterrupted run."""

from __future__ import annotations

import json
import os
import shutil
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
EPOCHS = 4


def _project(root: Path) -> Path:
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw.update(TINY)
    # a warm-up and a cosine: a resumed stage must set the rates of the epochs it has left, not restart them
    raw["profiles"]["quick"] = {**TINY_PROFILE, "stage1": {**TINY_PROFILE["stage1"], "epochs": EPOCHS,
                                                           "schedule": "cosine", "warmup_epochs": 1}}
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    prepare(load_params(root / "params.yaml"), DatasetPaths("synthetic", root))
    return root


def _stage(root: Path, script: str = "train_extractor") -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen([sys.executable, str(REPO / "stages" / f"{script}.py"), "synthetic"], cwd=root,
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
    """The reference: the same stage function, run in this process without interruption (a subprocess
    would only add the start-up of torch)."""
    from maskreid.pipeline.train import train_stage1

    root = _project(tmp_path_factory.mktemp("a") / "p")
    train_stage1(load_params(root / "params.yaml"), DatasetPaths("synthetic", root))
    return torch.load(root / "models/synthetic/stage1.pt", weights_only=True)["extractor"]


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM])
def test_killed_stage_resumes_to_identical_weights(tmp_path: Path, uninterrupted: dict, sig: int) -> None:
    """Killed (SIGKILL) or stopped the way a scheduler or `kill` stops it (SIGTERM: a clean exit, 130, a message,
    no temporary file), the stage resumes from its progress file to the weights of the uninterrupted run."""
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
    # the dvclive log goes on where the progress file stopped: each epoch once, in order, and the latest values
    assert _steps(paths.live(1) / "plots/metrics/loss/triplet.tsv") == list(range(1, EPOCHS + 1))
    assert _steps(paths.live(1) / "plots/metrics/lr.tsv") == list(range(1, EPOCHS + 1))
    assert json.loads((paths.live(1) / "metrics.json").read_text())["step"] == EPOCHS


def test_a_stage_whose_parent_is_killed_stops_and_resumes(tmp_path: Path, uninterrupted: dict) -> None:
    """`kill <dvc>` (SIGTERM to `dvc repro` alone) must not leave the stage training on, unrecorded, to a finished
    progress file that the next `dvc repro` cannot resume: the stage stops with its parent, and resumes."""
    root = _project(tmp_path / "p")
    paths = DatasetPaths("synthetic", root)
    log = tmp_path / "stage.log"
    launcher = ("import subprocess, sys\n"
                f"stage = subprocess.Popen([sys.executable, {str(REPO / 'stages' / 'train_extractor.py')!r}, 'synthetic'],"
                f" stdout=open({str(log)!r}, 'w'), stderr=subprocess.STDOUT)\n"
                "print(stage.pid, flush=True)\nstage.wait()\n")
    parent = subprocess.Popen([sys.executable, "-c", launcher], cwd=root, env={**os.environ, "PYTHONPATH": str(REPO)},
                              stdout=subprocess.PIPE, text=True)
    stage_pid = int(parent.stdout.readline())
    _wait_for_epoch(paths.progress(1), 2, parent)
    parent.send_signal(signal.SIGTERM)                       # as `kill` does to dvc: the parent alone
    parent.wait(timeout=30)
    deadline = time.time() + 60
    while Path(f"/proc/{stage_pid}").exists() and "zombie" not in Path(f"/proc/{stage_pid}/status").read_text():
        assert time.time() < deadline, "the stage trained on after its parent died"
        time.sleep(0.1)
    assert "interrupted: synthetic stopped" in log.read_text()
    assert 2 <= _epoch_of(paths.progress(1)) < EPOCHS and not paths.checkpoint(1).exists()
    again = _stage(root)
    output = again.communicate(timeout=300)[0]
    assert again.returncode == 0 and "resuming after epoch" in output, output
    resumed = torch.load(paths.checkpoint(1), weights_only=True)["extractor"]
    assert all(torch.equal(resumed[key], uninterrupted[key]) for key in uninterrupted)


def _steps(tsv: Path) -> list[int]:
    """The `step` column of a dvclive metric file."""
    lines = tsv.read_text().splitlines()
    assert lines[0].split("\t")[0] == "step", lines[0]
    return [int(line.split("\t")[0]) for line in lines[1:]]


def _logged(live: Path) -> dict[str, str]:
    """Every dvclive metric file of a stage but the wall times, which differ between runs."""
    return {str(f.relative_to(live)): f.read_text() for f in sorted((live / "plots/metrics").rglob("*.tsv"))
            if f.name != "epoch_seconds.tsv"}


def test_progress_is_resumed_only_when_unfinished_and_made_with_the_same_inputs(tmp_path: Path) -> None:
    from maskreid.train.resume import Progress, TrainingState

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


# ------------------------------------------------------------------------ stages 2 and 3 (two nets, two optimizers)
LATER = {"stage1": 1, "stage2": 4, "stage3": 4}
MASK_EVERY = 2


@pytest.fixture(scope="module")
def trained_stage1(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny project with its stage-1 checkpoint, the start of stages 2 and 3."""
    from maskreid.pipeline.train import train_stage1

    root = tmp_path_factory.mktemp("later") / "p"
    raw = yaml.safe_load((REPO / "params.yaml").read_text())
    raw.update(TINY)
    raw["mask_update_every"] = MASK_EVERY
    raw["profiles"]["quick"] = {**TINY_PROFILE, **{k: {**TINY_PROFILE[k], "epochs": v} for k, v in LATER.items()}}
    root.mkdir(parents=True)
    (root / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    params = load_params(root / "params.yaml")
    prepare(params, DatasetPaths("synthetic", root))
    train_stage1(params, DatasetPaths("synthetic", root))
    return root


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst, ignore=shutil.ignore_patterns("*.progress.pt"))
    return dst


def _run_to_end(root: Path, script: str) -> str:
    proc = _stage(root, script)
    output = proc.communicate(timeout=300)[0]
    assert proc.returncode == 0, output
    return output


@pytest.fixture(scope="module")
def uninterrupted_later(trained_stage1: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Stages 2 and 3 run to the end in this process: the reference the killed subprocess runs must match."""
    from maskreid.pipeline.train import train_stage2, train_stage3

    root = _copy(trained_stage1, tmp_path_factory.mktemp("later_ref") / "p")
    params, paths = load_params(root / "params.yaml"), DatasetPaths("synthetic", root)
    train_stage2(params, paths)
    train_stage3(params, paths)
    return root


def test_stage3_updates_m_exactly_every_mask_update_every_epochs(uninterrupted_later: Path) -> None:
    paths = DatasetPaths("synthetic", uninterrupted_later)
    mask_epochs = _steps(paths.live(3) / "plots/metrics/mask_update/mask.tsv")
    assert mask_epochs == list(range(MASK_EVERY, LATER["stage3"] + 1, MASK_EVERY))      # epochs 2 and 4
    stage2 = torch.load(paths.checkpoint(2), weights_only=True)["mask"]
    stage3 = torch.load(paths.checkpoint(3), weights_only=True)["mask"]
    assert any(not torch.equal(stage2[k], stage3[k]) for k in stage2)                   # and M did move


@pytest.mark.parametrize(("script", "stage", "nets"), [("train_mask", 2, ("mask",)),
                                                       ("train_joint", 3, ("extractor", "mask"))])
def test_killed_later_stage_resumes_to_identical_weights(trained_stage1: Path, uninterrupted_later: Path,
                                                         tmp_path: Path, script: str, stage: int,
                                                         nets: tuple[str, ...]) -> None:
    root = _copy(trained_stage1, tmp_path / "p")
    paths = DatasetPaths("synthetic", root)
    if stage == 3:
        shutil.copy2(DatasetPaths("synthetic", uninterrupted_later).checkpoint(2), paths.checkpoint(2))
    epochs = LATER[f"stage{stage}"]
    proc = _stage(root, script)
    # stage 3: kill after M's first update, so the resumed run must restore the generators that update used
    first = MASK_EVERY if stage == 3 else 1
    _wait_for_epoch(paths.progress(stage), first, proc)
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    saved_epoch = _epoch_of(paths.progress(stage))
    assert first <= saved_epoch < epochs and not paths.checkpoint(stage).exists()
    output = _run_to_end(root, script)
    assert f"resuming after epoch {saved_epoch} of {epochs}" in output
    resumed = torch.load(paths.checkpoint(stage), weights_only=True)
    reference = torch.load(DatasetPaths("synthetic", uninterrupted_later).checkpoint(stage), weights_only=True)
    for net in nets:
        assert resumed[net].keys() == reference[net].keys()
        for key in resumed[net]:
            assert torch.equal(resumed[net][key], reference[net][key]), (net, key)
    logged, expected = _logged(paths.live(stage)), _logged(DatasetPaths("synthetic", uninterrupted_later).live(stage))
    assert logged == expected
    assert {2: "plots/metrics/loss/identity.tsv", 3: "plots/metrics/mask_update/identity.tsv"}[stage] in logged

"""Training on several processes (torchrun, gloo on the CPU) is the same method as on one: the same losses and
gradients for the same global batch, a failing rank stops the run, and a DVC stage run on two processes
survives the SIGKILL of a rank."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from maskreid.train.distributed import SINGLE, Cluster
from tests.conftest import REPO

pytestmark = pytest.mark.slow     # torchrun starts: each test runs processes that import torch
STEPS = REPO / "tests" / "distributed_steps.py"
TOL = 1e-5
FLOOR = 0.9      # Adam steps: at least this share of the moving weights compared after the step


def _torchrun(out: Path, processes: int = 2, env: dict[str, str] | None = None,
              timeout: float = 300) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
           str(STEPS), str(out)]
    return subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, "PYTHONPATH": str(REPO), **(env or {})})


@pytest.fixture(scope="module")
def steps(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, dict]:
    """The same steps in this process (one rank) and under torchrun with two ranks."""
    sys.path.insert(0, str(STEPS.parent))
    try:
        from distributed_steps import run_steps
    finally:
        sys.path.remove(str(STEPS.parent))
    out = tmp_path_factory.mktemp("dist") / "two.pt"
    result = _torchrun(out)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    two = torch.load(out, weights_only=False)
    assert two.pop("world") == 2
    return run_steps(SINGLE), two


def _compare(one: dict, two: dict, module: str, every_weight: bool = False) -> float:
    """Gradients within TOL of one process; weights and buffers after the step within TOL wherever the
    gradient stands above the two runs' own difference. (Adam's first step moves a weight by lr * g / |g|: a
    gradient that is zero up to rounding, like the bias of a conv that BatchNorm follows, becomes +-lr of noise
    with one process as with two, so those elements say nothing about distribution; a gradient ten times the
    largest one-vs-two difference of its tensor has the same sign in both runs.) Returns the share of the
    parameters' elements with a non-zero gradient (the others do not move) whose weights were compared after the
    step: a floor on it keeps the check from passing on nothing."""
    g1, g2 = one[module]["grad"], two[module]["grad"]
    assert g1.keys() == g2.keys() and g1
    for name in g1:
        diff = (g1[name] - g2[name]).abs().max().item()
        assert diff <= TOL, f"{module} {name}: gradients differ by {diff:.2e}"
    a1, a2 = one[module]["after"], two[module]["after"]
    assert a1.keys() == a2.keys()
    compared = total = 0
    for name in a1:
        diff = (a1[name].double() - a2[name].double()).abs()
        if name in g1:
            moving = g1[name] != 0
            if not every_weight:
                noise = (g1[name] - g2[name]).abs().max().item()
                diff = diff[g1[name].abs() > 10 * noise + 1e-12]
                moving &= g1[name].abs() > 10 * noise + 1e-12
            total += int((g1[name] != 0).sum())
            compared += int(moving.sum())
        assert diff.numel() == 0 or diff.max().item() <= TOL, f"{module} {name}: differs by {diff.max():.2e} after the step"
    return compared / total


def _same_losses(one: dict, two: dict) -> None:
    assert one.keys() == two.keys()
    for key in one:
        assert abs(one[key] - two[key]) <= TOL or (one[key] != one[key] and two[key] != two[key]), (key, one, two)


def test_stage1_step_on_two_processes_equals_one(steps: tuple[dict, dict]) -> None:
    """Batch-hard mining over the whole 15-image batch (8 + 7 rows), global-batch BatchNorm, DDP averaging."""
    one, two = steps
    _same_losses(one["stage1"]["losses"], two["stage1"]["losses"])
    assert _compare(one["stage1"], two["stage1"], "extractor") > FLOOR


def test_stage1_sgd_step_on_two_processes_moves_every_weight_as_one(steps: tuple[dict, dict]) -> None:
    """With an update proportional to the gradient (SGD, lr 0.1) no element is excluded: every weight and
    buffer after the step within 1e-5 of one process."""
    one, two = steps
    _same_losses(one["stage1_sgd"]["losses"], two["stage1_sgd"]["losses"])
    assert _compare(one["stage1_sgd"], two["stage1_sgd"], "extractor", every_weight=True) == 1.0


@pytest.mark.parametrize("hiding", ["learned", "random_blocks"])
def test_stage3_step_on_two_processes_equals_one(steps: tuple[dict, dict], hiding: str) -> None:
    """F's stage-3 step: the original and the hidden pass (BN statistics frozen for it), the hidden pixels the
    same as in one process (M's top 30% per image; random blocks drawn for the whole batch)."""
    one, two = steps
    _same_losses(one[f"stage3_{hiding}"]["losses"], two[f"stage3_{hiding}"]["losses"])
    assert _compare(one[f"stage3_{hiding}"], two[f"stage3_{hiding}"], "extractor") > FLOOR


def test_mask_step_on_two_processes_equals_one(steps: tuple[dict, dict]) -> None:
    """M's L_mask step (stages 2 and 3) on an 11-image batch split 6 + 5; F stays untouched."""
    one, two = steps
    _same_losses(one["mask"]["losses"], two["mask"]["losses"])
    assert _compare(one["mask"], two["mask"], "mask") > FLOOR
    # and an update proportional to the gradient (SGD) compares every weight, whatever its gradient
    _same_losses(one["mask_sgd"]["losses"], two["mask_sgd"]["losses"])
    assert _compare(one["mask_sgd"], two["mask_sgd"], "mask", every_weight=True) == 1.0
    assert not two["mask"]["extractor"]["grad"]
    for name, value in one["mask"]["extractor"]["after"].items():
        assert torch.equal(value, two["mask"]["extractor"]["after"][name]), name


def test_distribution_matters_where_it_should(steps: tuple[dict, dict]) -> None:
    """A control for the tests above, on the two-process result: its loss is batch-hard mining over the whole
    15-row batch (8 + 7 rows on the two ranks), and not what each rank mining only its own rows would give."""
    from maskreid.models.losses import batch_hard_triplet

    one, two = steps
    embeddings, pids = one["stage1"]["embeddings"], one["stage1"]["pids"]
    assert embeddings.shape[0] == 15 and two["stage1"]["embeddings"].shape[0] == 8     # rank 0's share
    assert torch.allclose(two["stage1"]["embeddings"], embeddings[:8], atol=TOL)
    whole = float(batch_hard_triplet(embeddings, pids, 1.0))
    per_rank = float(sum(batch_hard_triplet(embeddings[s], pids[s], 1.0) for s in (slice(0, 8), slice(8, 15))) / 2)
    logged = two["stage1"]["losses"]["triplet"]
    assert abs(logged - whole) <= TOL and abs(logged - per_rank) > 1e-3


def test_shards_cover_every_row_once() -> None:
    for world in (1, 2, 3, 4, 8):
        for n in (1, 7, 15, 50, 60):
            rows = [list(range(n))[Cluster(r, world, r).shard(n)] for r in range(world)]
            assert sum(rows, []) == list(range(n))
            assert max(map(len, rows)) - min(map(len, rows)) <= 1


@pytest.mark.parametrize("fault", ["raise", "hang"])
def test_a_failing_rank_stops_the_whole_run(tmp_path: Path, fault: str) -> None:
    """A rank that raises, or stops answering (the others' collectives time out after 5 s): torchrun stops
    every rank and exits non-zero, well within a minute, with the failing rank's error in its output."""
    began = time.monotonic()
    result = _torchrun(tmp_path / "never.pt", env={"MASKREID_TEST_FAULT": f"{fault}:1", "MASKREID_TEST_TIMEOUT_S": "5"},
                       timeout=120)
    elapsed = time.monotonic() - began
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert elapsed < 60, f"took {elapsed:.0f} s to stop"
    assert ("rank 1 failed on purpose" if fault == "raise" else "Timed out") in output, output[-3000:]
    assert not (tmp_path / "never.pt").exists()


def test_dvc_stage_on_two_processes_survives_a_killed_rank(tmp_path: Path) -> None:
    """`distributed.processes: 2` in the profile: `dvc repro` runs stage 1 under torchrun (the DVC cmd is
    unchanged); SIGKILL one rank mid-run, the stage fails; the next `dvc repro` resumes from the progress file
    rank 0 wrote and finishes."""
    from tests.test_pipeline import TINY_PROFILE, dvc_status, run, tiny_project, user_env
    from tests.test_resume import _epoch_of

    root = tiny_project(tmp_path / "p", {**TINY_PROFILE, "stage1": {**TINY_PROFILE["stage1"], "epochs": 8},
                                         "distributed": {"processes": 2, "backend": "gloo", "timeout_s": 60}},
                        "tiny, two processes")
    run(["dvc", "repro", "prepare@synthetic"], root)

    progress = root / "models/synthetic/stage1.progress.pt"
    log = tmp_path / "repro.log"
    with open(log, "w") as sink:
        repro = subprocess.Popen(["dvc", "repro", "train_extractor@synthetic"], cwd=root, env=user_env(),
                                 stdout=sink, stderr=subprocess.STDOUT)
    deadline = time.time() + 240
    while _epoch_of(progress) < 2:
        assert repro.poll() is None, log.read_text()[-3000:]
        assert time.time() < deadline, "no progress"
        time.sleep(0.1)
    ranks = _rank_processes("stages.train_extractor")
    assert sorted(ranks) == [0, 1], ranks
    os.kill(ranks[1], signal.SIGKILL)
    assert repro.wait(timeout=120) != 0, log.read_text()[-3000:]
    killed_at = _epoch_of(progress)
    assert 2 <= killed_at < 8

    resumed = run(["dvc", "repro", "train_extractor@synthetic"], root)
    text = resumed.stdout + resumed.stderr
    assert f"resuming after epoch {killed_at} of 8" in text, text[-3000:]
    assert "rank 1 of 2" in text
    final = torch.load(root / "models/synthetic/stage1.pt", weights_only=True)
    assert final["training"]["processes"] == 2 and final["training"]["epochs"] == 8
    assert not dvc_status(root).get("train_extractor@synthetic")


def _rank_processes(module: str) -> dict[int, int]:
    """rank -> pid of the torchrun workers running `module` (read from /proc)."""
    found = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
            environ = dict(v.split(b"=", 1) for v in (entry / "environ").read_bytes().split(b"\0") if b"=" in v)
        except OSError:
            continue
        if module.encode() in cmdline and b"torch.distributed.run" not in cmdline and b"RANK" in environ:
            found[int(environ[b"RANK"])] = int(entry.name)
    return found

"""A sweep shared by machines through git and a DVC remote, with clones on one machine standing in for the
workers: a bare git repository is the shared git remote, a folder the DVC remote. Two workers each queue and
run their share of the sweep and `dvc exp push` it; a third clone `dvc exp pull`s everything and builds the
ablation report from the experiments of both (docs/dvc.md, "Sweeps across machines")."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from tests.test_pipeline import copy_project, git, run, run_queue

pytestmark = pytest.mark.slow


def test_two_workers_share_a_sweep_and_a_third_clone_reports_it(built_tiny_project: Path, tmp_path: Path) -> None:
    origin = copy_project(built_tiny_project, tmp_path / "origin")
    store = tmp_path / "dvc-store"
    run(["dvc", "remote", "add", "-d", "shared", str(store)], origin)
    git(origin, "add", "-A")
    git(origin, "commit", "-qm", "the baseline run, and the shared DVC remote")
    run(["dvc", "push"], origin)
    run(["git", "clone", "-q", "--bare", str(origin), str(tmp_path / "origin.git")], tmp_path)
    remote = str(tmp_path / "origin.git")

    # each worker's share re-runs stage 3 onwards only: stages 1 and 2 come from the baseline it pulled
    shares = {"worker-a": ["-S", "hiding=none"], "worker-b": ["-S", "hiding=random_blocks"]}
    for name, sweep in shares.items():
        clone = tmp_path / name
        run(["git", "clone", "-q", remote, str(clone)], tmp_path)
        run(["dvc", "pull"], clone)                       # the baseline's models: nothing of it is re-run
        run(["dvc", "exp", "run", "--queue", "-n", f"{name}-run", *sweep], clone)
        status = run_queue(clone, 900)
        assert "Failed" not in status and "Success" in status, status
        run(["dvc", "exp", "push", "origin", f"{name}-run"], clone)

    reporter = tmp_path / "reporter"
    run(["git", "clone", "-q", remote, str(reporter)], tmp_path)
    run(["dvc", "exp", "pull", "origin", "worker-a-run", "worker-b-run"], reporter)
    listed = run(["dvc", "exp", "list", "--name-only"], reporter).stdout.split()
    assert sorted(listed) == ["worker-a-run", "worker-b-run"]
    run(["dvc", "exp", "apply", "worker-b-run"], reporter)           # its models came from the DVC remote
    assert (reporter / "models" / "synthetic" / "stage3.pt").is_file()
    run(["git", "checkout", "--", "."], reporter)
    run(["maskreid", "ablation", "-o", "reports"], reporter)
    runs = pd.read_csv(reporter / "reports" / "ablation_runs.csv")
    assert sorted(zip(runs.hiding, runs.seed)) == [("learned", 0), ("none", 0), ("random_blocks", 0)]
    report = (reporter / "reports" / "ablation.md").read_text()
    for control in ("none", "random_blocks"):       # the baseline's learned run against each worker's control
        assert f"| learned - {control} | 1 |" in report

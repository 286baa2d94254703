"""DVC's experiment queue on the trained tiny project: queued runs see DVC-tracked raw data, reuse the run-cache,
score a cross-domain pair; the re-ranking option re-runs the scoring stages only. A module of its own so that it
runs on one pytest-xdist worker while test_pipeline.py's `dvc exp run` runs on the other, both on copies of one
`dvc repro` (conftest.py, `built_tiny_project`)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from tests.test_pipeline import copy_project, git, run, run_queue, stages_run

pytestmark = pytest.mark.slow


@pytest.fixture
def project(built_tiny_project: Path, tmp_path: Path) -> Path:
    """A copy of the trained tiny project for this module alone (the queue adds a dataset to it)."""
    return copy_project(built_tiny_project, tmp_path / "p")


def _tiny_market(root: Path) -> None:
    """A small two-camera dataset in Market-1501 layout: 10 train ids (4 images), 6 test ids."""
    rng = np.random.default_rng(0)
    for pid in range(1, 17):
        colour = rng.integers(0, 255, 3)
        for i in range(4):
            cam = 1 + i % 2
            folder = "bounding_box_train" if pid <= 10 else ("query" if cam == 1 and i == 0 else "bounding_box_test")
            pixels = np.clip(colour + rng.normal(0, 25, (64, 32, 3)), 0, 255).astype(np.uint8)
            target = root / folder / f"{pid:04d}_c{cam}s1_{i:06d}_00.jpg"
            target.parent.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(target)


def test_queued_sweep_sees_dvc_tracked_raw_data_and_reranking_reruns_evaluation_only(project: Path) -> None:
    """Queued experiments run in a temporary copy made from git and the DVC cache: raw data added the
    documented way (`dvc add data/raw/<ds>`) is there; two queued runs finish and are listed; the second
    restores the training stages from DVC's run-cache; a cross-domain pair is scored and reported. The sweep is
    `evaluation.rerank=false,true`: the re-ranked run re-runs the scoring stages only and records it (one
    queued run doing what a second `dvc exp run` in the workspace would, at a fraction of the suite's time)."""
    git(project, "add", "-A")
    git(project, "commit", "-qm", "results of the tiny run")              # dvc.lock, as a user commits it
    _tiny_market(project / "data" / "raw" / "custom")
    run(["dvc", "add", "data/raw/custom"], project)
    raw = yaml.safe_load((project / "params.yaml").read_text())
    raw["datasets"] = ["synthetic", "custom"]
    raw["cross_domain"] = {"synthetic_on_custom": {"train": "synthetic", "test": "custom"}}
    (project / "params.yaml").write_text(yaml.safe_dump(raw, sort_keys=False))
    git(project, "add", "data/raw/custom.dvc", "params.yaml")    # data/raw/<ds>/ itself is git-ignored already
    git(project, "commit", "-qm", "custom dataset tracked by DVC, and a cross-domain pair")
    run(["dvc", "exp", "run", "--queue", "-S", "evaluation.rerank=false,true"], project)
    status = run_queue(project, 600)
    assert status.count("Success") == 2 and "Failed" not in status, status
    tasks = [line.split()[0] for line in status.splitlines()[1:] if "Success" in line]
    logs = {task: run(["dvc", "queue", "logs", task], project).stdout for task in tasks}
    every = "".join(logs.values())
    assert every.count("Running stage 'train_extractor@custom'") == 1, every[-3000:]   # trained once for both
    assert every.count("Stage 'train_joint@custom' is cached - skipping run") == 1
    assert every.count("Running stage 'cross_evaluate@synthetic_on_custom'") == 2
    shown = json.loads(run(["dvc", "exp", "show", "--json"], project).stdout)
    runs = {bool(r["data"]["params"]["params.yaml"]["data"]["evaluation"]["rerank"]): r
            for entry in shown for exp in (entry.get("experiments") or []) for r in exp["revs"]}
    assert set(runs) == {False, True}
    metrics = {rerank: r["data"]["metrics"] for rerank, r in runs.items()}
    for found in metrics.values():
        assert 0 < found["metrics/custom.json"]["data"]["stage3"]["mAP"] <= 100
        cross = found["metrics/cross/synthetic_on_custom.json"]["data"]
        assert cross["train"] == "synthetic" and cross["test"] == "custom" and 0 < cross["stage3"]["mAP"] <= 100
    plain, reranked = (metrics[k]["metrics/synthetic.json"]["data"] for k in (False, True))
    assert plain["reranked"] is False and reranked["reranked"] is True
    assert reranked["stage3"]["mAP"] != plain["stage3"]["mAP"]
    assert reranked["authors_protocol"]["stage3"] == plain["authors_protocol"]["stage3"]   # never re-ranked
    rerank_log = next(log for log in logs.values() if "Running stage 'prepare@custom'" not in log)
    assert stages_run(rerank_log) == {"evaluate@synthetic", "evaluate@custom",
                                      "cross_evaluate@synthetic_on_custom", "report"}, rerank_log[-3000:]
    run(["dvc", "exp", "apply", runs[True].get("rev") or runs[True]["name"]], project)
    details = json.loads((project / "metrics" / "synthetic.details.json").read_text())
    assert details["reranking"] == {"used": True, "k1": 20, "k2": 6, "lambda": 0.3}
    report = (project / "reports" / "table1.md").read_text()
    assert "## Cross-domain" in report and "| synthetic | " in report and "(in-domain)" in report

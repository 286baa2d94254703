"""Shared fixtures: seeded RNGs and tiny Market-format folders written as real JPEG files."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

# Under pytest-xdist each of the two workers, and every stage process it starts, gets one thread: with torch's
# OpenMP pools each wanting both cores, the suite on two workers took 10 min 35 s and 15.3 CPU-minutes; with one
# thread each, 8 min 35 s and 11.6 (2-core AMD EPYC). Set before torch is imported, so it takes; `-n 0` keeps both.
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"

import numpy as np  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402
from PIL import Image

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"

# The modules that take longest, longest first (measured: `pytest --durations`, README "Tests"). The suite runs
# on two pytest-xdist workers, one module per work unit (`--dist loadscope`: a module-scoped fixture is built
# once), and xdist hands each worker two units at the start: worker 1 takes test_pipeline (200 s, it builds the
# trained project) and test_distributed (110 s), worker 2 test_resume (130 s) and then test_queue (170-190 s, on
# a copy of that project, built by then), and both take the short modules as they come. Left to the file order,
# the long modules came last and one worker ran alone; with test_queue third (worker 1), 7 min 22 s, not 6:47.
# test_sweep_workers (135 s, three clones of that project) is left among the short modules: placed fifth here
# it made one worker run alone at the end (8 min 39 s against 7 min 56 s).
LONGEST_FIRST = ("test_pipeline.py", "test_resume.py", "test_distributed.py", "test_queue.py",
                 "test_stage_deps.py", "test_inference.py")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Long modules first, each module's own order kept (test_pipeline's tests build on one another)."""
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))     # sort is stable


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)
    np.random.seed(0)


def write_jpeg(path: Path, colour: tuple[int, int, int] = (120, 60, 30), size: tuple[int, int] = (64, 128)) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("RGB", size, colour).save(path)


@pytest.fixture
def market_folder(tmp_path: Path) -> Path:
    """A miniature Market-1501 folder: 2 train ids, 2 test ids, a distractor, a junk image and Thumbs.db, where
    the `custom` dataset of a project rooted at tmp_path reads it (data/raw/custom)."""
    root = tmp_path / "data" / "raw" / "custom"
    names = {
        "bounding_box_train": ["0002_c1s1_000451_03.jpg", "0002_c2s1_000551_01.jpg", "0007_c3s3_012345_02.jpg",
                               "0007_c1s1_000111_01.jpg"],
        "bounding_box_test": ["0010_c2s1_000100_01.jpg", "0011_c1s1_000200_01.jpg", "0000_c3s1_000300_01.jpg",
                              "-1_c1s1_000401_03.jpg", "0010_c1s1_000101_01.jpg"],
        "query": ["0010_c1s1_000099_01.jpg", "0011_c2s1_000201_01.jpg"],
    }
    for folder, files in names.items():
        for name in files:
            write_jpeg(root / folder / name)
    (root / "bounding_box_test" / "Thumbs.db").write_bytes(b"\x00thumbs")
    return root


@pytest.fixture(scope="session")
def built_tiny_project(tmp_path_factory: pytest.TempPathFactory, worker_id: str) -> Path:
    """The tiny project after a real `dvc repro`, built once per test run however many pytest-xdist workers
    ask for it (a lock and a marker in the folder the workers share); test modules work on copies of it."""
    from filelock import FileLock

    from tests.test_pipeline import build_tiny_project

    shared = tmp_path_factory.getbasetemp() if worker_id == "master" else tmp_path_factory.getbasetemp().parent
    root, done = shared / "tiny-project", shared / "tiny-project.built"
    with FileLock(str(shared / "tiny-project.lock")):
        if not done.is_file():
            shutil.rmtree(root, ignore_errors=True)          # a build that failed half-way is not reused
            build_tiny_project(root)
            done.touch()
    return root

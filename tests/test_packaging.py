"""The install is described once: pyproject.toml lists the dependencies (with the torch pins), requirements*.txt
only point at it, requirements.lock holds a version of every one within its range; the Python floor is stated
and the code compiles there."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
import tomllib
from packaging.requirements import Requirement
from packaging.specifiers import SpecifierSet
from packaging.utils import canonicalize_name

from tests.conftest import REPO

PROJECT = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]


def _lock() -> dict[str, str]:
    pins = {}
    for line in (REPO / "requirements.lock").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, _, version = line.partition("==")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def test_requirements_files_only_point_at_pyproject_and_the_lock() -> None:
    for name in ("requirements.txt", "requirements-test.txt"):
        lines = [ln.split("#")[0].strip() for ln in (REPO / name).read_text().splitlines()]
        assert [ln for ln in lines if ln] in (["-c requirements.lock", "-e ."], ["-c requirements.lock", "-e .[test]"])


def test_every_dependency_is_locked_within_its_range() -> None:
    lock = _lock()
    declared = [Requirement(r) for r in PROJECT["dependencies"] + PROJECT["optional-dependencies"]["test"]]
    for req in declared:
        name = canonicalize_name(req.name)
        assert name in lock, f"{req.name}: not in requirements.lock (bash tools/lock.sh)"
        assert req.specifier.contains(lock[name], prereleases=True), f"{req}: locked at {lock[name]}"
    pins = {canonicalize_name(r.name): str(r.specifier) for r in declared}
    assert pins["torch"] == "==2.14.1" and pins["torchvision"] == "==0.29.1"
    assert SpecifierSet(pins["pytest-xdist"]).contains("3.8.0") and not SpecifierSet(pins["pytest-xdist"]).contains("3.7.0")
    addopts = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]["ini_options"]["addopts"]
    assert "--no-loadscope-reorder" in addopts          # the option that needs pytest-xdist 3.8


def test_tools_dependencies_are_declared_in_the_dev_extra() -> None:
    dev = {canonicalize_name(Requirement(r).name) for r in PROJECT["optional-dependencies"]["dev"]}
    assert "vl-convert-python" in dev and "import vl_convert" in (REPO / "tools/offline_plots_template.py").read_text()


def test_the_python_floor_is_stated_and_has_what_the_code_needs() -> None:
    floor = SpecifierSet(PROJECT["requires-python"])
    assert floor.contains("3.10.12") and not floor.contains("3.10.11")
    assert floor.contains(".".join(map(str, sys.version_info[:3])))
    assert hasattr(tarfile, "data_filter")                   # archives.py extracts with filter="data"


def test_the_code_compiles_on_the_python_floor(tmp_path) -> None:
    """Syntax newer than the floor (3.12's f-strings, say) fails here before a user on 3.10 finds it."""
    candidates = [shutil.which("python3.10"), *map(str, sorted(Path.home().glob(".pyenv/versions/3.10*/bin/python3.10")))]
    probe = "import sys; print('.'.join(map(str, sys.version_info[:3])))"
    found = [(exe, subprocess.run([exe, "-c", probe], capture_output=True, text=True)) for exe in candidates if exe]
    runs = [(exe, r.stdout.strip()) for exe, r in found if r.returncode == 0]
    if not runs:
        pytest.skip("no runnable python3.10 here to compile the code with")
    exe, version = runs[-1]
    assert SpecifierSet(PROJECT["requires-python"]).contains(version), version
    result = subprocess.run([exe, "-m", "compileall", "-q", "-d", "x", "maskreid", "stages", "tools", "experiments",
                             "bench", "tests"], cwd=REPO, capture_output=True, text=True,
                            env={**os.environ, "PYTHONPYCACHEPREFIX": str(tmp_path)})
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]

"""dvc.yaml declares, for every stage, exactly the project code the stage loads: no module it imports is
missing from its deps (DVC would keep stale results after an edit), and no declared module is one it never
loads (DVC would re-run it for nothing). Imports are followed statically through every module, including
imports inside functions and "module:function" strings handed to the stage runner, and the static set is
checked against what a real import of the stage's code puts in sys.modules. The analysis lives in
tools/stage_deps.py, which also rewrites dvc.yaml's code deps (`python tools/stage_deps.py --write`)."""

from __future__ import annotations

import ast
import json
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO
from tools.stage_deps import MODULE_STRING, is_docstring_only, module_file, script, stages, static_closure


def _stages() -> dict[str, dict]:
    return stages(REPO)


def _script(stage: dict) -> Path:
    return script(stage, REPO)


def _code_deps(stage: dict) -> set[Path]:
    return {REPO / d for d in stage["deps"] if d.endswith(".py")}


@pytest.mark.parametrize("name", sorted(_stages()))
def test_declared_code_is_exactly_what_the_stage_loads(name: str) -> None:
    stage = _stages()[name]
    script = _script(stage)
    loaded = {p for p in static_closure(script) if not (p.name == "__init__.py" and is_docstring_only(p))}
    declared = _code_deps(stage)
    rel = lambda paths: sorted(str(p.relative_to(REPO)) for p in paths)   # noqa: E731
    assert rel(loaded - declared) == [], f"{name} loads code that dvc.yaml does not declare"
    assert rel(declared - loaded) == [], f"{name} declares code it never loads"
    folders = [d for d in stage["deps"] if (REPO / d).is_dir() and d.startswith(("maskreid", "stages"))]
    assert folders == [], f"{name}: declare code files, not folders ({folders})"


@pytest.fixture(scope="module")
def runtime_modules() -> dict[str, set[Path]]:
    """For every stage, in a fresh interpreter each (started together), the project modules that importing the
    stage script and the code it hands to the stage runner puts in sys.modules."""
    procs = {}
    for name, stage in _stages().items():
        script = _script(stage)
        actions = [m.group(1) for n in ast.walk(ast.parse(script.read_text())) if isinstance(n, ast.Constant)
                   and isinstance(n.value, str) and (m := MODULE_STRING.match(n.value))]
        probe = (f"import importlib, json, runpy, sys\nrunpy.run_path({str(script)!r}, run_name='not_main')\n"
                 f"for m in {actions!r}: importlib.import_module(m)\n"
                 "print(json.dumps(sorted(k for k in sys.modules if k == 'maskreid' or k.startswith('maskreid.'))))")
        procs[name] = subprocess.Popen([sys.executable, "-c", probe], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                       text=True, cwd=REPO)
    loaded = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, err
        loaded[name] = {module_file(n) for n in json.loads(out)}
    return loaded


@pytest.mark.parametrize("name", sorted(_stages()))
def test_static_analysis_sees_everything_a_real_import_loads(name: str, runtime_modules: dict) -> None:
    """Guards the analysis above: what a real import loads is within the static closure."""
    runtime = runtime_modules[name]
    assert None not in runtime
    assert runtime <= static_closure(_script(_stages()[name]))


def test_prepare_depends_on_its_own_raw_folder_and_params_only() -> None:
    prepare = _stages()["prepare"]
    assert "data/raw/${item.ds}" in prepare["deps"] and "data/raw" not in prepare["deps"]
    assert sorted(prepare["params"]) == ["data", "prepare.${item.ds}"]


def test_stages_reading_the_prepared_images_depend_on_them() -> None:
    for name in ("train_extractor", "train_mask", "train_joint", "evaluate", "masks"):
        assert "data/prepared/${item.ds}" in _stages()[name]["deps"], name


def test_progress_files_are_not_dvc_outputs() -> None:
    """A resume file as an output would make a pulled, finished pipeline look incomplete in a fresh clone."""
    for name, stage in _stages().items():
        outs = [next(iter(o)) if isinstance(o, dict) else o for o in stage.get("outs", [])]
        assert not [o for o in outs if "progress" in o], name


def test_bytecode_is_ignored_by_dvc() -> None:
    lines = (REPO / ".dvcignore").read_text().splitlines()
    assert "__pycache__/" in lines and "*.pyc" in lines


def test_dataset_chain_is_dvc_yaml_order_and_dvc_could_run_it() -> None:
    """The drivers that run the stage functions without DVC take dvc.yaml's order (maskreid.pipeline.chain):
    every per-dataset stage comes after the stages whose outputs it reads, and each runs what its script runs."""
    from maskreid.pipeline.chain import dataset_chain, dataset_stage_names, stage_action

    names = dataset_stage_names(REPO / "dvc.yaml")
    assert names[:4] == ["prepare", "train_extractor", "train_mask", "train_joint"] and "evaluate" in names
    outs = {}
    for name in names:
        for out in _stages()[name].get("outs", []):
            outs[next(iter(out)) if isinstance(out, dict) else out] = name
    for position, name in enumerate(names):
        for dep in _stages()[name]["deps"]:
            producer = outs.get(dep)
            assert producer is None or names.index(producer) < position, (name, dep, producer)
    chain = dataset_chain(REPO)
    assert [n for n, _ in chain] == names
    for name, function in chain:
        assert stage_action(_script(_stages()[name])) == f"{function.__module__}:{function.__name__}"

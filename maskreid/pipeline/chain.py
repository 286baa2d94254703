"""The chain of stages DVC runs for each dataset, read from dvc.yaml and the stage scripts themselves, so that a
driver that runs the stage functions without DVC (experiments/gpu_pipeline_run.py, experiments/gpu_ablation.py) runs
them in dvc.yaml's order and calls what each stage script calls: the order is written in one place only."""

from __future__ import annotations

import ast
import importlib
import re
from pathlib import Path
from typing import Callable

import yaml

StageFunction = Callable[..., object]
ACTION = re.compile(r"^maskreid(\.\w+)+:\w+$")


def dataset_stage_names(dvc_yaml: Path) -> list[str]:
    """The stages that run once per dataset (`matrix: {ds: ...}`), in dvc.yaml's order (each after those whose
    outputs it reads: tests/test_stage_deps.py checks that the order is one DVC could run)."""
    stages = yaml.safe_load(dvc_yaml.read_text())["stages"]
    return [name for name, stage in stages.items() if set(stage.get("matrix", {})) == {"ds"}]


def stage_action(script: Path) -> str:
    """The "module:function" a stage script hands to `run_stage`."""
    for node in ast.walk(ast.parse(script.read_text(), str(script))):
        if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "run_stage":
            for arg in node.args:
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str) and ACTION.match(arg.value):
                    return arg.value
    raise ValueError(f"{script}: no run_stage(..., 'module:function') call")


def dataset_chain(repo: Path) -> list[tuple[str, StageFunction]]:
    """(stage name, function(params, paths)) for every per-dataset stage, in the order DVC runs them."""
    stages = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    chain = []
    for name in dataset_stage_names(repo / "dvc.yaml"):
        module_name = stages[name]["cmd"].split()[2]             # python -m stages.<x> ${item.ds}
        module, function = stage_action(repo / (module_name.replace(".", "/") + ".py")).split(":")
        chain.append((name, getattr(importlib.import_module(module), function)))
    return chain

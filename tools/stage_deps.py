"""The project code each DVC stage loads, found statically, and (with --write) dvc.yaml's code deps set to it.

    python tools/stage_deps.py            # list, per stage, what dvc.yaml declares that differs from what it loads
    python tools/stage_deps.py --write    # rewrite the code deps of every stage in dvc.yaml (comments kept)

Imports are followed through every module, including imports inside functions and the "module:function"
strings handed to the stage runner. tests/test_stage_deps.py checks dvc.yaml against the same analysis, and the
analysis against what a real import loads.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
MODULE_STRING = re.compile(r"^(maskreid(?:\.\w+)+)(?::\w+)?$")
CODE_DEP = re.compile(r"^(\s+)- ((?:maskreid|stages)/\S+\.py)\s*$")


def module_file(name: str, repo: Path = REPO) -> Path | None:
    """The source file of a project module (a package's __init__.py), or None when it is not one."""
    base = repo / Path(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_names(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)   # `from pkg import module`
        elif isinstance(node, ast.Constant) and isinstance(node.value, str):
            match = MODULE_STRING.match(node.value)
            if match:
                names.add(match.group(1))
    return {n for n in names if n == "maskreid" or n.startswith("maskreid.")}


def static_closure(script: Path, repo: Path = REPO) -> set[Path]:
    """Every project file `script` can load: its imports, theirs, and the packages that contain them."""
    seen: set[Path] = set()
    todo = [script]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in imported_names(path):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):            # importing a.b.c loads a and a.b too
                found = module_file(".".join(parts[:i]), repo)
                if found is not None and found not in seen:
                    todo.append(found)
    return seen


def is_docstring_only(path: Path) -> bool:
    """A package __init__ with nothing but a docstring: loading it runs no code, so it needs no declaring."""
    body = ast.parse(path.read_text()).body
    return all(isinstance(n, ast.Expr) and isinstance(n.value, ast.Constant) for n in body)


def stages(repo: Path = REPO) -> dict[str, dict]:
    """Each stage's definition; `foreach` stages (cross_evaluate) by their `do` body."""
    defined = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    return {name: stage.get("do", stage) for name, stage in defined.items()}


def script(stage: dict, repo: Path = REPO) -> Path:
    """`python -m stages.x ...` (run as a module so that the checkout's own maskreid is imported, not whatever
    copy is installed) -> stages/x.py."""
    words = stage["cmd"].split()
    assert words[:2] == ["python", "-m"] and words[2].startswith("stages."), stage["cmd"]
    return repo / (words[2].replace(".", "/") + ".py")


def loaded_code(stage: dict, repo: Path = REPO) -> list[str]:
    """What the stage loads, as dvc.yaml names it: the stage script first, then the library files by path."""
    own = script(stage, repo)
    files = {p for p in static_closure(own, repo) if not (p.name == "__init__.py" and is_docstring_only(p))}
    return [str(own.relative_to(repo))] + sorted(str(p.relative_to(repo)) for p in files - {own})


def declared_code(stage: dict) -> list[str]:
    return [d for d in stage["deps"] if d.endswith(".py")]


def rewrite(text: str, wanted: dict[str, list[str]]) -> str:
    """dvc.yaml with each stage's code deps replaced by `wanted[stage]`, at the place of its first code dep;
    every other line (data deps, params, comments) kept."""
    out: list[str] = []
    stage = None
    written: set[str] = set()
    for line in text.splitlines():
        header = re.match(r"^  (\w+):\s*(#.*)?$", line)
        if header:
            stage = header.group(1)
        dep = CODE_DEP.match(line)
        if dep and stage in wanted:
            if stage not in written:
                out.extend(f"{dep.group(1)}- {path}" for path in wanted[stage])
                written.add(stage)
            continue
        out.append(line)
    return "\n".join(out) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--write", action="store_true", help="rewrite dvc.yaml's code deps")
    args = parser.parse_args()
    wanted = {name: loaded_code(stage) for name, stage in stages().items()}
    differs = {name: (sorted(set(code) - set(declared_code(stages()[name]))),
                      sorted(set(declared_code(stages()[name])) - set(code))) for name, code in wanted.items()}
    differs = {name: d for name, d in differs.items() if d[0] or d[1]}
    if args.write:
        path = REPO / "dvc.yaml"
        path.write_text(rewrite(path.read_text(), wanted))
        print(f"dvc.yaml: code deps of {len(wanted)} stages written ({len(differs)} changed)")
        return 0
    for name, (missing, extra) in differs.items():
        print(f"{name}: loads but does not declare {missing}; declares but never loads {extra}")
    return 1 if differs else 0


if __name__ == "__main__":
    sys.exit(main())

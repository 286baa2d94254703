"""The package keeps its floors: import-linter's contracts in pyproject.toml (layers, and the torchrun launcher apart
from the collectives) hold for the code as it is."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from tests.conftest import REPO


def test_import_contracts_hold() -> None:
    lint = Path(sys.executable).parent / "lint-imports"
    result = subprocess.run([str(lint), "--no-cache"], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "2 kept, 0 broken" in result.stdout


def test_every_package_init_is_code_free() -> None:
    """Every DVC stage loads the packages on its import path: they hold a docstring and nothing else."""
    from tools.stage_deps import is_docstring_only

    inits = sorted((REPO / "maskreid").rglob("__init__.py"))
    assert len(inits) >= 11
    assert [str(p.relative_to(REPO)) for p in inits if not is_docstring_only(p)] == []

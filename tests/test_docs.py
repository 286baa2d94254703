"""The README and docs/: a short README, docs that speak of the project only, every relative link resolving, the
site built by MkDocs in strict mode, and the licence and citation files."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

PAGES = [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def test_the_readme_is_a_short_page() -> None:
    assert len((REPO / "README.md").read_text().splitlines()) <= 300


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_pages_speak_of_the_project_only(page: Path) -> None:
    """No word of how the work was organised: issues, sessions, borrowed machines."""
    text = page.read_text()
    found = re.findall(r"(?i)\b(issues?|sessions?|lent|borrowed)\b", text)
    assert found == [], f"{page.name}: {sorted(set(found))}"


@pytest.mark.parametrize("page", PAGES, ids=lambda p: str(p.relative_to(REPO)))
def test_every_relative_link_resolves(page: Path) -> None:
    missing = []
    for target in LINK.findall(page.read_text()):
        if re.match(r"^[a-z]+:", target) or target.startswith("#"):
            continue                                     # a web address, an anchor of the page itself
        path = target.split("#")[0]
        if path and not (page.parent / path).exists():
            missing.append(target)
    assert missing == [], f"{page.relative_to(REPO)}: links to missing files {missing}"


def test_the_site_builds_in_strict_mode(tmp_path: Path) -> None:
    """`mkdocs build --strict`: every page in the navigation, the API reference generated from the docstrings."""
    mkdocs = Path(sys.executable).parent / "mkdocs"
    result = subprocess.run([str(mkdocs), "build", "--strict", "--site-dir", str(tmp_path / "site")], cwd=REPO,
                            capture_output=True, text=True, env={**os.environ, "NO_MKDOCS_2_WARNING": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    api = (tmp_path / "site" / "api" / "evaluation" / "index.html").read_text()
    assert "score_features" in api and "The scoring sequence, written once" in api


def test_licence_and_citation() -> None:
    assert (REPO / "LICENSE").read_text().startswith("MIT License")
    citation = yaml.safe_load((REPO / "CITATION.cff").read_text())
    assert citation["cff-version"] == "1.2.0" and citation["license"] == "MIT"
    assert any("Generated Attention Masks" in ref["title"] for ref in citation["references"])

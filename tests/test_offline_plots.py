"""`dvc plots show` must draw with no network: the HTML template in .dvc/ inlines Vega, Vega-Lite and
Vega-Embed and loads nothing from outside; where Chromium is installed, a real headless browser draws it."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import REPO

TEMPLATE = REPO / ".dvc" / "offline_plots_template.html"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--virtual-time-budget=10000"]


def test_dvc_config_points_at_the_offline_template() -> None:
    config = configparser.ConfigParser()
    config.read(REPO / ".dvc" / "config")
    assert (REPO / ".dvc" / config["plots"]["html_template"]).resolve() == TEMPLATE.resolve()


def test_template_loads_nothing_from_the_network_and_defines_vega_embed() -> None:
    html = TEMPLATE.read_text()
    assert "{plot_divs}" in html and "{scripts}" not in html      # DVC's CDN script tags are never inserted
    assert not re.search(r"<script[^>]+src=", html) and not re.search(r"<link[^>]+href=\"?https?:", html)
    assert "window.vegaEmbed=" in html and "window.vega=" in html and "window.vegaLite=" in html
    assert html.count("</script>") == 1                           # the bundle's own tags are escaped


@pytest.mark.slow
@pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)")
def test_chromium_draws_every_chart_offline(tmp_path: Path) -> None:
    """A page of two line charts made by dvc_render with this template, drawn by headless Chromium."""
    from dvc_render import render_html
    from dvc_render.vega import VegaRenderer

    datapoints = [{"rank": r, "stage1": r / 10, "stage3": r / 9, "rev": "workspace"} for r in range(1, 10)]
    renderers = [VegaRenderer(datapoints, f"plots/cmc/{name}.csv", x="rank", y="stage3", title=name)
                 for name in ("a", "b")]
    page = tmp_path / "index.html"
    render_html(renderers, page, html_template=TEMPLATE)
    assert "cdn.jsdelivr" not in page.read_text()
    result = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / 'profile'}", "--dump-dom",
                             page.as_uri()], capture_output=True, text=True, timeout=120)
    dom = result.stdout
    assert dom.count('class="marks"') >= 2 or dom.count("<svg") >= 2 or dom.count("<canvas") >= 2, dom[-2000:]

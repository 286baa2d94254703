"""The failure page (visrank as one HTML file): which queries it shows, what each row says, that it needs
nothing but itself, and that a browser renders it."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from maskreid.data.loading import ImageCache
from maskreid.evaluation.scoring import Scoring, score_features
from maskreid.figures.failures import chosen_queries, failure_page


def test_the_worst_queries_come_first_and_random_ones_are_others() -> None:
    ap = np.array([0.9, np.nan, 0.1, 0.5, 0.05, 0.7, 0.3, 0.2])
    worst, drawn = chosen_queries(ap, 3, 2, seed=0)
    assert worst.tolist() == [4, 2, 7]                       # lowest AP first; the unscored query never
    assert len(drawn) == 2 and not set(drawn) & {1, 4, 2, 7} and list(drawn) == sorted(drawn)
    assert chosen_queries(ap, 3, 2, seed=0)[1].tolist() == drawn.tolist()       # seeded
    assert chosen_queries(ap, 10, 5, seed=0)[1].size == 0                      # nothing left to draw


def _case() -> tuple[ImageCache, ImageCache]:
    rng = np.random.default_rng(0)

    def cache(pids: list[int], cams: list[int]) -> ImageCache:
        images = torch.from_numpy(rng.integers(0, 256, (len(pids), 3, 32, 16), dtype=np.uint8))
        return ImageCache(images, np.array(pids), np.array(cams), [f"{p:04d}_c{c}s1_{i:06d}_01.jpg"
                                                                   for i, (p, c) in enumerate(zip(pids, cams))])
    return cache([1, 2, 3, 4], [1, 1, 1, 1]), cache([1, 1, 2, 3, 3, 4, -1, 5], [2, 1, 2, 2, 3, 2, 2, 2])


def test_page_rows_say_ap_first_match_and_frame_every_match(tmp_path: Path) -> None:
    query, gallery = _case()
    rng = np.random.default_rng(1)
    score = score_features(rng.normal(size=(4, 8)), rng.normal(size=(8, 8)), query.pids, gallery.pids,
                           query.camids, gallery.camids, Scoring(max_rank=5, ranks=(1,)))
    out = tmp_path / "page.html"
    failure_page(query, gallery, score, out, "tiny", worst=2, random=1, top=10)
    page = out.read_text()
    assert page.count("<tr>") == 3 and "The 2 worst queries by AP" in page and "1 random queries (seed 0)" in page
    worst = np.argsort(score.queries.ap)[:2]
    for q in worst:
        assert f"AP {100 * score.queries.ap[q]:.1f}%" in page
        assert f"first match at rank {score.queries.first_rank[q]}" in page
    # each row: the query, then every gallery image it ranks: never the junk one, never the same person under
    # the same camera (query 0001_c1 has 0001_c1 in the gallery)
    worst_rows, drawn = chosen_queries(np.asarray(score.queries.ap), 2, 1, 0)
    shown = [*worst_rows, *drawn]
    ranked = [7 - int(((gallery.pids == query.pids[q]) & (gallery.camids == query.camids[q])).sum()) for q in shown]
    assert len(re.findall(r'<img class="q"', page)) == 3 and len(re.findall(r"alt=\"rank \d", page)) == sum(ranked)
    assert not re.search(r'(src|href)="(?!data:)', page)                       # nothing outside the file
    for uri in re.findall(r'src="data:image/jpeg;base64,([^"]+)"', page)[:2]:
        import base64
        import io

        with Image.open(io.BytesIO(base64.b64decode(uri))) as image:
            assert image.size == (16, 32)


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium is not installed")
def test_a_browser_renders_the_page_offline(tmp_path: Path) -> None:
    """Headless Chromium, no network needed, draws the page: the screenshot has the green and red frames."""
    query, gallery = _case()
    score = score_features(np.random.default_rng(2).normal(size=(4, 8)), np.random.default_rng(3).normal(size=(8, 8)),
                           query.pids, gallery.pids, query.camids, gallery.camids, Scoring(max_rank=5, ranks=(1,)))
    failure_page(query, gallery, score, tmp_path / "page.html", "tiny", worst=4, random=0, top=6)
    shot = tmp_path / "shot.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--window-size=900,700",
                    f"--screenshot={shot}", (tmp_path / "page.html").as_uri()], capture_output=True, timeout=120,
                   check=True, cwd=tmp_path)
    pixels = np.asarray(Image.open(shot).convert("RGB")).reshape(-1, 3).astype(int)
    green = ((pixels[:, 1] > 150) & (pixels[:, 0] < 40) & (pixels[:, 2] < 40)).sum()
    red = ((pixels[:, 0] > 200) & (pixels[:, 1] < 50) & (pixels[:, 2] < 50)).sum()
    assert green > 100 and red > 100

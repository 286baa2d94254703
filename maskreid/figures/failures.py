"""Which queries fail and how: the page of the worst queries by AP and of a seeded random sample, each with its
ranked list as the standard protocol ranks it (maskreid.figures.ranked_page). Used by the evaluate stage (for
the final model) and by `maskreid evaluate --page`."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from maskreid.data.loading import ImageCache
from maskreid.evaluation.scoring import Score
from maskreid.figures.ranked_lists import ranked_hits
from maskreid.figures.ranked_page import PageRow, ranked_page


def chosen_queries(ap: np.ndarray, worst: int, random: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """(the `worst` scored queries by AP, lowest first; `random` others drawn with `seed`, in query order)."""
    scored = np.flatnonzero(~np.isnan(ap))
    worst_rows = scored[np.argsort(ap[scored], kind="stable")[:worst]]
    rest = np.setdiff1d(scored, worst_rows)
    drawn = np.random.default_rng(seed).choice(rest, min(random, len(rest)), replace=False) if len(rest) else rest
    return worst_rows, np.sort(drawn)


def _row(q: int, query: ImageCache, gallery: ImageCache, score: Score, protocol: str, top: int) -> PageRow:
    kept = np.flatnonzero(score.gallery_kept)
    hits = ranked_hits(score.distances[q], query.pids[q], query.camids[q], gallery.pids[kept], gallery.camids[kept],
                       lambda i: gallery.images[kept[i]], top, same_camera_listed=protocol != "standard")
    label = f"person {query.pids[q]}, camera {query.camids[q]}: {Path(query.paths[q]).name}"
    return PageRow(query.images[q].permute(1, 2, 0).numpy(), label, 100 * float(score.queries.ap[q]),
                   int(score.queries.first_rank[q]), hits)


def failure_page(query: ImageCache, gallery: ImageCache, score: Score, out: Path, title: str, worst: int = 20,
                 random: int = 20, seed: int = 0, top: int = 10, protocol: str = "standard") -> None:
    """Write the page: `worst` lowest-AP queries, then `random` others, each with its top `top` matches."""
    worst_rows, random_rows = chosen_queries(np.asarray(score.queries.ap, dtype=float), worst, random, seed)
    note = (f"{protocol} protocol; mAP {score.summary['mAP']:.2f}%, rank-1 {score.summary['rank1']:.2f}% over "
            f"{score.summary['num_valid_queries']} queries. Frames: green same person, red another person. "
            "Under each match: its rank and distance.") if "rank1" in score.summary else ""
    ranked_page({f"The {len(worst_rows)} worst queries by AP": [_row(q, query, gallery, score, protocol, top)
                                                                 for q in worst_rows],
                 f"{len(random_rows)} random queries (seed {seed})": [_row(q, query, gallery, score, protocol, top)
                                                                       for q in random_rows]}, out, title, note)

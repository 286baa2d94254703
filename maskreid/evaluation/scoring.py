"""The scoring sequence, written once: features -> Euclidean distances -> junk removed -> optional k-reciprocal
re-ranking -> CMC/mAP/mINP -> the percent summary of metrics files. The evaluate and cross_evaluate stages,
`maskreid evaluate-distances` and experiments/int8_map.py all score through here, so a protocol cannot drift
between them.

Two protocols: `standard` (the community's: junk images never ranked, same-person same-camera gallery images
left out per query) and `authors` (the authors' public code: the whole gallery ranked, junk included, nothing
left out; kept for the audit, never re-ranked by the stages).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from maskreid.data.market import JUNK_PID
from maskreid.evaluation.bootstrap import QueryOutcomes
from maskreid.evaluation.metrics import euclidean_distances, evaluate, labels_1d, summarize_percent
from maskreid.evaluation.query_expansion import alpha_query_expansion
from maskreid.evaluation.verification import tpr_at_fpr
from maskreid.params import EvaluationParams

PROTOCOLS = ("standard", "authors")


@dataclass(frozen=True)
class Scoring:
    """How to score: CMC length, the ranks reported, re-ranking (Zhong et al. 2017) with its k1, k2, lambda, and
    alpha query expansion with its qe_k, alpha (applied to the embeddings, so before re-ranking when both are on)."""

    max_rank: int = 50
    ranks: tuple[int, ...] = (1, 5, 10, 20)
    rerank: bool = False
    rerank_k1: int = 20
    rerank_k2: int = 6
    rerank_lambda: float = 0.3
    aqe: bool = False
    aqe_k: int = 5
    aqe_alpha: float = 3.0

    @classmethod
    def of(cls, ev: EvaluationParams) -> "Scoring":
        """params.yaml's `evaluation` block."""
        return cls(ev.max_rank, tuple(ev.ranks), ev.rerank, ev.rerank_k1, ev.rerank_k2, ev.rerank_lambda,
                   ev.aqe, ev.aqe_k, ev.aqe_alpha)

    def without_reranking(self) -> "Scoring":
        """The plain ranking: no re-ranking, no query expansion (the authors' protocol, the audit)."""
        return replace(self, rerank=False, aqe=False)

    def query_expansion_record(self) -> dict[str, Any]:
        """What metrics detail files say about query expansion."""
        return {"used": True, "qe_k": self.aqe_k, "alpha": self.aqe_alpha} if self.aqe else {"used": False}

    def reranking_record(self) -> dict[str, Any]:
        """What metrics detail files and `evaluate-distances` say about re-ranking."""
        if not self.rerank:
            return {"used": False}
        return {"used": True, "k1": self.rerank_k1, "k2": self.rerank_k2, "lambda": self.rerank_lambda}


@dataclass
class Score:
    raw: dict[str, Any]            # evaluate(): fractions, the whole CMC curve, query counts
    summary: dict[str, float]      # percent: mAP, rank-k for the reported ranks, mINP, query counts
    distances: np.ndarray          # the matrix that was ranked (gallery columns kept; re-ranked when asked)
    gallery_kept: np.ndarray       # bool per gallery image: ranked (False: junk under the standard protocol)
    queries: QueryOutcomes         # per query: AP and first true-match rank (bootstrap intervals, worst queries)


def ranked_columns(g_pids: np.ndarray, protocol: str) -> np.ndarray:
    """The gallery images a protocol ranks: all but junk under the standard protocol, all under the authors'."""
    return g_pids != JUNK_PID if protocol == "standard" else np.ones(len(g_pids), dtype=bool)


def score_distances(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray,
                    g_camids: np.ndarray, scoring: Scoring, protocol: str = "standard",
                    q_q: np.ndarray | None = None, g_g: np.ndarray | None = None) -> Score:
    """Score a query x gallery distance matrix. Re-ranking needs the query x query (q_q) and gallery x gallery
    (g_g) distances, computed like distmat; g_g over the whole gallery or over the ranked (non-junk) images."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"protocol: {protocol!r}, expected one of {PROTOCOLS}")
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise ValueError(f"distmat: expected a 2-d (queries x gallery) array, got shape {distmat.shape}")
    g_pids, g_camids = (labels_1d(name, value, distmat.shape[1]) for name, value in
                        (("g_pids", g_pids), ("g_camids", g_camids)))
    kept = ranked_columns(g_pids, protocol)
    if not kept.all():
        distmat = distmat[:, kept]
        if g_g is not None and len(g_g) == len(kept):
            g_g = np.asarray(g_g)[kept][:, kept]
    if scoring.rerank:
        from maskreid.evaluation.reranking import k_reciprocal_rerank  # SciPy: imported only when used

        if q_q is None or g_g is None:
            raise ValueError("re-ranking needs q_q (queries x queries) and g_g (gallery x gallery) distances, "
                             "computed like distmat")
        distmat = k_reciprocal_rerank(distmat, q_q, g_g, scoring.rerank_k1, scoring.rerank_k2,
                                      scoring.rerank_lambda)
    raw = evaluate(distmat, q_pids, g_pids[kept], q_camids, g_camids[kept], scoring.max_rank,
                   same_camera_removal=protocol == "standard", per_query=True)
    queries = QueryOutcomes(np.asarray(q_pids), raw.pop("query_ap"), raw.pop("query_first_rank"))
    summary = summarize_percent(raw, scoring.ranks)
    verification = tpr_at_fpr(distmat, q_pids, g_pids[kept], q_camids, g_camids[kept],
                              same_camera_removal=protocol == "standard")
    summary.update({k: round(100 * v, 4) for k, v in verification.items()})
    return Score(raw, summary, distmat, kept, queries)


def score_features(q_feat: np.ndarray, g_feat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray,
                   q_camids: np.ndarray, g_camids: np.ndarray, scoring: Scoring,
                   protocol: str = "standard") -> Score:
    """Score embeddings: Euclidean distances (float64), then `score_distances`. Re-ranking's gallery x gallery
    distances cover only the images that are ranked (junk left out first). With query expansion the embeddings
    are expanded first (their neighbours: the queries and the ranked gallery) and ranked by cosine."""
    if scoring.aqe:          # neighbours among the images the protocol ranks (never junk under the standard one)
        ranked = ranked_columns(np.asarray(g_pids), protocol)
        q_feat, expanded = alpha_query_expansion(q_feat, g_feat[ranked], scoring.aqe_k, scoring.aqe_alpha)
        g_feat = np.zeros_like(expanded, shape=(len(g_feat), expanded.shape[1]))
        g_feat[ranked] = expanded
    q_q = g_g = None
    if scoring.rerank:
        ranked = ranked_columns(np.asarray(g_pids), protocol)
        q_q, g_g = euclidean_distances(q_feat, q_feat), euclidean_distances(g_feat[ranked], g_feat[ranked])
    return score_distances(euclidean_distances(q_feat, g_feat), q_pids, g_pids, q_camids, g_camids, scoring,
                           protocol, q_q, g_g)

"""CMC, mAP and mINP from a distance matrix under the standard re-ID protocol, vectorised over queries.

Protocol (Market-1501, DukeMTMC-reID, CUHK03-NP): rank the gallery by ascending distance; for each query
remove gallery images of the same identity taken by the same camera; a query left without a true match is
skipped and counted. CMC@k is the fraction of valid queries with a true match in the first k; AP is the mean
of precision@i over the ranks i of the true matches; mINP (Ye et al.) is num_matches / rank of the hardest match.

Agrees with torchreid's `evaluate_rank` (Market protocol) and fast-reid's mINP on the same matrix. Ties in
distance are broken by gallery order (stable sort). Where a query's filtered gallery is shorter than the
largest rank, its CMC stays at 1 after its list ends (it has found its match), so the curve always has
max_rank entries; torchreid instead truncates max_rank to the gallery size.

`same_camera_removal=False` gives the protocol of the authors' public code (the whole gallery is ranked).
"""

from __future__ import annotations

from typing import Any

import numpy as np


def _as_1d(name: str, value: Any, length: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1 or len(arr) != length:
        raise ValueError(f"{name}: expected a 1-d array of length {length}, got shape {arr.shape}")
    return arr


def evaluate(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray,
             g_camids: np.ndarray, max_rank: int = 50, same_camera_removal: bool = True,
             chunk_size: int = 256) -> dict[str, Any]:
    """Return {'mAP', 'cmc' (ranks 1..max_rank), 'mINP', 'num_valid_queries', 'num_skipped_queries'} as fractions."""
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise ValueError(f"distmat: expected a 2-d (queries x gallery) array, got shape {distmat.shape}")
    nq, ng = distmat.shape
    q_pids, q_camids = _as_1d("q_pids", q_pids, nq), _as_1d("q_camids", q_camids, nq)
    g_pids, g_camids = _as_1d("g_pids", g_pids, ng), _as_1d("g_camids", g_camids, ng)
    if max_rank < 1:
        raise ValueError(f"max_rank: expected a positive integer, got {max_rank}")
    if ng == 0:
        raise ValueError("distmat: the gallery is empty")
    ranks = np.arange(1, max_rank + 1)
    cmc_hits = np.zeros(max_rank, dtype=np.int64)
    ap_sum = inp_sum = 0.0
    num_valid = 0
    for start in range(0, nq, chunk_size):
        stop = min(start + chunk_size, nq)
        order = np.argsort(distmat[start:stop], axis=1, kind="stable")
        match = g_pids[order] == q_pids[start:stop, None]
        if same_camera_removal:
            keep = ~(match & (g_camids[order] == q_camids[start:stop, None]))
            good = match & keep
        else:
            keep = np.ones_like(match)
            good = match
        num_rel = good.sum(1)
        valid = num_rel > 0
        if not valid.any():
            continue
        good, keep, num_rel = good[valid], keep[valid], num_rel[valid]
        rows = np.arange(len(good))
        kept_rank = np.cumsum(keep, axis=1)                # 1-based rank in the filtered list
        first_rank = kept_rank[rows, good.argmax(1)]
        last_rank = kept_rank[rows, ng - 1 - good[:, ::-1].argmax(1)]
        cum_good = np.cumsum(good, axis=1)
        precision_at_hits = np.divide(cum_good, kept_rank, out=np.zeros(good.shape), where=good)
        ap_sum += float((precision_at_hits.sum(1) / num_rel).sum())
        inp_sum += float((num_rel / last_rank).sum())
        cmc_hits += (first_rank[:, None] <= ranks[None, :]).sum(0)
        num_valid += int(valid.sum())
    if num_valid == 0:
        raise ValueError("no query has a true match in the gallery (after removing same-camera images); "
                         "check that query and gallery ids and cameras are right")
    return {
        "mAP": ap_sum / num_valid,
        "cmc": (cmc_hits / num_valid).tolist(),
        "mINP": inp_sum / num_valid,
        "num_valid_queries": num_valid,
        "num_skipped_queries": nq - num_valid,
    }


def euclidean_distances(query: np.ndarray, gallery: np.ndarray) -> np.ndarray:
    """Euclidean distance matrix (queries x gallery), computed in float64 for stable ranking."""
    q = np.asarray(query, dtype=np.float64)
    g = np.asarray(gallery, dtype=np.float64)
    d2 = (q * q).sum(1)[:, None] + (g * g).sum(1)[None, :] - 2.0 * q @ g.T
    return np.sqrt(np.maximum(d2, 0.0))


def summarize_percent(result: dict[str, Any], ranks: tuple[int, ...]) -> dict[str, float]:
    """Headline numbers in percent (as in Table 1): mAP, rank-k, mINP, with the query counts."""
    out: dict[str, float] = {"mAP": round(100 * result["mAP"], 4)}
    for k in ranks:
        out[f"rank{k}"] = round(100 * result["cmc"][k - 1], 4)
    out["mINP"] = round(100 * result["mINP"], 4)
    out["num_valid_queries"] = result["num_valid_queries"]
    out["num_skipped_queries"] = result["num_skipped_queries"]
    return out

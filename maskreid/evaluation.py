"""CMC, mAP and mINP from a distance matrix under the standard re-ID protocol, vectorised over queries.

Protocol (Market-1501, DukeMTMC-reID, CUHK03-NP): rank the gallery by ascending distance; for each query
remove gallery images of the same identity taken by the same camera; a query left without a true match is
skipped and counted. CMC@k is the fraction of valid queries with a true match in the first k; AP is the mean
of precision@i over the ranks i of the true matches; mINP (Ye et al.) is num_matches / rank of the hardest match.

Agrees with torchreid's `evaluate_rank` (Market protocol) and fast-reid's mINP on the same matrix. Ties in
distance are broken by gallery order (stable sort). Where a query's filtered gallery is shorter than the
largest rank, its CMC stays at 1 after its list ends (it has found its match), so the curve always has
max_rank entries; torchreid instead truncates max_rank to the gallery size.

Implementation: no full sort of the gallery. The rank of each true match is counted with a batched binary
search against that query's (few) true-match distances; rows where a true match ties with another image fall
back to a stable argsort, so the tie rule above holds exactly. Chunks of queries bound the memory.

`same_camera_removal=False` gives the protocol of the authors' public code (the whole gallery is ranked).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def _as_1d(name: str, value: Any, length: int) -> np.ndarray:
    arr = np.asarray(value)
    if arr.ndim != 1 or len(arr) != length:
        raise ValueError(f"{name}: expected a 1-d array of length {length}, got shape {arr.shape}")
    return arr


def _stats_by_sorting(dist: np.ndarray, good: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, ...]:
    """Per row (each with at least one true match): first and last match rank, AP. Full stable argsort."""
    order = np.argsort(dist, axis=1, kind="stable")
    rows = np.arange(len(dist))[:, None]
    good, keep = good[rows, order], keep[rows, order]
    kept_rank = np.cumsum(keep, axis=1)                # 1-based rank in the filtered list
    r = np.arange(len(good))
    first = kept_rank[r, good.argmax(1)]
    last = kept_rank[r, good.shape[1] - 1 - good[:, ::-1].argmax(1)]
    precision = np.divide(np.cumsum(good, axis=1), kept_rank, out=np.zeros(good.shape), where=good)
    return first, last, precision.sum(1) / good.sum(1)


def _stats_by_counting(dist: np.ndarray, good: np.ndarray, keep: np.ndarray) -> tuple[np.ndarray, ...]:
    """The same numbers without sorting the gallery: the rank of the k-th true match is one plus the number of
    kept gallery items closer than it, counted with a batched binary search against the (few) true-match
    distances. Rows with tied distances at a true match return NaN and are redone by sorting."""
    d = torch.from_numpy(np.ascontiguousarray(dist))
    g = torch.from_numpy(good)
    num_rel = good.sum(1)
    m = int(num_rel.max())
    s = torch.where(g, d, torch.tensor(float("inf"), dtype=d.dtype)).topk(m, dim=1, largest=False).values
    right = torch.searchsorted(s, d, right=True)       # number of true-match distances <= d, in 0..m
    # A tie: two true matches at one distance, or another kept image at exactly a true match's distance.
    at_match = (right > 0) & (s.gather(1, (right - 1).clamp(min=0)) == d)
    kept_at_match = (at_match & torch.from_numpy(keep)).sum(1).numpy()
    equal_matches = ((s[:, 1:] == s[:, :-1]) & torch.isfinite(s[:, 1:])).any(1).numpy()
    ties = (kept_at_match != num_rel) | equal_matches
    # rank_k - 1 = kept images with right <= k: a histogram of `right` per row over all images, minus the
    # few removed (same id, same camera) ones, then a cumulative sum.
    rows = len(dist)
    r = right.numpy()
    offsets = (np.arange(rows) * (m + 1))[:, None]
    hist = np.bincount((r + offsets).ravel(), minlength=rows * (m + 1))
    removed_rows, removed_cols = np.nonzero(~keep)
    np.subtract.at(hist, r[removed_rows, removed_cols] + offsets[removed_rows, 0], 1)
    rank = hist.reshape(rows, m + 1).cumsum(1)[:, :m] + 1.0
    position = np.arange(1, m + 1)
    valid = position[None, :] <= num_rel[:, None]
    ap = np.where(valid, position / rank, 0.0).sum(1) / num_rel
    last = rank[np.arange(rows), num_rel - 1]
    first = rank[:, 0]
    return (np.where(ties, np.nan, first), np.where(ties, np.nan, last), np.where(ties, np.nan, ap))


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
    if distmat.dtype not in (np.float32, np.float64):
        distmat = distmat.astype(np.float64)
    finite = np.isfinite(distmat)
    if not finite.all():
        raise ValueError(f"distmat: {int((~finite).sum())} entries are NaN or infinite; distances must be finite")
    ranks = np.arange(1, max_rank + 1)
    cmc_hits = np.zeros(max_rank, dtype=np.int64)
    ap_sum = inp_sum = 0.0
    num_valid = 0
    for start in range(0, nq, chunk_size):
        stop = min(start + chunk_size, nq)
        match = g_pids[None, :] == q_pids[start:stop, None]
        if same_camera_removal:
            keep = ~(match & (g_camids[None, :] == q_camids[start:stop, None]))
        else:
            keep = np.ones_like(match)
        good = match & keep
        num_rel = good.sum(1)
        valid = num_rel > 0
        if not valid.any():
            continue
        dist, good, keep, num_rel = distmat[start:stop][valid], good[valid], keep[valid], num_rel[valid]
        first, last, ap = _stats_by_counting(dist, good, keep)
        tied = np.isnan(ap)
        if tied.any():
            first[tied], last[tied], ap[tied] = _stats_by_sorting(dist[tied], good[tied], keep[tied])
        ap_sum += float(ap.sum())
        inp_sum += float((num_rel / last).sum())
        cmc_hits += (first[:, None] <= ranks[None, :]).sum(0)
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

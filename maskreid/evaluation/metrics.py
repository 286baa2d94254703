"""CMC, mAP and mINP from a distance matrix under the standard re-ID protocol, vectorised over queries.

Protocol (Market-1501, DukeMTMC-reID, CUHK03-NP): rank the gallery by ascending distance; for each query
remove gallery images of the same identity taken by the same camera; a query left without a true match is
skipped and counted. CMC@k is the fraction of valid queries with a true match in the first k; AP is the mean
of precision@i over the ranks i of the true matches; mINP (Ye et al.) is num_matches / rank of the hardest match.

Agrees with torchreid's `evaluate_rank` (Market protocol) and fast-reid's mINP on the same matrix. Ties in
distance are broken by gallery order (stable sort). Where a query's filtered gallery is shorter than the
largest rank, its CMC stays at 1 after its list ends (it has found its match), so the curve always has
max_rank entries; torchreid instead truncates max_rank to the gallery size.

Implementation: no full sort of the gallery, no full-size boolean masks. The gallery is grouped by identity
once, so each query's true matches are looked up. The rank of each true match is counted: one comparison pass
picks the items at or before the query's last true match (a few percent of the gallery on Market-1501), and
only those are placed among the true-match distances by one exact binary search (float32: integer keys for
all rows at once). Rows where a true match ties with another image fall back to a stable argsort, so the tie
rule above holds exactly. Chunks of queries bound the memory.

`same_camera_removal=False` gives the protocol of the authors' public code (the whole gallery is ranked).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch


def labels_1d(name: str, value: Any, length: int) -> np.ndarray:
    """One label per query or gallery image, or a message naming the array and the length it needs."""
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


def _order_keys(values: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """int64 keys ordered like (row, value) for float32 values: the row in the high 32 bits, the float's bits
    made monotone in the low 32 (negative floats reversed, -0.0 folded into +0.0), so one binary search over
    all rows' thresholds at once is exact."""
    bits = (values + 0.0).view(torch.int32).to(torch.int64)
    monotone = torch.where(bits < 0, bits ^ 0x7FFFFFFF, bits) + 2**31
    return rows * 2**32 + monotone


def _threshold_counts(d: torch.Tensor, t: torch.Tensor, last: torch.Tensor) -> torch.Tensor:
    """hist[i, b] = number of gallery items j with d[i, j] <= last[i] and exactly b thresholds t[i] <= d[i, j].

    Items beyond a row's last true match never change its ranks, and they are most of the gallery: only the
    others are picked out and placed (float32: one exact binary search over every row's thresholds at once)."""
    rows, width = t.shape
    if d.dtype == torch.float32:
        flat = (d <= last[:, None]).view(-1).nonzero().squeeze(1)
        row_idx = flat // d.shape[1]
        keys = _order_keys(d.view(-1)[flat], row_idx)
        bounds = _order_keys(t.reshape(-1), torch.arange(rows).repeat_interleave(width))
        bins = torch.searchsorted(bounds, keys, right=True) - row_idx * width
    else:
        bins = torch.searchsorted(t, d, right=True)
        beyond = d > last[:, None]
        bins = torch.where(beyond, width + 1, bins).reshape(-1)   # to a spare bin, dropped below
        row_idx = torch.arange(rows).repeat_interleave(d.shape[1])
    hist = torch.zeros(rows * (width + 2), dtype=torch.int64)
    hist.index_add_(0, row_idx * (width + 2) + bins, torch.ones_like(bins))
    return hist.reshape(rows, width + 2)[:, :width + 1]


def _stats_by_counting(d: torch.Tensor, s: torch.Tensor, num_rel: np.ndarray, removed_rows: np.ndarray,
                       removed_dist: np.ndarray) -> tuple[np.ndarray, ...]:
    """First and last true-match rank and AP per row, without sorting the gallery.

    s holds each row's true-match distances, ascending (inf-padded). The rank of the k-th true match is one
    plus the number of kept gallery items closer than s[k], so each item only needs to know how many of its
    row's thresholds are at or below it. Thresholds come in pairs (s_k, next float above s_k): an odd count
    means the item equals some s_k exactly. Each true match equals its own; any other such item (or two
    true matches at one distance) is a tie, and the row is returned as NaN for the sorting path."""
    rows, m = s.shape
    t = torch.stack([s, torch.nextafter(s, torch.tensor(float("inf"), dtype=s.dtype))], dim=2).reshape(rows, 2 * m)
    last = s[torch.arange(rows), torch.from_numpy(num_rel - 1)]
    hist = _threshold_counts(d, t, last).numpy()
    if len(removed_rows):        # same id, same camera: ranked above, then taken out of the list
        rem = torch.from_numpy(removed_dist)
        counted = (rem <= last[removed_rows]).numpy()
        rem_bins = (t[removed_rows] <= rem[:, None]).sum(1).numpy()
        np.subtract.at(hist, (removed_rows[counted], rem_bins[counted]), 1)
    equal_matches = ((s[:, 1:] == s[:, :-1]) & torch.isfinite(s[:, 1:])).any(1).numpy()
    ties = (hist[:, 1::2].sum(1) != num_rel) | equal_matches
    rank = hist.cumsum(1)[:, 0:2 * m:2] + 1.0        # items with count <= 2k - 2 lie strictly before s_k
    position = np.arange(1, m + 1)
    valid = position[None, :] <= num_rel[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):    # tied rows may hold nonsense; they are redone
        ap = np.where(valid, position / rank, 0.0).sum(1) / num_rel
    last_rank = rank[np.arange(rows), num_rel - 1]
    return (np.where(ties, np.nan, rank[:, 0]), np.where(ties, np.nan, last_rank), np.where(ties, np.nan, ap))


class _TrueMatches:
    """The gallery grouped by identity once, so each query's true matches are looked up, not searched for."""

    def __init__(self, g_pids: np.ndarray, g_camids: np.ndarray) -> None:
        self.order = np.argsort(g_pids, kind="stable")
        self.pids, self.starts, self.counts = np.unique(g_pids[self.order], return_index=True, return_counts=True)
        self.g_camids = g_camids

    def of(self, q_pids: np.ndarray, q_camids: np.ndarray,
           same_camera_removal: bool) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(row, gallery column, removed?) of every same-identity pair, grouped by row."""
        at = np.minimum(np.searchsorted(self.pids, q_pids), len(self.pids) - 1)
        found = self.pids[at] == q_pids
        counts = np.where(found, self.counts[at], 0)
        row = np.repeat(np.arange(len(q_pids)), counts)
        first = np.repeat(self.starts[at] - np.cumsum(counts) + counts, counts)
        col = self.order[first + np.arange(len(row))]
        if same_camera_removal:
            removed = self.g_camids[col] == q_camids[row]
        else:
            removed = np.zeros(len(row), dtype=bool)
        return row, col, removed


def evaluate(distmat: np.ndarray, q_pids: np.ndarray, g_pids: np.ndarray, q_camids: np.ndarray,
             g_camids: np.ndarray, max_rank: int = 50, same_camera_removal: bool = True,
             chunk_size: int = 256, per_query: bool = False) -> dict[str, Any]:
    """Return {'mAP', 'cmc' (ranks 1..max_rank), 'mINP', 'num_valid_queries', 'num_skipped_queries'} as fractions.
    per_query: also 'query_ap' (AP of every query, NaN where it has no true match) and 'query_first_rank' (rank of
    its first true match, 0 where none): what a bootstrap over queries, or a list of the worst ones, needs."""
    distmat = np.asarray(distmat)
    if distmat.ndim != 2:
        raise ValueError(f"distmat: expected a 2-d (queries x gallery) array, got shape {distmat.shape}")
    nq, ng = distmat.shape
    q_pids, q_camids = labels_1d("q_pids", q_pids, nq), labels_1d("q_camids", q_camids, nq)
    g_pids, g_camids = labels_1d("g_pids", g_pids, ng), labels_1d("g_camids", g_camids, ng)
    if max_rank < 1:
        raise ValueError(f"max_rank: expected a positive integer, got {max_rank}")
    if ng == 0:
        raise ValueError("distmat: the gallery is empty")
    if distmat.dtype not in (np.float32, np.float64):
        distmat = distmat.astype(np.float64)
    distances = torch.from_numpy(np.ascontiguousarray(distmat))
    matches = _TrueMatches(g_pids, g_camids)
    ranks = np.arange(1, max_rank + 1)
    cmc_hits = np.zeros(max_rank, dtype=np.int64)
    ap_sum = inp_sum = 0.0
    num_valid = 0
    query_ap, query_first = np.full(nq, np.nan), np.zeros(nq, dtype=np.int64)
    for start in range(0, nq, chunk_size):
        stop = min(start + chunk_size, nq)
        chunk = distances[start:stop]
        # a finite sum proves every entry finite (NaN and inf propagate); only an overflow needs a closer look
        if not bool(torch.isfinite(chunk.sum())) and not bool(torch.isfinite(chunk).all()):
            bad = int((~np.isfinite(distmat)).sum())
            raise ValueError(f"distmat: {bad} entries are NaN or infinite; distances must be finite")
        row, col, removed = matches.of(q_pids[start:stop], q_camids[start:stop], same_camera_removal)
        good_row, good_col = row[~removed], col[~removed]            # grouped by row
        num_rel = np.bincount(good_row, minlength=stop - start)
        valid = num_rel > 0
        if not valid.any():
            continue
        keep_rows = np.flatnonzero(valid)
        new_row = np.cumsum(valid) - 1                  # row index among the valid rows
        rel = num_rel[valid]
        slot = np.arange(len(good_row)) - np.repeat(np.cumsum(rel) - rel, rel)      # position within its row
        s = np.full((len(keep_rows), int(rel.max())), np.inf, dtype=distmat.dtype)
        s[new_row[good_row], slot] = distmat[start + good_row, good_col]
        s.sort(axis=1)
        rem = removed & valid[row]
        scored = chunk if valid.all() else chunk[torch.from_numpy(keep_rows)]
        first, last, ap = _stats_by_counting(scored, torch.from_numpy(s), rel, new_row[row[rem]],
                                             distmat[start + row[rem], col[rem]])
        tied = np.flatnonzero(np.isnan(ap))
        if len(tied):
            q_rows = start + keep_rows[tied]
            match = g_pids[None, :] == q_pids[q_rows, None]
            keep = ~(match & (g_camids[None, :] == q_camids[q_rows, None])) if same_camera_removal \
                else np.ones_like(match)
            first[tied], last[tied], ap[tied] = _stats_by_sorting(distmat[q_rows], match & keep, keep)
        query_ap[start + keep_rows], query_first[start + keep_rows] = ap, first
        ap_sum += float(ap.sum())
        inp_sum += float((rel / last).sum())
        cmc_hits += (first[:, None] <= ranks[None, :]).sum(0)
        num_valid += len(keep_rows)
    if num_valid == 0:
        raise ValueError("no query has a true match in the gallery (after removing same-camera images); "
                         "check that query and gallery ids and cameras are right")
    result = {
        "mAP": ap_sum / num_valid,
        "cmc": (cmc_hits / num_valid).tolist(),
        "mINP": inp_sum / num_valid,
        "num_valid_queries": num_valid,
        "num_skipped_queries": nq - num_valid,
    }
    if per_query:
        result.update(query_ap=query_ap, query_first_rank=query_first)
    return result


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

"""Nearest gallery images for query embeddings: faiss indexes (exact by default) and a brute-force reference.

Distances are Euclidean, as in evaluation. `flat` is exact (same ranking as brute force, up to ties);
`ivf` (inverted lists, searched `nprobe` at a time) and `hnsw` (a graph) are approximate and much faster
on galleries of millions; report their recall@k against `flat` before trusting them
(bench/search_benchmark.py does so).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable

import numpy as np
import torch

INDEX_KINDS = ("flat", "ivf", "hnsw")


class SearchError(ValueError):
    """Bad search settings or inputs."""


@dataclass(frozen=True)
class IndexSettings:
    kind: str = "flat"
    nlist: int = 0          # ivf: number of lists (0: 4 * sqrt(N), at most N / 39, faiss's training minimum)
    nprobe: int = 16        # ivf: lists visited per query
    hnsw_m: int = 32        # hnsw: graph degree
    ef_search: int = 128    # hnsw: candidates kept per query
    seed: int = 0

    def __post_init__(self) -> None:
        if self.kind not in INDEX_KINDS:
            raise SearchError(f"index kind {self.kind!r}, expected one of {INDEX_KINDS}")


class GalleryIndex:
    """A faiss index filled chunk by chunk, so the caller controls how many features are in memory at once
    (the index itself holds every vector for `flat`, `ivf` and `hnsw`: 4*D bytes per image)."""

    def __init__(self, dim: int, settings: IndexSettings = IndexSettings()) -> None:
        import faiss

        self.dim, self.settings, self.size = dim, settings, 0
        if settings.kind == "flat":
            self.index = faiss.IndexFlatL2(dim)
        elif settings.kind == "hnsw":
            self.index = faiss.IndexHNSWFlat(dim, settings.hnsw_m)
            self.index.hnsw.efSearch = settings.ef_search
        else:
            self.index = None        # ivf: built once training data is seen (train_ivf)

    def train_ivf(self, sample: np.ndarray, expected_size: int) -> None:
        """IVF needs its coarse centroids first: k-means on a sample of the gallery."""
        import faiss

        nlist = self.settings.nlist or max(1, min(int(4 * np.sqrt(expected_size)), len(sample) // 39))
        quantizer = faiss.IndexFlatL2(self.dim)
        self.index = faiss.IndexIVFFlat(quantizer, self.dim, nlist)
        self.index.cp.seed = self.settings.seed
        self.index.train(np.ascontiguousarray(sample, dtype=np.float32))
        self.index.nprobe = min(self.settings.nprobe, nlist)
        self._quantizer = quantizer      # the IVF index refers to it; keep it alive

    def add(self, features: np.ndarray) -> None:
        if self.index is None:
            raise SearchError("ivf index: call train_ivf with a sample of the gallery before adding")
        features = np.ascontiguousarray(features, dtype=np.float32)
        if features.ndim != 2 or features.shape[1] != self.dim:
            raise SearchError(f"features of shape {features.shape}, expected (N, {self.dim})")
        self.index.add(features)
        self.size += len(features)

    def search(self, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """(distances, indices), each (Q, min(k, N)); Euclidean distances, nearest first."""
        if self.size == 0:
            raise SearchError("the gallery is empty")
        k = min(k, self.size)
        squared, indices = self.index.search(np.ascontiguousarray(queries, dtype=np.float32), k)
        return np.sqrt(np.maximum(squared, 0)), indices


def real_neighbours(distances: np.ndarray, indices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """One query's row of `GalleryIndex.search` without the places faiss fills with index -1 (and a huge
    distance) when an approximate index finds fewer than k neighbours (ivf with few lists probed, hnsw)."""
    found = indices >= 0
    return distances[found], indices[found]


def build_index(chunks: Iterable[np.ndarray], dim: int, settings: IndexSettings = IndexSettings(),
                expected_size: int = 0, ivf_sample: int = 100_000) -> GalleryIndex:
    """Fill an index from feature chunks; ivf is trained on the first `ivf_sample` rows seen."""
    index = GalleryIndex(dim, settings)
    pending: list[np.ndarray] = []
    for chunk in chunks:
        if settings.kind == "ivf" and index.index is None:
            pending.append(chunk)
            if sum(len(c) for c in pending) < ivf_sample:
                continue
            sample = np.concatenate(pending)
            index.train_ivf(sample[:ivf_sample], max(expected_size, len(sample)))
            chunk, pending = sample, []
        index.add(chunk)
    if pending:
        sample = np.concatenate(pending)
        index.train_ivf(sample, max(expected_size, len(sample)))
        index.add(sample)
    return index


def brute_force_search(queries: np.ndarray, gallery_chunks: Iterable[np.ndarray],
                       k: int) -> tuple[np.ndarray, np.ndarray]:
    """Exact k nearest by full distance computation, chunk by chunk with a running top-k (torch, fp64
    distances so ties are rare): the reference the faiss indexes are checked against."""
    q = torch.from_numpy(np.ascontiguousarray(queries, dtype=np.float64))
    best_d = torch.full((len(q), 0), float("inf"), dtype=torch.float64)
    best_i = torch.empty((len(q), 0), dtype=torch.int64)
    offset = 0
    for chunk in gallery_chunks:
        g = torch.from_numpy(np.ascontiguousarray(chunk, dtype=np.float64))
        d = torch.cdist(q, g)
        d_all = torch.cat([best_d, d], 1)
        i_all = torch.cat([best_i, torch.arange(offset, offset + len(g)).expand(len(q), -1)], 1)
        top = torch.topk(d_all, min(k, d_all.shape[1]), dim=1, largest=False, sorted=True)
        best_d, best_i = top.values, torch.gather(i_all, 1, top.indices)
        offset += len(g)
    if offset == 0:
        raise SearchError("the gallery is empty")
    return best_d.numpy(), best_i.numpy()


def recall_at_k(approx: np.ndarray, exact: np.ndarray) -> float:
    """Share of the exact k nearest neighbours that the approximate search also returned (order ignored)."""
    hits = sum(len(set(a) & set(e)) for a, e in zip(approx.tolist(), exact.tolist()))
    return hits / exact.size

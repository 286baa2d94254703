"""Alpha query expansion (alpha-QE, Radenovic et al. 2018; fast-reid's `aqe`): every query and gallery embedding
is replaced by the weighted mean of its qe_k nearest embeddings (itself included) in the pooled query + gallery
set, each weighted by its cosine similarity to the power alpha; ranking then uses the expanded embeddings, by
cosine (Euclidean distance of the L2-normalised vectors, the same order). As fast-reid does: neighbours by cosine
similarity of the normalised embeddings, the mean taken over the embeddings as they are."""

from __future__ import annotations

import numpy as np
import torch


def _normalised(x: torch.Tensor) -> torch.Tensor:
    return x / x.norm(dim=1, keepdim=True).clamp_min(1e-12)


def alpha_query_expansion(query: np.ndarray, gallery: np.ndarray, qe_k: int = 5,
                          alpha: float = 3.0) -> tuple[np.ndarray, np.ndarray]:
    """(expanded queries, expanded gallery), L2-normalised, float64. qe_k counts the embedding itself."""
    if qe_k < 1:
        raise ValueError(f"qe_k: expected a positive integer, got {qe_k}")
    pooled = torch.from_numpy(np.concatenate([query, gallery]).astype(np.float64))
    k = min(qe_k, len(pooled))
    unit = _normalised(pooled)
    expanded = torch.empty_like(pooled)
    for start in range(0, len(pooled), 1024):                   # bounded memory: 1,024 rows of similarities
        sims = unit[start:start + 1024] @ unit.T
        weights, neighbours = sims.topk(k, dim=1)
        expanded[start:start + 1024] = (pooled[neighbours] * weights.pow(alpha)[..., None]).mean(1)
    out = _normalised(expanded).numpy()
    return out[:len(query)], out[len(query):]

"""The paper's losses, Eq. 1-6, one function each."""

from __future__ import annotations

import torch
import torch.nn.functional as nnf


def pairwise_euclidean(embeddings: torch.Tensor) -> torch.Tensor:
    """Euclidean (not squared) distances between all rows; clamped so the sqrt has a gradient at 0."""
    sq = embeddings.pow(2).sum(1)
    d2 = sq[:, None] + sq[None, :] - 2.0 * embeddings @ embeddings.t()
    return d2.clamp_min(1e-12).sqrt()


def batch_hard_triplet(embeddings: torch.Tensor, pids: torch.Tensor, margin: float) -> torch.Tensor:
    """Eq. 1 with batch-hard mining (Hermans et al.): for each anchor, its farthest positive and nearest negative.

    L = mean_a max(||F(a) - F(p*)|| - ||F(a) - F(n*)|| + m, 0).
    """
    dist = pairwise_euclidean(embeddings)
    same = pids[:, None] == pids[None, :]
    eye = torch.eye(len(pids), dtype=torch.bool, device=pids.device)
    hardest_pos = dist.masked_fill(~same | eye, float("-inf")).amax(1)
    hardest_neg = dist.masked_fill(same, float("inf")).amin(1)
    return nnf.relu(hardest_pos - hardest_neg + margin).mean()


def extractor_loss(triplet_original: torch.Tensor, triplet_hidden: torch.Tensor, lambda1: float) -> torch.Tensor:
    """Eq. 2: lambda1 * L_triplet(original) + (1 - lambda1) * L_triplet(masked images)."""
    return lambda1 * triplet_original + (1.0 - lambda1) * triplet_hidden


def identity_loss(features_original: torch.Tensor, features_masked: torch.Tensor) -> torch.Tensor:
    """Eq. 3: mse(F(a), F(M(a) * a)), averaged over the batch."""
    return nnf.mse_loss(features_masked, features_original)


def sparsity_loss(masks: torch.Tensor) -> torch.Tensor:
    """Eq. 4: mean mask value, averaged over the batch."""
    return masks.mean()


def contiguity_loss(masks: torch.Tensor) -> torch.Tensor:
    """Eq. 5 exactly: 1/(h*w) * sum_ij |M[i+1,j] - M[i,j]| + |M[i,j+1] - M[i,j]|, averaged over the batch.

    The sums run over the pairs that exist (i < h-1, resp. j < w-1); the normaliser is h*w as written.
    """
    h, w = masks.shape[-2:]
    vertical = (masks[..., 1:, :] - masks[..., :-1, :]).abs().flatten(1).sum(1)
    horizontal = (masks[..., :, 1:] - masks[..., :, :-1]).abs().flatten(1).sum(1)
    return ((vertical + horizontal) / (h * w)).mean()


def mask_loss(identity: torch.Tensor, sparsity: torch.Tensor, contiguity: torch.Tensor, lambda2: float,
              sparsity_weight: float = 1.0) -> torch.Tensor:
    """Eq. 6: lambda2 * L_identity + (1 - lambda2) * (w_s * L_sparsity + L_contiguity); w_s = 1 in the paper."""
    return lambda2 * identity + (1.0 - lambda2) * (sparsity_weight * sparsity + contiguity)

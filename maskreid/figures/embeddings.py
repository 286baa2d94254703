"""A picture of the embedding space: stage-1 and stage-3 features of ~20 test identities, projected to 2-D.

PCA (an SVD of the centred features, no extra dependency) rather than t-SNE: it is deterministic and
linear, so distances between clusters in the picture mean something; each model gets its own projection.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from maskreid.io import atomic_path  # noqa: E402


def pick_identities(pids: np.ndarray, count: int, seed: int, min_images: int = 3) -> np.ndarray:
    """`count` identities with at least `min_images` images, drawn with `seed` (the same for every model)."""
    ids, counts = np.unique(pids[pids > 0], return_counts=True)
    eligible = ids[counts >= min_images]
    if len(eligible) == 0:
        eligible = ids
    return np.sort(np.random.default_rng(seed).choice(eligible, min(count, len(eligible)), replace=False))


def pca_2d(features: np.ndarray) -> tuple[np.ndarray, float]:
    """The first two principal components and the share of variance they hold."""
    centred = features - features.mean(0, keepdims=True)
    _, s, vt = np.linalg.svd(centred, full_matrices=False)
    share = float((s[:2] ** 2).sum() / max((s ** 2).sum(), 1e-12))
    return centred @ vt[:2].T, share


def embedding_figure(features: dict[str, np.ndarray], pids: np.ndarray, out: Path, seed: int = 0,
                     identities: int = 20) -> None:
    """One panel per model: its features of the picked identities' images, coloured by identity."""
    chosen = pick_identities(pids, identities, seed)
    keep = np.isin(pids, chosen)
    colours = {pid: plt.cm.tab20(i % 20) for i, pid in enumerate(chosen)}
    fig, axes = plt.subplots(1, len(features), figsize=(5.2 * len(features), 4.8), squeeze=False)
    for ax, (name, feats) in zip(axes[0], features.items()):
        points, share = pca_2d(feats[keep])
        ax.scatter(points[:, 0], points[:, 1], c=[colours[p] for p in pids[keep]], s=22, edgecolors="black",
                   linewidths=0.3)
        ax.set_title(f"{name}: {len(chosen)} test identities, {int(keep.sum())} images\n"
                     f"PCA of the embeddings ({share:.0%} of variance shown)", fontsize=9)
        ax.set_xlabel("principal component 1")
        ax.set_ylabel("principal component 2")
    fig.suptitle("Embedding space, one colour per identity: tighter, separate clusters = easier re-ID", fontsize=10)
    fig.tight_layout()
    with atomic_path(out) as tmp:
        fig.savefig(tmp, format="png", dpi=100)
    plt.close(fig)

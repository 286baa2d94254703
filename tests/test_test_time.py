"""Test-time options of evaluation, each against an independent reference on small cases: TPR at FPR (sklearn's
ROC curve), alpha query expansion (fast-reid's loop, written out), flip test-time augmentation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from maskreid.evaluation.query_expansion import alpha_query_expansion
from maskreid.evaluation.scoring import Scoring, score_features
from maskreid.evaluation.verification import tpr_at_fpr


def _roc_reference(distmat, q_pids, g_pids, q_cams, g_cams, fpr: float, removal: bool) -> float:
    """The largest TPR among sklearn's ROC points whose FPR is at most `fpr` (scores: negated distances)."""
    from sklearn.metrics import roc_curve

    same = q_pids[:, None] == g_pids[None, :]
    keep = ~(same & (q_cams[:, None] == g_cams[None, :])) if removal else np.ones_like(same)
    fprs, tprs, _ = roc_curve(same[keep], -distmat[keep], drop_intermediate=False)
    return float(tprs[fprs <= fpr + 1e-12].max())


@pytest.mark.parametrize("removal", [True, False], ids=["standard", "authors"])
@pytest.mark.parametrize("seed", range(3))
def test_tpr_at_fpr_is_scikit_learns_roc_point(seed: int, removal: bool) -> None:
    rng = np.random.default_rng(300 + seed)
    nq, ng = 40, 260
    q_pids, g_pids = rng.integers(0, 12, nq), rng.integers(0, 12, ng)
    q_cams, g_cams = rng.integers(1, 4, nq), rng.integers(1, 4, ng)
    same = q_pids[:, None] == g_pids[None, :]
    distmat = rng.normal(2.0, 0.5, (nq, ng)) - 1.2 * same                  # true pairs closer, overlapping
    distmat[0, :5] = distmat[0, 5]                                          # ties at one distance
    for fpr in (1e-4, 1e-3, 1e-2, 0.1):
        got = tpr_at_fpr(distmat, q_pids, g_pids, q_cams, g_cams, (fpr,), removal)[f"tpr@fpr{fpr:.0e}"]
        assert got == pytest.approx(_roc_reference(distmat, q_pids, g_pids, q_cams, g_cams, fpr, removal)), fpr


def test_a_true_pair_at_an_impostors_distance_is_not_accepted() -> None:
    """FPR 0.2 of 10 impostor pairs allows 2: the threshold stays below the third impostor (3.0), so the true
    pair at exactly 3.0 is not accepted; sklearn's ROC has the same point."""
    distmat = np.array([[0.5, 3.0, *np.arange(1.0, 11.0)]])
    g_pids = np.array([1, 1] + [2] * 10)
    args = (distmat, np.array([1]), g_pids, np.array([1]), np.full(12, 2))
    assert tpr_at_fpr(*args, fprs=(0.2,))["tpr@fpr2e-01"] == 0.5
    assert _roc_reference(*args, 0.2, True) == 0.5
    assert tpr_at_fpr(*args, fprs=(0.3,))["tpr@fpr3e-01"] == 1.0


def test_tpr_is_in_the_scores_and_perfect_separation_gives_one() -> None:
    q_pids, g_pids = np.array([1, 2]), np.array([1, 1, 2, 2, 3])
    q_cams, g_cams = np.array([1, 1]), np.array([2, 3, 2, 3, 2])
    distmat = np.where(q_pids[:, None] == g_pids[None, :], 0.1, 1.0)
    score = score_features(np.zeros((2, 4)), np.zeros((5, 4)), q_pids, g_pids, q_cams, g_cams, Scoring())
    assert set(score.summary) >= {"tpr@fpr1e-04", "tpr@fpr1e-03", "tpr@fpr1e-02"}
    assert tpr_at_fpr(distmat, q_pids, g_pids, q_cams, g_cams)["tpr@fpr1e-04"] == 1.0


def _fastreid_aqe(query: np.ndarray, gallery: np.ndarray, qe_k: int, alpha: float) -> np.ndarray:
    """fast-reid's aqe, one pass, as its loop reads: neighbours by cosine over query + gallery, the weighted
    mean (weight = similarity ** alpha) of the embeddings as they are."""
    feats = np.concatenate([query, gallery])
    unit = feats / np.linalg.norm(feats, axis=1, keepdims=True)
    sims = unit @ unit.T
    out = []
    for row in sims:
        top = np.argsort(-row)[:qe_k]
        out.append((feats[top] * row[top, None] ** alpha).mean(0))
    return np.asarray(out)


@pytest.mark.parametrize("qe_k, alpha", [(1, 3.0), (5, 3.0), (3, 0.0)])
def test_alpha_query_expansion_is_fastreids(qe_k: int, alpha: float) -> None:
    rng = np.random.default_rng(qe_k)
    query, gallery = rng.normal(size=(7, 16)) + 3, rng.normal(size=(30, 16)) + 3      # positive similarities
    got_q, got_g = alpha_query_expansion(query, gallery, qe_k, alpha)
    expected = _fastreid_aqe(query, gallery, qe_k, alpha)
    expected /= np.linalg.norm(expected, axis=1, keepdims=True)          # ranked by cosine: normalised
    assert np.abs(np.concatenate([got_q, got_g]) - expected).max() < 1e-10
    if qe_k == 1:        # its own nearest neighbour alone: the embedding itself, normalised
        assert np.allclose(got_q, query / np.linalg.norm(query, axis=1, keepdims=True))


def test_query_expansion_changes_the_ranking_and_leaves_junk_out() -> None:
    """With AQE on, the scores are of the expanded embeddings; junk (-1) is never a neighbour under the
    standard protocol: the expanded queries are those of the gallery without it."""
    rng = np.random.default_rng(0)
    q_pids, g_pids = np.arange(1, 9), np.concatenate([np.repeat(np.arange(1, 9), 3), [-1, -1]])
    centres = rng.normal(size=(9, 32)) * 2
    q = centres[q_pids] + 2 * rng.normal(size=(8, 32))
    g = centres[np.maximum(g_pids, 0)] + 2 * rng.normal(size=(26, 32))
    g[24:] = q[0] + 0.1 * rng.normal(size=(2, 32))          # junk right beside a query: a neighbour if allowed
    q_cams, g_cams = np.ones(8, dtype=int), np.full(26, 2)
    plain = score_features(q, g, q_pids, g_pids, q_cams, g_cams, Scoring())
    expanded = score_features(q, g, q_pids, g_pids, q_cams, g_cams, Scoring(aqe=True, aqe_k=3))
    assert not np.allclose(expanded.distances, plain.distances, atol=1e-3)
    without_junk = score_features(q, g[:24], q_pids, g_pids[:24], q_cams, g_cams[:24], Scoring(aqe=True, aqe_k=3))
    assert np.array_equal(without_junk.distances, expanded.distances)
    assert Scoring(aqe=True).without_reranking().aqe is False


def test_flip_augmentation_is_the_mean_of_both_views() -> None:
    """extract_features(flip=True) and the serving embedder's flip: (F(x) + F(mirror x)) / 2, mirrored after the
    crop; with a model that sees only a column's position, the mirror gives another embedding."""
    from maskreid.data.loading import ImageCache
    from maskreid.evaluation.features import extract_features

    class Columns(torch.nn.Module):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return x.mean(dim=(1, 2)) * torch.arange(x.shape[-1], dtype=x.dtype)

    rng = np.random.default_rng(0)
    images = torch.from_numpy(rng.integers(0, 256, (5, 3, 20, 11), dtype=np.uint8))
    cache = ImageCache(images, np.arange(5), np.ones(5, dtype=np.int64), [f"{i}.jpg" for i in range(5)])
    model = Columns()
    plain = extract_features(model, cache, (16, 8), 2, torch.device("cpu"))
    flipped = extract_features(model, cache, (16, 8), 2, torch.device("cpu"), flip=True)
    from maskreid.data.transforms import Normalizer, test_transform

    batch = test_transform(images, (16, 8), Normalizer("cpu"), "cpu")
    assert np.allclose(flipped, ((model(batch) + model(batch.flip(-1))) / 2).numpy(), atol=1e-6)
    assert np.allclose(plain, model(batch).numpy(), atol=1e-6) and not np.allclose(plain, flipped, atol=1e-3)

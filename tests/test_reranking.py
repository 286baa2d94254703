"""k-reciprocal re-ranking against a reference written here as plainly as the paper states it (dense matrices,
Python loops), and against torchreid's conventions: the joint matrix's columns are normalised, k1/2 rounds."""

from __future__ import annotations

import numpy as np
import pytest

from maskreid.evaluation.metrics import evaluate
from maskreid.evaluation.reranking import k_reciprocal_rerank


def plain_rerank(q_g, q_q, g_g, k1=20, k2=6, lam=0.3):
    """Zhong et al. 2017, step by step, on dense float32 matrices."""
    nq = len(q_q)
    joint = np.block([[q_q, q_g], [q_g.T, g_g]])
    d = (joint.T ** 2).astype(np.float32)            # row i = column i of the joint matrix (as torchreid)
    d = d / d.max(axis=1, keepdims=True)
    n = len(d)
    order = np.argsort(d, axis=1, kind="stable")

    def neighbours(i, k):
        return [int(j) for j in order[i, :k + 1]]

    def reciprocal(i, k):
        return [j for j in neighbours(i, k) if i in neighbours(j, k)]

    v = np.zeros((n, n), dtype=np.float32)
    for i in range(n):
        r = reciprocal(i, k1)
        expanded = set(r)
        for c in r:
            rc = reciprocal(c, int(np.around(k1 / 2)))
            if len(set(rc) & set(r)) > 2 / 3 * len(rc):
                expanded |= set(rc)
        members = sorted(expanded)
        w = np.exp(-d[i, members])
        v[i, members] = w / w.sum()
    v = np.stack([v[order[i, :k2]].mean(axis=0) for i in range(n)])
    jaccard = np.zeros((nq, n - nq), dtype=np.float32)
    for i in range(nq):
        for j in range(nq, n):
            shared = np.minimum(v[i], v[j]).sum()
            jaccard[i, j - nq] = 1 - shared / (2 - shared)
    return (1 - lam) * jaccard + lam * d[:nq, nq:]


def clustered_case(seed, nq=24, ng=70, ids=12, asymmetric=False):
    rng = np.random.default_rng(seed)
    centres = rng.normal(size=(ids, 8))
    q_pids, g_pids = rng.integers(0, ids, nq), rng.integers(0, ids, ng)
    q = centres[q_pids] + rng.normal(scale=0.7, size=(nq, 8))
    g = centres[g_pids] + rng.normal(scale=0.7, size=(ng, 8))

    def dist(a, b):
        return np.sqrt(((a[:, None] - b[None]) ** 2).sum(-1)).astype(np.float32)

    q_q, q_g, g_g = dist(q, q), dist(q, g), dist(g, g)
    if asymmetric:   # e.g. distances from an asymmetric learned metric: the column convention matters
        q_q = q_q * rng.uniform(0.8, 1.2, size=q_q.shape).astype(np.float32)
        g_g = g_g * rng.uniform(0.8, 1.2, size=g_g.shape).astype(np.float32)
    cams = rng.integers(0, 4, nq), rng.integers(0, 4, ng)
    return (q_g, q_q, g_g), (q_pids, g_pids, *cams)


@pytest.mark.parametrize("seed", [0, 1])
@pytest.mark.parametrize(("k1", "k2", "lam"), [(20, 6, 0.3), (5, 3, 0.5), (7, 1, 0.1)])
def test_matches_the_plain_reference(seed, k1, k2, lam):
    dists, labels = clustered_case(seed)
    expected = plain_rerank(*dists, k1, k2, lam)
    got = k_reciprocal_rerank(*dists, k1, k2, lam, chunk_size=16)
    assert got.shape == expected.shape and got.dtype == np.float32
    np.testing.assert_allclose(got, expected, atol=1e-6, rtol=0)
    a, b = evaluate(expected, *labels), evaluate(got, *labels)
    assert abs(a["mAP"] - b["mAP"]) < 1e-5 and abs(a["mINP"] - b["mINP"]) < 1e-5
    np.testing.assert_allclose(a["cmc"], b["cmc"], atol=1e-5, rtol=0)


def test_uses_columns_of_the_joint_matrix_when_inputs_are_asymmetric():
    dists, _ = clustered_case(2, asymmetric=True)
    np.testing.assert_allclose(k_reciprocal_rerank(*dists, 6, 3, 0.3), plain_rerank(*dists, 6, 3, 0.3),
                               atol=1e-6, rtol=0)


def test_chunk_size_does_not_change_the_result():
    dists, _ = clustered_case(3, nq=40, ng=90)
    one = k_reciprocal_rerank(*dists, chunk_size=1000)
    np.testing.assert_array_equal(one, k_reciprocal_rerank(*dists, chunk_size=7))


def test_float64_input_gives_the_same_ranking_quality():
    dists, labels = clustered_case(4)
    f32 = evaluate(k_reciprocal_rerank(*dists), *labels)
    f64 = evaluate(k_reciprocal_rerank(*(d.astype(np.float64) for d in dists)), *labels)
    assert abs(f32["mAP"] - f64["mAP"]) < 1e-5


def test_mixed_and_integer_dtypes_are_accepted():
    (q_g, q_q, g_g), _ = clustered_case(7)
    expected = k_reciprocal_rerank(q_g.astype(np.float64), q_q.astype(np.float64), g_g.astype(np.float64))
    np.testing.assert_allclose(k_reciprocal_rerank(q_g, q_q.astype(np.float64), g_g), expected, atol=1e-6)
    rounded = [np.round(d * 1000).astype(np.int64) for d in (q_g, q_q, g_g)]
    got = k_reciprocal_rerank(*rounded)
    assert got.shape == q_g.shape and got.dtype == np.float32
    # integers are ranked as the same values in float64, exactly (rounded distances tie often; how ties are
    # ordered among the k nearest is implementation-defined, in torchreid too, so no reference is compared here)
    np.testing.assert_array_equal(got, k_reciprocal_rerank(*[r.astype(np.float64) for r in rounded]))
    assert not np.array_equal(got, k_reciprocal_rerank(q_g, q_q, g_g))     # and they did get used


def test_re_ranking_helps_on_clustered_data():
    dists, labels = clustered_case(5, nq=40, ng=160, ids=16)
    assert evaluate(k_reciprocal_rerank(*dists), *labels)["mAP"] > evaluate(dists[0], *labels)["mAP"]


@pytest.mark.parametrize(("which", "bad", "message"), [
    (1, np.zeros((3, 3), np.float32), r"q_q: expected shape \(24, 24\)"),
    (2, "nan", "g_g: contains NaN"),
    (0, "negative", "q_g: contains negative"),
])
def test_bad_input_is_named(which, bad, message):
    dists, _ = clustered_case(0)
    dists = list(dists)
    if isinstance(bad, str):
        dists[which] = dists[which].copy()
        dists[which][1, 2] = np.nan if bad == "nan" else -1.0
    else:
        dists[which] = bad
    with pytest.raises(ValueError, match=message):
        k_reciprocal_rerank(*dists)


def test_bad_parameters_are_named():
    dists, _ = clustered_case(0)
    with pytest.raises(ValueError, match="k1, k2"):
        k_reciprocal_rerank(*dists, k1=0)
    with pytest.raises(ValueError, match="lambda_value"):
        k_reciprocal_rerank(*dists, lambda_value=1.5)


def _save_case(tmp_path, with_square_blocks=True):
    (q_g, q_q, g_g), (q_pids, g_pids, q_cams, g_cams) = clustered_case(6)
    arrays = dict(distmat=q_g, q_pids=q_pids, g_pids=g_pids, q_camids=q_cams, g_camids=g_cams)
    if with_square_blocks:
        arrays.update(q_q=q_q, g_g=g_g)
    path = tmp_path / "case.npz"
    np.savez(path, **arrays)
    return path, plain_rerank(q_g, q_q, g_g, 20, 6, 0.3), (q_pids, g_pids, q_cams, g_cams)


def test_cli_rerank_scores_the_re_ranked_matrix(tmp_path, capsys):
    import json

    from maskreid.cli import main

    path, expected, labels = _save_case(tmp_path)
    assert main(["evaluate-distances", str(path), "--rerank"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["reranking"] == {"used": True, "k1": 20, "k2": 6, "lambda": 0.3}
    assert abs(out["mAP"] - evaluate(expected, *labels)["mAP"]) < 1e-5
    assert main(["evaluate-distances", str(path)]) == 0
    assert json.loads(capsys.readouterr().out)["reranking"] == {"used": False}


def test_cli_rerank_names_the_missing_arrays(tmp_path, capsys):
    from maskreid.cli import main

    path, _, _ = _save_case(tmp_path, with_square_blocks=False)
    assert main(["evaluate-distances", str(path), "--rerank"]) == 1
    assert "--rerank needs array(s) ['q_q', 'g_g']" in capsys.readouterr().err

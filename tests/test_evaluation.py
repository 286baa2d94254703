"""Evaluation against hand-computed cases and a plain per-query reference written here."""

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from maskreid.cli import main as cli_main
from maskreid.evaluation.metrics import euclidean_distances, evaluate


def reference(distmat, q_pids, g_pids, q_camids, g_camids, max_rank, same_camera_removal=True):
    """The protocol in the plainest form: one query at a time, as torchreid's eval_market1501 does (without
    the removal: the authors' public code, which ranks the whole gallery)."""
    cmcs, aps, inps = [], [], []
    for i in range(len(q_pids)):
        order = np.argsort(distmat[i], kind="stable")
        kept = [j for j in order
                if not (same_camera_removal and g_pids[j] == q_pids[i] and g_camids[j] == q_camids[i])]
        hits = [1 if g_pids[j] == q_pids[i] else 0 for j in kept]
        if sum(hits) == 0:
            continue
        first = hits.index(1)
        cmcs.append([1.0 if r >= first else 0.0 for r in range(max_rank)])
        found, precisions = 0, []
        for rank, hit in enumerate(hits, start=1):
            if hit:
                found += 1
                precisions.append(found / rank)
        aps.append(sum(precisions) / len(precisions))
        last = len(hits) - 1 - hits[::-1].index(1)
        inps.append(sum(hits) / (last + 1))
    return np.mean(aps), np.mean(cmcs, axis=0), np.mean(inps), len(aps)


def test_hand_case_same_camera_removal_and_distractors() -> None:
    # one query (id 1, cam 1); gallery by distance: [id1 cam1 (removed), id0 distractor, id1 cam2, id2, id1 cam3]
    distmat = np.array([[0.1, 0.2, 0.3, 0.4, 0.5]])
    g_pids = np.array([1, 0, 1, 2, 1])
    g_cams = np.array([1, 2, 2, 1, 3])
    r = evaluate(distmat, np.array([1]), g_pids, np.array([1]), g_cams, max_rank=4)
    # filtered list: [0, 1, 2, 1] -> hits at ranks 2 and 4: AP = (1/2 + 2/4) / 2 = 0.5
    assert r["mAP"] == pytest.approx(0.5)
    assert r["cmc"] == [0.0, 1.0, 1.0, 1.0]
    assert r["mINP"] == pytest.approx(2 / 4)
    assert r["num_valid_queries"] == 1


def test_query_without_valid_match_is_skipped_and_counted() -> None:
    distmat = np.array([[0.1, 0.2], [0.2, 0.1]])
    r = evaluate(distmat, np.array([1, 2]), np.array([1, 2]), np.array([1, 1]), np.array([1, 2]), max_rank=2)
    # query 0 (id 1, cam 1): its only match is same camera -> skipped; query 1 (id 2, cam 1) matches at rank 1
    assert r["num_valid_queries"] == 1 and r["num_skipped_queries"] == 1
    assert r["mAP"] == 1.0 and r["cmc"] == [1.0, 1.0]


def test_no_valid_query_at_all_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="no query has a true match"):
        evaluate(np.zeros((1, 1)), np.array([1]), np.array([1]), np.array([1]), np.array([1]))


def test_ties_are_broken_by_gallery_order() -> None:
    distmat = np.array([[0.5, 0.5, 0.5]])
    r = evaluate(distmat, np.array([1]), np.array([2, 1, 1]), np.array([1]), np.array([2, 2, 3]), max_rank=3)
    # stable order: [id2, id1, id1] -> AP = (1/2 + 2/3) / 2
    assert r["mAP"] == pytest.approx((1 / 2 + 2 / 3) / 2)
    assert r["cmc"] == [0.0, 1.0, 1.0]


def test_short_gallery_keeps_the_curve_length_and_stays_at_one() -> None:
    distmat = np.array([[0.3, 0.1, 0.2], [0.1, 0.3, 0.2]])
    r = evaluate(distmat, np.array([1, 2]), np.array([1, 2, 1]), np.array([1, 1]), np.array([2, 2, 1]), max_rank=10)
    assert len(r["cmc"]) == 10
    # query 0: [id2, id1 cam2] (id1 cam1 removed) -> first hit at rank 2; query 1: [id1, id1, id2] -> rank 3
    assert r["cmc"] == [0.0, 0.5] + [1.0] * 8


def test_authors_protocol_keeps_same_camera_matches() -> None:
    distmat = np.array([[0.1, 0.2]])
    r = evaluate(distmat, np.array([1]), np.array([1, 2]), np.array([1]), np.array([1, 1]), max_rank=2,
                 same_camera_removal=False)
    assert r["cmc"][0] == 1.0 and r["mAP"] == 1.0


@pytest.mark.parametrize("removal", [True, False], ids=["standard", "authors"])
@pytest.mark.parametrize("seed", range(6))
def test_matches_plain_reference_on_random_cases_with_ties(seed: int, removal: bool) -> None:
    rng = np.random.default_rng(seed)
    nq, ng = int(rng.integers(5, 40)), int(rng.integers(5, 80))
    distmat = rng.integers(0, 6, size=(nq, ng)).astype(np.float64)   # many exact ties
    q_pids, g_pids = rng.integers(0, 8, nq), rng.integers(0, 8, ng)
    q_cams, g_cams = rng.integers(1, 4, nq), rng.integers(1, 4, ng)
    max_rank = int(rng.integers(1, 100))                                # sometimes longer than the gallery
    r = evaluate(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=max_rank, chunk_size=7,
                 same_camera_removal=removal)
    ap, cmc, inp, valid = reference(distmat, q_pids, g_pids, q_cams, g_cams, max_rank, removal)
    assert r["num_valid_queries"] == valid
    assert abs(r["mAP"] - ap) < 1e-6 and abs(r["mINP"] - inp) < 1e-6
    np.testing.assert_allclose(r["cmc"], cmc, atol=1e-6)


def test_euclidean_distances() -> None:
    q = np.array([[0.0, 0.0], [1.0, 1.0]])
    g = np.array([[3.0, 4.0]])
    np.testing.assert_allclose(euclidean_distances(q, g), [[5.0], [np.sqrt(13.0)]])


def _npz(tmp_path: Path, **override) -> Path:
    arrays = dict(distmat=np.array([[0.1, 0.2, 0.3, 0.4, 0.5]]), q_pids=np.array([1]),
                  g_pids=np.array([1, 0, 1, 2, 1]), q_camids=np.array([1]), g_camids=np.array([1, 2, 2, 1, 3]))
    arrays.update(override)
    path = tmp_path / "d.npz"
    np.savez(path, **arrays)
    return path


def test_cli_prints_json_metrics(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["evaluate-distances", str(_npz(tmp_path)), "--max-rank", "4"]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["mAP"] == pytest.approx(0.5) and out["cmc"] == [0.0, 1.0, 1.0, 1.0]
    assert out["mINP"] == pytest.approx(0.5) and out["num_valid_queries"] == 1


def test_cli_names_the_missing_array(tmp_path: Path) -> None:
    path = tmp_path / "bad.npz"
    np.savez(path, distmat=np.zeros((1, 1)))
    result = subprocess.run([sys.executable, "-m", "maskreid.cli", "evaluate-distances", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 1
    assert "missing array(s) ['q_pids', 'g_pids', 'q_camids', 'g_camids']" in result.stderr
    assert "Traceback" not in result.stderr


def test_cli_wrong_lengths_are_explained(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["evaluate-distances", str(_npz(tmp_path, g_pids=np.array([1, 2])))]) == 1
    assert "g_pids: expected a 1-d array of length 5" in capsys.readouterr().err


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("seed", range(4))
def test_counting_path_alone_matches_the_reference_without_ties(seed: int, dtype: type,
                                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    import maskreid.evaluation.metrics as ev

    def no_sorting(*args):
        raise AssertionError("the sorting fallback must not be needed without ties")

    monkeypatch.setattr(ev, "_stats_by_sorting", no_sorting)
    rng = np.random.default_rng(100 + seed)
    nq, ng = 30, 200
    distmat = rng.permutation(np.linspace(-1.0, 3.0, nq * ng)).reshape(nq, ng).astype(dtype)  # no ties; < 0 too
    q_pids, g_pids = rng.integers(0, 10, nq), rng.integers(0, 10, ng)
    q_cams, g_cams = rng.integers(1, 4, nq), rng.integers(1, 4, ng)
    r = evaluate(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=50, chunk_size=8)
    ap, cmc, inp, valid = reference(distmat, q_pids, g_pids, q_cams, g_cams, 50)
    assert r["num_valid_queries"] == valid
    assert abs(r["mAP"] - ap) < 1e-9 and abs(r["mINP"] - inp) < 1e-9
    np.testing.assert_allclose(r["cmc"], cmc, atol=1e-9)


def test_float32_distances_and_integer_distances_are_accepted() -> None:
    distmat = np.array([[3, 1, 2]])
    args = (np.array([1]), np.array([1, 2, 1]), np.array([1]), np.array([2, 2, 3]))
    a = evaluate(distmat, *args, max_rank=3)
    b = evaluate(distmat.astype(np.float32), *args, max_rank=3)
    assert a == b and a["mAP"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_non_finite_distances_are_refused() -> None:
    distmat = np.array([[0.1, np.nan, np.inf]])
    with pytest.raises(ValueError, match="2 entries are NaN or infinite"):
        evaluate(distmat, np.array([1]), np.array([1, 2, 1]), np.array([1]), np.array([2, 2, 3]))


def test_float16_distances_are_accepted() -> None:
    distmat = np.array([[3, 1, 2]], dtype=np.float16)
    r = evaluate(distmat, np.array([1]), np.array([1, 2, 1]), np.array([1]), np.array([2, 2, 3]), max_rank=3)
    assert r["mAP"] == pytest.approx((1 / 2 + 2 / 3) / 2)


def test_huge_finite_float32_distances_are_not_mistaken_for_non_finite() -> None:
    distmat = np.array([[3e38, 1e38, 2e38, 3.3e38]], dtype=np.float32)     # the row's sum overflows
    r = evaluate(distmat, np.array([1]), np.array([1, 2, 1, 3]), np.array([1]), np.array([2, 2, 3, 3]), max_rank=4)
    assert r["mAP"] == pytest.approx((1 / 2 + 2 / 3) / 2)


@pytest.mark.parametrize("removal", [True, False], ids=["standard", "authors"])
@pytest.mark.parametrize("seed", range(3))
def test_per_query_ap_matches_scikit_learn(seed: int, removal: bool) -> None:
    """A second, independent oracle: sklearn's average_precision_score on each query's kept gallery (scores =
    negated distances; no ties here, where sklearn would group tied scores instead of ordering them)."""
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(200 + seed)
    nq, ng = 25, 120
    distmat = rng.permutation(np.linspace(0.0, 4.0, nq * ng)).reshape(nq, ng)
    q_pids, g_pids = rng.integers(0, 6, nq), rng.integers(0, 6, ng)
    q_cams, g_cams = rng.integers(1, 4, nq), rng.integers(1, 4, ng)
    checked = 0
    for i in range(nq):
        kept = ~((g_pids == q_pids[i]) & (g_cams == q_cams[i])) if removal else np.ones(ng, dtype=bool)
        truth = g_pids[kept] == q_pids[i]
        if not truth.any():
            continue
        expected = average_precision_score(truth, -distmat[i, kept])
        got = evaluate(distmat[i:i + 1], q_pids[i:i + 1], g_pids, q_cams[i:i + 1], g_cams,
                       same_camera_removal=removal)["mAP"]
        assert abs(got - expected) < 1e-9, i
        checked += 1
    assert checked > 15


def test_cli_keep_same_camera_and_rerank_flags_reach_the_computation(tmp_path: Path,
                                                                      capsys: pytest.CaptureFixture) -> None:
    from maskreid.evaluation.reranking import k_reciprocal_rerank

    rng = np.random.default_rng(3)
    q, g = rng.normal(size=(6, 4)), rng.normal(size=(30, 4))
    q_pids, g_pids = rng.integers(0, 3, 6), rng.integers(0, 3, 30)
    q_cams, g_cams = rng.integers(1, 3, 6), rng.integers(1, 3, 30)
    path = tmp_path / "case.npz"
    arrays = dict(distmat=euclidean_distances(q, g), q_pids=q_pids, g_pids=g_pids, q_camids=q_cams, g_camids=g_cams,
                  q_q=euclidean_distances(q, q), g_g=euclidean_distances(g, g))
    np.savez(path, **arrays)

    def cli(*flags: str) -> dict:
        assert cli_main(["evaluate-distances", str(path), "--max-rank", "5", *flags]) == 0
        return json.loads(capsys.readouterr().out)

    labels = (q_pids, g_pids, q_cams, g_cams)
    standard = evaluate(arrays["distmat"], *labels, max_rank=5)
    authors = evaluate(arrays["distmat"], *labels, max_rank=5, same_camera_removal=False)
    assert standard["mAP"] != authors["mAP"]
    assert cli()["mAP"] == pytest.approx(standard["mAP"], abs=1e-12)
    assert cli("--keep-same-camera")["mAP"] == pytest.approx(authors["mAP"], abs=1e-12)
    for k1, k2, lam in ((20, 6, 0.3), (4, 2, 0.6)):
        reranked = k_reciprocal_rerank(arrays["distmat"], arrays["q_q"], arrays["g_g"], k1, k2, lam)
        expected = evaluate(reranked, *labels, max_rank=5)
        got = cli("--rerank", "--k1", str(k1), "--k2", str(k2), "--lambda", str(lam))
        assert got["mAP"] == pytest.approx(expected["mAP"], abs=1e-9) and got["cmc"] == pytest.approx(expected["cmc"])
    assert cli("--rerank", "--k1", "4", "--k2", "2", "--lambda", "0.6")["mAP"] != \
        cli("--rerank", "--k1", "20", "--k2", "6", "--lambda", "0.3")["mAP"]


def test_the_installed_maskreid_command_runs(tmp_path: Path) -> None:
    """The console script pip installed (not `python -m`): its entry point and argument parsing."""
    import shutil

    exe = shutil.which("maskreid", path=str(Path(sys.executable).parent))
    assert exe is not None, "the `maskreid` entry point is not installed next to this Python"
    result = subprocess.run([exe, "evaluate-distances", str(_npz(tmp_path)), "--max-rank", "4"],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["mAP"] == pytest.approx(0.5)
    bad = subprocess.run([exe, "evaluate-distances", str(tmp_path / "missing.npz")], capture_output=True, text=True)
    assert bad.returncode == 1 and "missing.npz" in bad.stderr and "Traceback" not in bad.stderr


def test_one_scoring_path_is_the_steps_written_out() -> None:
    """score_features = distances, junk columns left out (standard protocol), re-ranking over the ranked images,
    evaluate, percent summary; the authors' protocol keeps junk and same-camera images and is not re-ranked."""
    from maskreid.evaluation.reranking import k_reciprocal_rerank
    from maskreid.evaluation.scoring import Scoring, score_distances, score_features

    rng = np.random.default_rng(3)
    q, g = rng.normal(size=(12, 8)), rng.normal(size=(40, 8))
    q_pids, q_cams = rng.integers(1, 6, 12), np.ones(12, dtype=int)
    g_pids, g_cams = rng.integers(1, 6, 40), rng.integers(2, 4, 40)
    g_pids[[0, 7, 19]] = -1                                          # junk
    kept = g_pids != -1
    plain = Scoring(max_rank=10, ranks=(1, 5))
    got = score_features(q, g, q_pids, g_pids, q_cams, g_cams, plain)
    want = evaluate(euclidean_distances(q, g)[:, kept], q_pids, g_pids[kept], q_cams, g_cams[kept], 10)
    assert got.raw["mAP"] == want["mAP"] and list(got.raw["cmc"]) == list(want["cmc"])
    assert got.summary["mAP"] == round(100 * want["mAP"], 4) and got.distances.shape == (12, 37)
    reranked = score_features(q, g, q_pids, g_pids, q_cams, g_cams, Scoring(max_rank=10, ranks=(1,), rerank=True,
                                                                              rerank_k1=5, rerank_k2=2))
    by_hand = k_reciprocal_rerank(euclidean_distances(q, g[kept]), euclidean_distances(q, q),
                                  euclidean_distances(g[kept], g[kept]), 5, 2, 0.3)
    assert np.array_equal(reranked.distances, by_hand)
    authors = score_features(q, g, q_pids, g_pids, q_cams, g_cams, plain, protocol="authors")
    whole = evaluate(euclidean_distances(q, g), q_pids, g_pids, q_cams, g_cams, 10, same_camera_removal=False)
    assert authors.raw["mAP"] == whole["mAP"] and authors.gallery_kept.all()
    # a distance matrix from elsewhere: the standard protocol leaves its junk columns out too
    from_matrix = score_distances(euclidean_distances(q, g), q_pids, g_pids, q_cams, g_cams, plain)
    assert from_matrix.raw["mAP"] == want["mAP"]
    with pytest.raises(ValueError, match="protocol"):
        score_distances(euclidean_distances(q, g), q_pids, g_pids, q_cams, g_cams, plain, protocol="mine")


@pytest.mark.parametrize("removal", [True, False], ids=["standard", "authors"])
def test_per_query_outcomes_are_each_querys_ap_and_first_match(removal: bool) -> None:
    """evaluate(per_query=True): every query's AP (sklearn's, on its kept gallery) and the rank of its first
    true match (a plain sort), NaN and 0 for a query without one; their mean is the mAP."""
    from sklearn.metrics import average_precision_score

    rng = np.random.default_rng(7)
    nq, ng = 30, 150
    distmat = rng.permutation(np.linspace(0.0, 4.0, nq * ng)).reshape(nq, ng)
    q_pids, g_pids = rng.integers(0, 8, nq), rng.integers(0, 7, ng)       # id 7 never in the gallery
    q_pids[0] = 7
    q_cams, g_cams = rng.integers(1, 4, nq), rng.integers(1, 4, ng)
    result = evaluate(distmat, q_pids, g_pids, q_cams, g_cams, same_camera_removal=removal, per_query=True)
    for i in range(nq):
        kept = ~((g_pids == q_pids[i]) & (g_cams == q_cams[i])) if removal else np.ones(ng, dtype=bool)
        truth = g_pids[kept][np.argsort(distmat[i, kept])] == q_pids[i]
        if not truth.any():
            assert np.isnan(result["query_ap"][i]) and result["query_first_rank"][i] == 0
            continue
        assert result["query_ap"][i] == pytest.approx(average_precision_score(g_pids[kept] == q_pids[i],
                                                                              -distmat[i, kept]), abs=1e-9)
        assert result["query_first_rank"][i] == np.argmax(truth) + 1
    assert np.nanmean(result["query_ap"]) == pytest.approx(result["mAP"], abs=1e-12)
    assert "query_ap" not in evaluate(distmat, q_pids, g_pids, q_cams, g_cams)

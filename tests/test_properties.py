"""Property tests (hypothesis, derandomised so the suite stays deterministic)."""

import numpy as np
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from maskreid.data.market import DatasetFormatError, parse_market_name
from maskreid.evaluation.metrics import evaluate
from tests.test_evaluation import reference

SETTINGS = settings(derandomize=True, max_examples=60, deadline=None)


@SETTINGS
@given(pid=st.one_of(st.just(-1), st.integers(0, 9999)), cam=st.integers(1, 99), seq=st.integers(1, 9),
       frame=st.integers(0, 999999), box=st.integers(0, 99), ext=st.sampled_from(["jpg", "png", "jpeg"]))
def test_market_names_round_trip(pid: int, cam: int, seq: int, frame: int, box: int, ext: str) -> None:
    name = f"{pid:04d}_c{cam}s{seq}_{frame:06d}_{box:02d}.{ext}" if pid >= 0 else f"-1_c{cam}s{seq}_{frame:06d}.{ext}"
    parsed = parse_market_name(name)
    assert (parsed.pid, parsed.camid) == (pid, cam)


def _expected_ids(name: str) -> tuple[int, int] | None:
    """An oracle written without the parser's regex: `PPPP_cC...` with PPPP = -1 or decimal digits and C
    decimal digits; None for any other name."""
    head, sep, rest = name.partition("_c")
    cam_digits = ""
    for ch in rest:
        if not ch.isdecimal():
            break
        cam_digits += ch
    if not sep or not cam_digits or not (head == "-1" or (head and head.isdecimal())):
        return None
    return int(head), int(cam_digits)


@settings(derandomize=True, max_examples=400, deadline=None)
@given(st.one_of(st.text(max_size=30),
                 st.from_regex(r"(-|x)?[0-9]{0,4}(_|-)?c?[0-9]{0,3}[a-z0-9_.]{0,6}", fullmatch=True)))
@example("0002_c1s1_000451_03.jpg")
@example("-1_c3s2_000101_01.jpg")
@example("0001_cX.jpg")
@example("x0001_c1s1.jpg")
@example("-2_c1s1.jpg")
@example("0001c1s1.jpg")
def test_any_other_name_fails_with_the_expected_form(name: str) -> None:
    expected = _expected_ids(name)
    if expected is None:
        with pytest.raises(DatasetFormatError, match="PPPP_cC"):
            parse_market_name(name)
    else:
        parsed = parse_market_name(name)
        assert (parsed.pid, parsed.camid) == expected


@st.composite
def ranking_cases(draw, ties: bool):
    nq, ng = draw(st.integers(1, 12)), draw(st.integers(1, 30))
    seed = draw(st.integers(0, 2 ** 31))
    rng = np.random.default_rng(seed)
    distmat = (rng.integers(0, 4, (nq, ng)).astype(float) if ties
               else np.stack([rng.permutation(ng) for _ in range(nq)]).astype(float))
    distmat = (distmat - 1.5).astype(draw(st.sampled_from([np.float64, np.float32])))  # both paths; negatives
    q_pids, g_pids = rng.integers(0, 4, nq), rng.integers(0, 4, ng)
    q_cams, g_cams = rng.integers(1, 3, nq), rng.integers(1, 3, ng)
    g_pids[0], g_cams[0] = q_pids[0], 3 - q_cams[0]          # at least one valid query
    return distmat, q_pids, g_pids, q_cams, g_cams, draw(st.integers(1, 40))


@SETTINGS
@given(ranking_cases(ties=True))
def test_metrics_are_fractions_cmc_is_monotone_and_match_the_reference(case) -> None:
    distmat, q_pids, g_pids, q_cams, g_cams, max_rank = case
    r = evaluate(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=max_rank, chunk_size=5)
    cmc = np.array(r["cmc"])
    assert 0 <= r["mAP"] <= 1 and 0 <= r["mINP"] <= 1 and ((cmc >= 0) & (cmc <= 1)).all()
    assert (np.diff(cmc) >= 0).all() and len(cmc) == max_rank
    ap, ref_cmc, inp, valid = reference(distmat, q_pids, g_pids, q_cams, g_cams, max_rank)
    assert r["num_valid_queries"] == valid
    assert r["mAP"] == pytest.approx(ap, abs=1e-9) and r["mINP"] == pytest.approx(inp, abs=1e-9)
    np.testing.assert_allclose(cmc, ref_cmc, atol=1e-9)


@SETTINGS
@given(ranking_cases(ties=False), st.integers(0, 2 ** 31))
def test_invariant_to_permuting_the_gallery(case, seed: int) -> None:
    distmat, q_pids, g_pids, q_cams, g_cams, max_rank = case
    perm = np.random.default_rng(seed).permutation(distmat.shape[1])
    a = evaluate(distmat, q_pids, g_pids, q_cams, g_cams, max_rank=max_rank)
    b = evaluate(distmat[:, perm], q_pids, g_pids[perm], q_cams, g_cams[perm], max_rank=max_rank)
    assert a["mAP"] == pytest.approx(b["mAP"]) and a["mINP"] == pytest.approx(b["mINP"])
    assert a["cmc"] == pytest.approx(b["cmc"])

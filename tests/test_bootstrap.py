"""The bootstrap over query identities against a plain loop over the same resamples, and `maskreid compare`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from maskreid.evaluation.bootstrap import QueryOutcomes, intervals, paired_difference


def _case(seed: int, queries: int = 60, ids: int = 17) -> QueryOutcomes:
    rng = np.random.default_rng(seed)
    pids = rng.integers(1, ids + 1, queries) * 7          # identities are labels, not 0..n-1
    ap = rng.random(queries)
    ap[rng.random(queries) < 0.1] = np.nan                 # queries without a true match are not scored
    first = np.where(np.isnan(ap), 0, rng.integers(1, 6, queries))
    return QueryOutcomes(pids, ap, first)


def _loop(outcomes: QueryOutcomes, metric: str, resamples: int, seed: int,
          other: QueryOutcomes | None = None) -> np.ndarray:
    """Each resample written out: draw identities, gather all their queries (again for a repeat), average."""
    scored = ~np.isnan(outcomes.ap)
    pids = outcomes.pids[scored]
    values = 100 * (outcomes.ap[scored] if metric == "mAP" else (outcomes.first_rank[scored] == 1))
    if other is not None:
        values = 100 * (other.ap[scored] if metric == "mAP" else (other.first_rank[scored] == 1)) - values
    ids = np.unique(pids)
    picks = np.random.default_rng(seed).integers(0, len(ids), size=(resamples, len(ids)))
    out = []
    for row in picks:
        gathered = np.concatenate([values[pids == ids[i]] for i in row])
        out.append(gathered.mean())
    return np.asarray(out)


@pytest.mark.parametrize("metric", ["mAP", "rank1"])
def test_intervals_are_the_loops_percentiles(metric: str) -> None:
    case = _case(1)
    samples = _loop(case, metric, 300, 5)
    expected = tuple(np.round(np.percentile(samples, [2.5, 97.5]), 4))
    assert intervals(case, (metric,), 300, 5)[metric] == pytest.approx(expected, abs=1e-9)


def test_paired_difference_resamples_both_models_alike() -> None:
    a, b = _case(1), _case(2)
    b = QueryOutcomes(a.pids, np.where(np.isnan(a.ap), np.nan, np.nan_to_num(b.ap)),
                      np.where(np.isnan(a.ap), 0, np.maximum(b.first_rank, 1)))
    got = paired_difference(a, b, ("mAP", "rank1"), 300, 9)
    for metric in ("mAP", "rank1"):
        samples = _loop(a, metric, 300, 9, other=b)
        assert got[metric]["interval"] == pytest.approx(tuple(np.round(np.percentile(samples, [2.5, 97.5]), 4)))
        assert got[metric]["share_b_ahead"] == pytest.approx(np.mean(samples > 0) + 0.5 * np.mean(samples == 0),
                                                            abs=1e-4)
        assert got[metric]["difference"] == pytest.approx(got[metric]["b"] - got[metric]["a"], abs=1e-3)
    same = paired_difference(a, a, ("mAP",), 200, 0)["mAP"]          # a model against itself: exactly nothing
    assert same["difference"] == 0 and same["interval"] == (0.0, 0.0) and same["share_b_ahead"] == 0.5


def test_a_paired_comparison_needs_one_test_set() -> None:
    a = _case(1)
    with pytest.raises(ValueError, match="not on the same queries"):
        paired_difference(a, QueryOutcomes(a.pids[::-1], a.ap, a.first_rank))
    with pytest.raises(ValueError, match="metric 'rank0x'"):
        intervals(a, ("rank0x",))


def test_a_bigger_test_set_gives_a_narrower_interval() -> None:
    """The point of the interval: 100 identities pin mAP down less than 1,000 do."""
    widths = []
    for ids in (100, 1000):
        rng = np.random.default_rng(0)
        pids = np.repeat(np.arange(ids), 2)
        ap = np.repeat(rng.random(ids), 2)
        low, high = intervals(QueryOutcomes(pids, ap, np.ones(len(ap), dtype=int)), ("mAP",))["mAP"]
        widths.append(high - low)
    assert widths[1] < 0.5 * widths[0]


def test_compare_reads_per_query_files_and_says_which_is_better(tmp_path: Path) -> None:
    from maskreid.tables.compare import CompareError, compare, render

    rng = np.random.default_rng(0)
    queries = [f"{i:04d}_c1s1_{i:06d}_01.jpg" for i in range(80)]
    pids = np.arange(80) // 2 + 1
    weak = rng.random(80) * 50
    table = pd.DataFrame({"query": queries, "pid": pids, "camid": 1, "stage1_ap": weak, "stage1_first_rank": 3,
                          "stage3_ap": weak + 20, "stage3_first_rank": 1})
    table.to_csv(tmp_path / "both.csv", index=False)
    result = compare(f"{tmp_path / 'both.csv'}@stage1", f"{tmp_path / 'both.csv'}@stage3")
    assert result["metrics"]["mAP"]["difference"] == pytest.approx(20.0)
    assert result["metrics"]["mAP"]["interval"] == pytest.approx((20.0, 20.0))
    assert result["metrics"]["rank1"]["difference"] == pytest.approx(100.0) and result["identities"] == 40
    assert "B better" in render(result)
    table.iloc[::-1].to_csv(tmp_path / "reversed.csv", index=False)          # rows in another order: matched by name
    assert compare(f"{tmp_path / 'both.csv'}@stage3", f"{tmp_path / 'reversed.csv'}@stage3")["metrics"]["mAP"][
        "difference"] == 0
    table.iloc[:70].to_csv(tmp_path / "fewer.csv", index=False)
    with pytest.raises(CompareError, match="scored different queries \\(10 only in A, 0 only in B\\)"):
        compare(str(tmp_path / "both.csv"), str(tmp_path / "fewer.csv"))
    with pytest.raises(CompareError, match="no model 'stage2'; it has stage1, stage3"):
        compare(f"{tmp_path / 'both.csv'}@stage2", str(tmp_path / "both.csv"))
    table[["query", "pid"]].to_csv(tmp_path / "bare.csv", index=False)
    with pytest.raises(CompareError, match="not a per-query results file"):
        compare(str(tmp_path / "bare.csv"), str(tmp_path / "both.csv"))

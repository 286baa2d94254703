"""The ablation report from a `dvc exp show --json` listing: grouping, spread over seeds, paired differences."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest

from maskreid.cli import main as cli_main
from maskreid.tables.ablation import AblationError, runs_from_exp_show, summarize

# stage-3 mAP by (hiding, seed); rank-1 = mAP + 1, mINP = mAP / 2
MAP = {("learned", 0): 40.0, ("learned", 1): 44.0, ("learned", 2): 42.0,
       ("none", 0): 41.0, ("none", 1): 43.0, ("none", 2): 45.0,
       ("random_blocks", 0): 39.0, ("random_blocks", 1): 40.0}


def _node(name: str, hiding: str, seed: int, lambda1: float = 0.9, epochs: tuple = (30, 4, 12),
          dataset: str = "synthetic") -> dict:
    m = MAP[(hiding, seed)]
    block = {"mAP": m, "rank1": m + 1, "mINP": m / 2}
    profiles = {"quick": {f"stage{n}": {"epochs": e} for n, e in zip((1, 2, 3), epochs)}}
    return {"rev": f"rev-{name}", "name": name, "error": None, "experiments": None, "data": {
        "params": {"params.yaml": {"data": {"seed": seed, "hiding": hiding, "profile": "quick", "lambda1": lambda1,
                                            "drop_ratio": 0.3, "profiles": profiles}}},
        "metrics": {f"metrics/{dataset}.json": {"data": {"mAP": m, "stage1": {"mAP": 30.0 + seed, "rank1": 1.0,
                                                                               "mINP": 1.0}, "stage3": block}}}}}


def listing(extra: list[dict] | None = None) -> list[dict]:
    """The shape `dvc exp show --json` prints: workspace, the baseline, experiments with their revs."""
    exps = [_node(f"exp-{h}-{s}", h, s) for (h, s) in MAP if (h, s) != ("learned", 0)] + (extra or [])
    baseline = _node("main", "learned", 0)
    return [{**_node("workspace", "learned", 0), "rev": "workspace", "name": None},
            {**baseline, "experiments": [{"name": n["name"], "executor": None, "revs": [n]} for n in exps]}]


def test_runs_are_read_from_baseline_and_experiments_once_each() -> None:
    runs = runs_from_exp_show(listing())
    assert len(runs) == len(MAP)
    assert set(zip(runs.hiding, runs.seed)) == set(MAP)


def test_queued_running_and_failed_experiments_are_left_out() -> None:
    entries = listing()
    MAP[("learned", 9)] = 99.0
    try:
        unfinished = [_node(f"pending-{state}", "learned", 9) for state in ("queued", "running", "failed")]
        entries[1]["experiments"] += [{"name": n["name"], "executor": {"state": state}, "revs": [n]}
                                      for n, state in zip(unfinished, ("queued", "running", "failed"))]
        entries[1]["experiments"][0]["executor"] = {"state": "success"}
        runs = runs_from_exp_show(entries)
    finally:
        del MAP[("learned", 9)]
    assert len(runs) == len(MAP) and 9 not in set(runs.seed)      # the finished experiment was kept


def test_means_spreads_and_paired_differences() -> None:
    table, paired = summarize(runs_from_exp_show(listing()))
    learned = table[table.hiding == "learned"].iloc[0]
    assert learned.seeds == 3 and learned.mAP_mean == pytest.approx(42.0) and learned.mAP_sd == pytest.approx(2.0)
    assert learned.rank1_mean == pytest.approx(43.0) and learned.mINP_mean == pytest.approx(21.0)
    none = paired[paired.comparison == "learned - none"].iloc[0]
    # per seed: -1, +1, -3 -> mean -1, sd 2
    assert none.seeds == 3 and none.mAP_diff_mean == pytest.approx(-1.0) and none.mAP_diff_sd == pytest.approx(2.0)
    blocks = paired[paired.comparison == "learned - random_blocks"].iloc[0]
    assert blocks.seeds == 2 and blocks.mAP_diff_mean == pytest.approx(2.5)      # only the seeds both ran


def test_runs_with_other_method_settings_are_refused() -> None:
    MAP[("learned", 3)] = 10.0
    try:
        with pytest.raises(AblationError, match="differ in profile, F's width or learning rate, lambda1 or drop_ratio"):
            summarize(runs_from_exp_show(listing([_node("odd", "learned", 3, lambda1=0.5)])))
    finally:
        del MAP[("learned", 3)]


def test_cli_writes_the_report_files(tmp_path: Path) -> None:
    source = tmp_path / "exp_show.json"
    source.write_text(json.dumps(listing()))
    assert cli_main(["ablation", "--exp-show", str(source), "-o", str(tmp_path / "reports")]) == 0
    md = (tmp_path / "reports" / "ablation.md").read_text()
    assert "| synthetic | 30/4/12 | learned | 3 (0 1 2) | 42.00 ± 2.00 | 43.00 ± 2.00 | 21.00 ± 1.00 |" in md
    assert "| synthetic | 30/4/12 | learned - none | 3 | -1.00 ± 2.00 |" in md
    summary = pd.read_csv(tmp_path / "reports" / "ablation.csv")
    assert set(summary.kind) == {"per hiding", "paired difference"}
    assert len(pd.read_csv(tmp_path / "reports" / "ablation_runs.csv")) == len(MAP)


def test_cli_explains_an_empty_or_broken_listing(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "empty.json").write_text("[]")
    assert cli_main(["ablation", "--exp-show", str(tmp_path / "empty.json"), "-o", str(tmp_path)]) == 1
    assert "no experiment with stage-3 metrics" in capsys.readouterr().err
    (tmp_path / "bad.json").write_text("{not json")
    assert cli_main(["ablation", "--exp-show", str(tmp_path / "bad.json"), "-o", str(tmp_path)]) == 1
    assert "not a readable `dvc exp show --json` listing" in capsys.readouterr().err
    assert not (tmp_path / "ablation.md").exists()


def test_a_shortened_schedule_and_another_repository_are_reported_beside_not_mixed(tmp_path: Path) -> None:
    """Two listings (e.g. a sweep run in another clone) on the CLI; runs with other epochs form their own rows."""
    (tmp_path / "a.json").write_text(json.dumps(listing()))
    short = [_node(f"short-{h}-{s}", h, s, epochs=(15, 2, 6), dataset="cuhk01") for (h, s) in MAP if h != "random_blocks"]
    (tmp_path / "b.json").write_text(json.dumps([{**short[0], "experiments": [
        {"name": n["name"], "executor": None, "revs": [n]} for n in short[1:]]}]))
    assert cli_main(["ablation", "--exp-show", str(tmp_path / "a.json"), "--exp-show", str(tmp_path / "b.json"),
                     "-o", str(tmp_path)]) == 0
    md = (tmp_path / "ablation.md").read_text()
    assert "| cuhk01 | 15/2/6 | learned | 3 (0 1 2) | 42.00 ± 2.00 |" in md
    assert "| cuhk01 | 15/2/6 | learned - none | 3 | -1.00 ± 2.00 |" in md
    assert "| synthetic | 30/4/12 | learned | 3 (0 1 2) |" in md


def test_runs_at_another_learning_rate_or_width_are_not_seeds_of_the_same_setting() -> None:
    """A run whose F trained at another rate (or width) with the same epochs is refused, not averaged in."""
    MAP[("learned", 3)] = 1.5
    try:
        odd = _node("odd", "learned", 3)
        odd["data"]["params"]["params.yaml"]["data"]["profiles"]["quick"]["stage1"]["lr"] = 0.0008
        runs = runs_from_exp_show(listing([odd]))
        assert set(runs.training) == {"width 64, lr ? constant", "width 64, lr 0.0008 constant"}
        with pytest.raises(AblationError, match="F's width or learning rate"):
            summarize(runs)
    finally:
        del MAP[("learned", 3)]


def test_paired_interval_is_the_t_interval_of_the_mean() -> None:
    """Against the textbook formula with the t quantiles written out (n = 3: 4.302653, n = 7: 2.446912)."""
    from maskreid.tables.ablation import interval_text, paired_interval

    for values, quantile in (([1.0, -0.5, 2.0], 4.302653), ([0.3, -1.2, 0.8, 1.9, -0.4, 0.1, 0.6], 2.446912)):
        n = len(values)
        mean = sum(values) / n
        sd = (sum((v - mean) ** 2 for v in values) / (n - 1)) ** 0.5
        got = paired_interval(values)
        assert got[0] == pytest.approx(mean)
        assert got[1] == pytest.approx(mean - quantile * sd / n ** 0.5, abs=1e-5)
        assert got[2] == pytest.approx(mean + quantile * sd / n ** 0.5, abs=1e-5)
    single = paired_interval([0.4])
    assert single[0] == 0.4 and single[1] != single[1] and interval_text(*single[1:]) == ""
    assert interval_text(-1.234, 0.5) == "[-1.23, +0.50]"


def test_the_test_sets_share_is_added_from_each_runs_per_query_results() -> None:
    """With every run's metrics/<ds>.queries.csv at hand: the per-query difference learned - none averaged over
    the seeds, its sd over identity resamples (written out here as a loop), and the interval
    mean ± t(2) x sqrt(sd_seeds²/3 + sd_test²). A missing file leaves that interval n/a."""
    import numpy as np
    from scipy.stats import t as student_t

    rng = np.random.default_rng(0)
    pids = np.repeat(np.arange(1, 21), 2)
    files = {}
    for hiding, seed in MAP:
        ap = np.clip(rng.normal(MAP[(hiding, seed)], 15, len(pids)), 0, 100)
        files[f"rev-exp-{hiding}-{seed}" if (hiding, seed) != ("learned", 0) else "rev-main"] = pd.DataFrame(
            {"query": [f"q{i}" for i in range(len(pids))], "pid": pids, "camid": 1, "stage1_ap": ap,
             "stage1_first_rank": 1, "stage3_ap": ap, "stage3_first_rank": rng.integers(1, 3, len(pids))})
    runs = runs_from_exp_show(listing())
    _, paired = summarize(runs, lambda rev, dataset: files.get(rev))
    none = paired[paired.comparison == "learned - none"].iloc[0]
    learned_revs = {s: ("rev-main" if s == 0 else f"rev-exp-learned-{s}") for s in range(3)}
    diff = np.mean([files[learned_revs[s]].stage3_ap - files[f"rev-exp-none-{s}"].stage3_ap for s in range(3)], 0)
    ids = np.unique(pids)
    picks = np.random.default_rng(0).integers(0, len(ids), size=(1000, len(ids)))
    means = [np.concatenate([diff[pids == ids[i]] for i in row]).mean() for row in picks]
    assert none.mAP_test_sd == pytest.approx(np.std(means, ddof=1), rel=1e-9)
    half = student_t.ppf(0.975, 2) * np.sqrt(none.mAP_diff_sd ** 2 / 3 + none.mAP_test_sd ** 2)
    assert (none.mAP_combined_low, none.mAP_combined_high) == pytest.approx((-1 - half, -1 + half))
    assert none.mAP_combined_high - none.mAP_combined_low > none.mAP_diff_ci95_high - none.mAP_diff_ci95_low
    del files["rev-exp-none-2"]
    _, paired = summarize(runs, lambda rev, dataset: files.get(rev))
    assert np.isnan(paired[paired.comparison == "learned - none"].iloc[0].mAP_combined_low)

"""The masks ablation: stage-3 results per dataset and `hiding` (learned masks vs the controls), mean and spread
over seeds, and the paired differences learned - control, read from DVC experiments (`dvc exp show --json`).

Why paired: runs with the same seed share the initialisation, the stage-1 and stage-2 models and the sampling
up to stage 3, so the per-seed difference removes most of the seed-to-seed spread that a comparison of means
carries.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd

from maskreid.io import atomic_write_text
from maskreid.params import RESNET_WIDTH
from maskreid.paths import DatasetPaths

MEASURES = ("mAP", "rank1", "mINP")
RUN_COLUMNS = ["dataset", "epochs", "profile", "training", "hiding", "seed", "lambda1", "drop_ratio", "experiment", "rev",
               *[f"stage1_{m}" for m in MEASURES], *[f"stage3_{m}" for m in MEASURES]]


class AblationError(ValueError):
    """The experiment listing cannot give an ablation table; the message says why."""


def _nodes(entries: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    """Every finished revision in `dvc exp show --json`: baselines and the experiments under them; not the
    workspace (it repeats a committed or an experiment's result), nor queued, running or failed experiments
    (their listing carries the baseline's metrics)."""
    for entry in entries:
        if entry.get("rev") != "workspace":
            yield entry
        for experiment in entry.get("experiments") or []:
            state = (experiment.get("executor") or {}).get("state", "success")
            if state == "success":
                yield from _nodes(experiment.get("revs") or [])


def runs_from_exp_show(entries: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per (revision, dataset) that has stage-3 metrics: its hiding, seed and results."""
    rows = []
    for node in _nodes(entries):
        data = node.get("data") or {}
        params = ((data.get("params") or {}).get("params.yaml") or {}).get("data") or {}
        profile = _active_profile(params)
        for path, metrics in (data.get("metrics") or {}).items():
            values = (metrics or {}).get("data") or {}
            if not path.startswith("metrics/") or "stage3" not in values or "stage1" not in values:
                continue
            rows.append({"dataset": Path(path).stem, "epochs": _epochs(profile), "profile": params.get("profile"),
                         "training": _training(profile),
                         "hiding": params.get("hiding", "learned"), "seed": params.get("seed"),
                         "lambda1": params.get("lambda1"), "drop_ratio": params.get("drop_ratio"),
                         "experiment": node.get("name") or "", "rev": node.get("rev"),
                         **{f"stage1_{m}": values["stage1"].get(m) for m in MEASURES},
                         **{f"stage3_{m}": values["stage3"].get(m) for m in MEASURES}})
    runs = pd.DataFrame(rows, columns=RUN_COLUMNS)
    # the same settings twice (a committed run and an experiment that reproduced it): the results are equal
    return runs.drop_duplicates(subset=["dataset", "epochs", "profile", "training", "hiding", "seed", "lambda1",
                                        "drop_ratio"])


def _active_profile(params: dict[str, Any]) -> dict[str, Any]:
    """The block of `profiles` that `profile` names, as a run's params listing holds it ({} when absent)."""
    return (params.get("profiles") or {}).get(params.get("profile")) or {}


def _epochs(profile: dict[str, Any]) -> str:
    """The active profile's schedule, "stage1/stage2/stage3" epochs: runs with other schedules are other
    settings (a shortened sweep is reported beside, never mixed with, the full one)."""
    return "/".join(str((profile.get(f"stage{n}") or {}).get("epochs", "?")) for n in (1, 2, 3))


def _training(profile: dict[str, Any]) -> str:
    """F's width and learning rate in the active profile ("width 32, lr 0.0004 constant"): runs that differ there
    are other experiments, never seeds of one (a rate that collapses F must not be averaged with one that does
    not). Listings from before these settings existed read as the values those runs used."""
    stage1, stage3 = profile.get("stage1") or {}, profile.get("stage3") or {}
    text = (f"width {(profile.get('model') or {}).get('width', RESNET_WIDTH)}, lr {stage1.get('lr', '?')} "
            f"{stage1.get('schedule', 'constant')}")
    if stage1.get("warmup_epochs"):
        text += f", warm-up {stage1['warmup_epochs']}"
    return text + (f", stage 3 lr {stage3['lr']}" if stage3.get("lr") is not None else "")


def _mean_sd(values: pd.Series) -> tuple[float, float]:
    values = values.dropna()
    return float(values.mean()), (float(values.std(ddof=1)) if len(values) > 1 else math.nan)


QueryReader = Callable[[str, str], "pd.DataFrame | None"]     # (rev, dataset) -> metrics/<ds>.queries.csv or None


def queries_at_rev(rev: str, dataset: str) -> pd.DataFrame | None:
    """A run's per-query results as its revision holds them (None where the revision or file is not here, e.g.
    a listing saved from another clone whose experiments were not pulled)."""
    import io

    from maskreid.tables.revisions import RevisionReadError, read_at_revision

    try:
        return pd.read_csv(io.StringIO(read_at_revision(str(DatasetPaths(dataset).queries), rev)))
    except (RevisionReadError, ValueError):
        return None


def _test_set_sd(learned: pd.DataFrame, other: pd.DataFrame, seeds: list, dataset: str,
                 read: QueryReader | None) -> dict[str, float]:
    """The test set's share of the uncertainty of the mean paired difference: per query, the difference learned -
    control averaged over the seeds, then the sd of its mean over identity resamples (the same test set serves
    every seed, so this part does not shrink with more seeds). NaN where a run's per-query file is missing."""
    from maskreid.evaluation.bootstrap import QueryOutcomes, resampled_sd

    missing = {"mAP": math.nan, "rank1": math.nan}
    if read is None:
        return missing
    tables = [(read(learned.loc[s, "rev"], dataset), read(other.loc[s, "rev"], dataset)) for s in seeds]
    if any(a is None or b is None for a, b in tables):
        return missing
    order = tables[0][0]["query"]

    def outcomes(table: pd.DataFrame) -> QueryOutcomes:      # the stage-3 model's queries, in one order
        table = table.set_index("query").loc[order]
        return QueryOutcomes(table.pid.to_numpy(), table.stage3_ap.to_numpy() / 100, table.stage3_first_rank.to_numpy())

    pairs = [(outcomes(a), outcomes(b)) for a, b in tables]
    first = pairs[0][0]
    pids = first.pids[first.scored]
    return {m: resampled_sd(np.mean([a.values(m) - b.values(m) for a, b in pairs], axis=0), pids)
            for m in missing}


def combined_interval(mean: float, seed_sd: float, seeds: int, test_sd: float,
                      level: float = 0.95) -> tuple[float, float]:
    """mean ± t(seeds - 1) x sqrt(seed_sd² / seeds + test_sd²): training noise (shrinks with seeds) and the test
    set's sampling (shared by every seed) together; NaN with fewer than two seeds or no test-set part."""
    from scipy.stats import t as student_t

    if seeds < 2 or math.isnan(test_sd) or math.isnan(seed_sd):
        return math.nan, math.nan
    half = float(student_t.ppf(0.5 + level / 2, seeds - 1) * math.sqrt(seed_sd ** 2 / seeds + test_sd ** 2))
    return mean - half, mean + half


def summarize(runs: pd.DataFrame, read_queries: QueryReader | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(per dataset and hiding: n seeds, mean and sd of each measure; per dataset and control: the paired
    difference learned - control over the seeds both ran, its interval over seeds, and, where `read_queries`
    finds every run's per-query results, the interval with the test set's sampling added)."""
    if runs.empty:
        raise AblationError("no experiment with stage-3 metrics found; run e.g. `dvc exp run --queue "
                            "-S 'seed=0,1,2' -S 'hiding=learned,random_blocks,none'` and `dvc queue start`")
    keys = ["dataset", "epochs", "profile", "training", "lambda1", "drop_ratio"]
    mixed = runs.groupby(["dataset", "epochs"])[["profile", "training", "lambda1", "drop_ratio"]].nunique()
    if (mixed > 1).any(axis=None):
        raise AblationError("the experiments of one dataset and schedule differ in profile, F's width or learning "
                            "rate, lambda1 or drop_ratio:\n"
                            f"{runs[keys + ['hiding', 'seed', 'experiment']].to_string(index=False)}\n"
                            "compare like with like (remove the others with `dvc exp remove`)")
    table = []
    for (dataset, epochs, hiding), group in runs.groupby(["dataset", "epochs", "hiding"], sort=True):
        row: dict[str, Any] = {"dataset": dataset, "epochs": epochs, "hiding": hiding, "seeds": len(group),
                               "seed_list": " ".join(str(s) for s in sorted(group.seed))}
        for m in MEASURES:
            row[f"{m}_mean"], row[f"{m}_sd"] = _mean_sd(group[f"stage3_{m}"])
        row["stage1_mAP_mean"], row["stage1_mAP_sd"] = _mean_sd(group["stage1_mAP"])
        table.append(row)
    paired = []
    for (dataset, epochs), group in runs.groupby(["dataset", "epochs"], sort=True):
        learned = group[group.hiding == "learned"].set_index("seed")
        for control in sorted(set(group.hiding) - {"learned"}):
            other = group[group.hiding == control].set_index("seed")
            seeds = sorted(set(learned.index) & set(other.index))
            if not seeds:
                continue
            row = {"dataset": dataset, "epochs": epochs, "comparison": f"learned - {control}", "seeds": len(seeds)}
            for m in MEASURES:
                diff = learned.loc[seeds, f"stage3_{m}"] - other.loc[seeds, f"stage3_{m}"]
                row[f"{m}_diff_mean"], row[f"{m}_diff_sd"] = _mean_sd(diff)
                _, row[f"{m}_diff_ci95_low"], row[f"{m}_diff_ci95_high"] = paired_interval(diff)
            for m, test_sd in _test_set_sd(learned, other, seeds, dataset, read_queries).items():
                row[f"{m}_test_sd"] = test_sd
                row[f"{m}_combined_low"], row[f"{m}_combined_high"] = combined_interval(
                    row[f"{m}_diff_mean"], row[f"{m}_diff_sd"], len(seeds), test_sd)
            paired.append(row)
    return pd.DataFrame(table), pd.DataFrame(paired)


def paired_interval(differences: pd.Series | list[float], level: float = 0.95) -> tuple[float, float, float]:
    """(mean, low, high): the t-based confidence interval of the mean of paired differences over seeds
    (n - 1 degrees of freedom); NaN bounds with fewer than two seeds."""
    from scipy.stats import t as student_t

    values = pd.Series(differences, dtype=float).dropna()
    mean = float(values.mean()) if len(values) else float("nan")
    if len(values) < 2:
        return mean, float("nan"), float("nan")
    half = float(student_t.ppf(0.5 + level / 2, len(values) - 1) * values.std(ddof=1) / len(values) ** 0.5)
    return mean, mean - half, mean + half


def interval_text(low: float, high: float, digits: int = 2) -> str:
    return "" if low != low else f"[{low:+.{digits}f}, {high:+.{digits}f}]"


def plus_minus(mean: float, sd: float, digits: int = 2) -> str:
    return f"{mean:.{digits}f}" if math.isnan(sd) else f"{mean:.{digits}f} ± {sd:.{digits}f}"


def render_markdown(table: pd.DataFrame, paired: pd.DataFrame, runs: pd.DataFrame) -> str:
    lines = ["# Do the learned masks help? Stage 3 with learned hiding against the controls",
             "",
             "Regenerated by `maskreid ablation` from the DVC experiments (`dvc exp show --json`). Standard protocol,",
             "stage-3 model, percent; mean ± sample standard deviation over seeds (the `seed` parameter: initialisation,",
             "sampling, augmentation; the dataset draw stays fixed). `none` = stage 3 trained on original images only (the",
             "same schedule: the \"just train longer\" control); `random_blocks` / `random_pixels` = as many pixels hidden as",
             "the learned masks hide, chosen without M. Epochs: stage 1 / stage 2 / stage 3 of the run's profile (a",
             "shortened schedule is a setting of its own).",
             "",
             "| dataset | epochs | hiding | seeds | mAP | rank-1 | mINP | stage-1 mAP (same seeds) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in table.itertuples():
        lines.append(f"| {r.dataset} | {r.epochs} | {r.hiding} | {r.seeds} ({r.seed_list}) | {plus_minus(r.mAP_mean, r.mAP_sd)} | "
                     f"{plus_minus(r.rank1_mean, r.rank1_sd)} | {plus_minus(r.mINP_mean, r.mINP_sd)} | "
                     f"{plus_minus(r.stage1_mAP_mean, r.stage1_mAP_sd)} |")
    lines += ["", "Paired differences (same seed, so the same stage-1 and stage-2 models): mean ± sd over seeds; the",
              "95% confidence interval of the mean over seeds (t-based, seeds - 1 degrees of freedom: training noise",
              "only, on this test set); and the interval with the test set's sampling added (\"+ test set\": a bootstrap",
              "over query identities of the per-query difference averaged over seeds, which more seeds do not shrink;",
              "mean ± t x sqrt(sd²/seeds + test-set sd²); n/a where a run's metrics/<ds>.queries.csv is not in the",
              "repository). An interval that holds 0 is no evidence of a difference.", "",
              "| dataset | epochs | comparison | seeds | mAP | mAP 95% CI | + test set | rank-1 | rank-1 95% CI | "
              "+ test set | mINP |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in paired.itertuples():
        lines.append(f"| {r.dataset} | {r.epochs} | {r.comparison} | {r.seeds} | {plus_minus(r.mAP_diff_mean, r.mAP_diff_sd)} | "
                     f"{interval_text(r.mAP_diff_ci95_low, r.mAP_diff_ci95_high)} | "
                     f"{interval_text(r.mAP_combined_low, r.mAP_combined_high) or 'n/a'} | "
                     f"{plus_minus(r.rank1_diff_mean, r.rank1_diff_sd)} | "
                     f"{interval_text(r.rank1_diff_ci95_low, r.rank1_diff_ci95_high)} | "
                     f"{interval_text(r.rank1_combined_low, r.rank1_combined_high) or 'n/a'} | "
                     f"{plus_minus(r.mINP_diff_mean, r.mINP_diff_sd)} |")
    shared = runs.groupby(["dataset", "epochs"], sort=True).first()
    settings = "; ".join(f"{d} ({e}): profile `{r.profile}`, F at {r.training}, lambda1 {r.lambda1}, "
                         f"drop_ratio {r.drop_ratio}"
                         for (d, e), r in shared.iterrows())
    lines += ["", f"Settings shared by the runs of each row group: {settings}. Every run: `reports/ablation_runs.csv`.", ""]
    return "\n".join(lines)


def write_ablation(entries: list[dict[str, Any]], out_dir: Path,
                   read_queries: QueryReader | None = queries_at_rev) -> pd.DataFrame:
    """reports/ablation.md, ablation.csv (the summary) and ablation_runs.csv (every run) from exp show; each run's
    per-query results read at its revision where this repository has it (`read_queries`)."""
    runs = runs_from_exp_show(entries)
    table, paired = summarize(runs, read_queries)
    atomic_write_text(out_dir / "ablation_runs.csv",
                      runs.sort_values(["dataset", "epochs", "hiding", "seed"]).to_csv(index=False))
    summary = pd.concat([table.assign(kind="per hiding"), paired.assign(kind="paired difference")], ignore_index=True)
    atomic_write_text(out_dir / "ablation.csv", summary.to_csv(index=False, float_format="%.4f"))
    atomic_write_text(out_dir / "ablation.md", render_markdown(table, paired, runs))
    return summary


def load_exp_show(path: Path) -> list[dict[str, Any]]:
    try:
        entries = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise AblationError(f"{path}: not a readable `dvc exp show --json` listing ({err})") from err
    if not isinstance(entries, list):
        raise AblationError(f"{path}: expected the list `dvc exp show --json` prints, got {type(entries).__name__}")
    return entries

"""`maskreid compare A B`: is B better than A on the same test set, and how sure is that? Reads the per-query
results the evaluate stage writes (metrics/<ds>.queries.csv, one AP and first-match rank per query and model)
or `maskreid evaluate --per-query` writes, from a file or from any git revision or DVC experiment of the
project, and gives the paired bootstrap difference over query identities (maskreid.evaluation.bootstrap).

A side is `SOURCE[@MODEL]`: SOURCE is a CSV file, `.` (this workspace's metrics/<ds>.queries.csv) or a git
revision / DVC experiment name (that file as the experiment left it); MODEL is a model column of the file
(stage1, stage3, or the name `maskreid evaluate` gave); without it, the file's only model, else stage3.
"""

from __future__ import annotations

import io
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import pandas as pd

from maskreid.evaluation.bootstrap import RESAMPLES, QueryOutcomes, paired_difference
from maskreid.tables.revisions import RevisionReadError, read_at_revision

_SIDE = re.compile(r"^(?P<source>.+?)(?:@(?P<model>[A-Za-z0-9_.-]+))?$")
KEY_COLUMNS = ("query", "pid", "camid")


class CompareError(ValueError):
    """The two sides cannot be compared; the message names the side and what is wrong."""


@dataclass
class Side:
    text: str
    table: pd.DataFrame
    model: str


def per_query_table(paths: Sequence[str], camids: np.ndarray, models: dict[str, QueryOutcomes]) -> pd.DataFrame:
    """The file compare reads: one row per query (file name, pid, camid), then per model its AP (percent; empty:
    no true match) and first true-match rank (0: none). Written by the evaluate stage and `maskreid evaluate`."""
    first = next(iter(models.values()))
    table = pd.DataFrame({"query": [Path(p).name for p in paths], "pid": first.pids, "camid": camids})
    for name, outcomes in models.items():
        table[f"{name}_ap"] = np.round(100 * np.asarray(outcomes.ap, dtype=float), 6)
        table[f"{name}_first_rank"] = outcomes.first_rank
    return table


def per_query_models(table: pd.DataFrame) -> list[str]:
    """The models of a per-query table: every `<model>_ap` column with its `<model>_first_rank`."""
    return [c[:-3] for c in table.columns if c.endswith("_ap") and f"{c[:-3]}_first_rank" in table.columns]


def _read(source: str, dataset: str) -> tuple[pd.DataFrame, str]:
    file = Path(source)
    if file.is_file():
        return pd.read_csv(file), str(file)
    relative = f"metrics/{dataset}.queries.csv"
    if source == ".":
        if not Path(relative).is_file():
            raise CompareError(f"{relative}: not found here; run `dvc repro` (or give a CSV file)")
        return pd.read_csv(relative), relative
    try:
        text = read_at_revision(relative, source)
    except RevisionReadError as err:
        raise CompareError(f"{source}: neither a file nor a revision or experiment with {relative} "
                           f"({err.reason})") from err
    return pd.read_csv(io.StringIO(text)), f"{source}:{relative}"


def load_side(text: str, dataset: str) -> Side:
    match = _SIDE.match(text)
    source, model = match.group("source"), match.group("model")
    if model is not None and Path(text).is_file():
        source, model = text, None
    table, where = _read(source, dataset)
    missing = [c for c in KEY_COLUMNS if c not in table.columns]
    models = per_query_models(table)
    if missing or not models:
        raise CompareError(f"{where}: not a per-query results file (needs columns query, pid, camid and "
                           f"<model>_ap, <model>_first_rank; missing {missing or 'every model column'})")
    if model is None:
        model = models[0] if len(models) == 1 else "stage3"
    if model not in models:
        raise CompareError(f"{where}: no model {model!r}; it has {', '.join(models)} (choose with SOURCE@MODEL)")
    if table["query"].duplicated().any():
        raise CompareError(f"{where}: query names repeat ({table['query'][table['query'].duplicated()].iloc[0]}); "
                           "a paired comparison matches queries by name")
    return Side(text, table, model)


def _outcomes(side: Side, order: pd.Index) -> QueryOutcomes:
    table = side.table.set_index("query").loc[order]
    return QueryOutcomes(table["pid"].to_numpy(), table[f"{side.model}_ap"].to_numpy(float) / 100,
                         table[f"{side.model}_first_rank"].to_numpy())


def compare(a_text: str, b_text: str, dataset: str = "synthetic", metrics: Sequence[str] = ("mAP", "rank1"),
            resamples: int = RESAMPLES, seed: int = 0) -> dict[str, Any]:
    """B - A on the queries both scored: differences, intervals, share of resamples with B ahead."""
    a, b = load_side(a_text, dataset), load_side(b_text, dataset)
    names_a, names_b = set(a.table["query"]), set(b.table["query"])
    if names_a != names_b:
        raise CompareError(f"{a.text} and {b.text} scored different queries ({len(names_a - names_b)} only in A, "
                           f"{len(names_b - names_a)} only in B); a paired comparison needs one test set")
    order = pd.Index(sorted(names_a))
    first, second = _outcomes(a, order), _outcomes(b, order)
    if not np.array_equal(first.pids, second.pids):
        raise CompareError(f"{a.text} and {b.text} give the same query files different person ids")
    try:
        result = paired_difference(first, second, metrics, resamples, seed)
    except ValueError as err:
        raise CompareError(f"{a.text} vs {b.text}: {err}") from err
    scored = first.scored
    return {"a": f"{a.text} ({a.model})", "b": f"{b.text} ({b.model})", "queries": int(scored.sum()),
            "identities": int(len(np.unique(first.pids[scored]))), "resamples": resamples, "seed": seed,
            "metrics": result}


def render(result: dict[str, Any]) -> str:
    """A plain-text table of `compare`'s result."""
    lines = [f"A: {result['a']}", f"B: {result['b']}",
             f"paired bootstrap over {result['identities']} query identities ({result['queries']} queries), "
             f"{result['resamples']} resamples, seed {result['seed']}",
             f"{'metric':<8} {'A':>8} {'B':>8} {'B - A':>8}  {'95% interval':<18} B ahead in"]
    for metric, r in result["metrics"].items():
        low, high = r["interval"]
        verdict = "B better" if low > 0 else "A better" if high < 0 else "no difference shown"
        lines.append(f"{metric:<8} {r['a']:>8.2f} {r['b']:>8.2f} {r['difference']:>+8.2f}  "
                     f"[{low:+.2f}, {high:+.2f}]{'':<3} {100 * r['share_b_ahead']:.1f}% of resamples: {verdict}")
    return "\n".join(lines)

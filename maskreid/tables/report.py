"""Table 1 of the paper, regenerated: the published rows, then this run's rows from metrics/<ds>.json.

Benchmarks that were not run are shown as "not run", never as zeros. Both protocols are reported, labelled,
so readers can see how much of a rank-1 comes from same-camera matches.
"""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from maskreid.io import atomic_write_text

BENCHMARKS = {"market1501": "Market1501", "dukemtmcreid": "DukeMTMC-reID", "cuhk03_labeled": "CUHK03 (L)",
              "cuhk03_detected": "CUHK03 (D)"}
NOT_RUN = "not run"
MISSING = "n/a"  # the metrics file exists but lacks this model or protocol (e.g. written by an older version)

# Table 1 as published (mAP, rank-1 per benchmark, in BENCHMARKS order; None = "-").
PAPER_TABLE1: list[tuple[str, list[float | None]]] = [
    ("IDE", [46.0, 72.5, 47.1, 67.7, 21.0, 22.2, 19.7, 21.3]),
    ("PAN", [63.4, 82.8, 51.5, 71.6, 35.0, 36.9, 34.0, 36.3]),
    ("DPFL", [73.1, 88.9, 60.0, 79.2, 40.5, 43.0, 37.0, 40.7]),
    ("HA-CNN", [75.7, 91.2, 63.8, 80.5, 41.0, 44.4, 38.6, 41.7]),
    ("PyrNet", [86.7, 95.2, 74.0, 87.1, 68.3, 71.6, 63.8, 68.0]),
    ("Auto-ReID", [85.1, 94.5, None, None, 73.0, 77.9, 69.3, 73.3]),
    ("MGN", [86.9, 95.7, 78.4, 88.7, 67.4, 68.0, 66.0, 66.8]),
    ("DenSem", [87.6, 95.7, 74.3, 86.2, 75.2, 78.9, 73.1, 78.2]),
    ("MHN", [85.0, 95.1, 77.2, 89.1, 72.4, 77.2, 65.4, 71.7]),
    ("ABDnet", [88.2, 95.6, 78.5, 89.0, None, None, None, None]),
    ("SONA", [88.6, 95.6, 78.0, 89.2, 79.2, 81.8, 76.3, 79.1]),
    ("OSNet", [84.9, 94.8, 73.5, 88.6, None, None, 67.8, 72.3]),
    ("Pyramid", [88.2, 95.7, 79.0, 89.0, 76.9, 78.9, 74.8, 78.9]),
    ("Top-DB-Net", [85.8, 94.9, 73.5, 87.5, 75.4, 79.4, 73.2, 77.3]),
    ("Proposed (paper)", [63.9, 97.4, 61.1, 90.2, 69.0, 93.4, 66.9, 92.7]),
]
OUR_ROWS = [  # (label, model key, protocol)
    ("maskreid stage 1, no masks (standard protocol)", "stage1", "standard"),
    ("maskreid final, stage 3 (standard protocol)", "stage3", "standard"),
    ("maskreid stage 1, no masks (authors' protocol)", "stage1", "authors"),
    ("maskreid final, stage 3 (authors' protocol)", "stage3", "authors"),
]


def _columns() -> list[str]:
    return ["Method"] + [f"{name} {m}" for name in BENCHMARKS.values() for m in ("mAP", "R1")]


def _fmt(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


def _lookup(metrics: dict, model: str, protocol: str) -> tuple[str, str]:
    """Formatted (mAP, rank-1) of one model under one protocol, or n/a where the file lacks them."""
    block = metrics.get(model) if protocol == "standard" else metrics.get("authors_protocol", {}).get(model)
    if not isinstance(block, dict) or not {"mAP", "rank1"} <= set(block):
        return MISSING, MISSING
    reranked = protocol == "standard" and bool(metrics.get("reranked", metrics.get("reranking", {}).get("used")))
    mark = " (RR)" if reranked else ""
    return _fmt(block["mAP"]) + mark, _fmt(block["rank1"]) + mark


def read_metrics(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as err:
        raise ValueError(f"{path}: not a readable metrics JSON file ({err}); re-run its evaluate stage") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object with mAP, rank1, stage1, stage3, authors_protocol")
    return data


def build_table(metrics_dir: Path) -> pd.DataFrame:
    """The 15 published rows, then ours; cells are strings ready to print."""
    rows = [[name] + [_fmt(v) for v in values] for name, values in PAPER_TABLE1]
    found = {ds: read_metrics(metrics_dir / f"{ds}.json") for ds in BENCHMARKS
             if (metrics_dir / f"{ds}.json").is_file()}
    for label, model, protocol in OUR_ROWS:
        row = [label]
        for ds in BENCHMARKS:
            if ds in found:
                row += list(_lookup(found[ds], model, protocol))
            else:
                row += [NOT_RUN, NOT_RUN]
        rows.append(row)
    return pd.DataFrame(rows, columns=_columns())


def other_datasets(metrics_dir: Path) -> pd.DataFrame:
    """This run's numbers on datasets outside Table 1 (synthetic, cuhk01, custom)."""
    rows = []
    for path in sorted(metrics_dir.glob("*.json")):
        if path.stem in BENCHMARKS or path.name.endswith(".details.json"):
            continue
        m = read_metrics(path)
        for label, model, protocol in OUR_ROWS:
            rows.append([path.stem, label, *_lookup(m, model, protocol)])
    return pd.DataFrame(rows, columns=["Dataset", "Method", "mAP", "R1"])


def cross_domain_table(metrics_dir: Path) -> pd.DataFrame:
    """Rows: the training set; columns: the test set; cells: stage-3 mAP / rank-1 with stage 1's in brackets.
    The diagonal (in-domain) comes from metrics/<ds>.json of the same run, the rest from metrics/cross/."""
    cells: dict[tuple[str, str], str] = {}
    for path in sorted((metrics_dir / "cross").glob("*.json")):
        m = read_metrics(path)
        if not {"train", "test", "stage1", "stage3"} <= set(m):
            raise ValueError(f"{path}: expected train, test, stage1 and stage3; re-run its cross_evaluate stage")
        cells[m["train"], m["test"]] = _pair_cell(m)
    if not cells:
        return pd.DataFrame()
    sets = sorted({d for pair in cells for d in pair})
    for ds in sets:
        own = metrics_dir / f"{ds}.json"
        if own.is_file():
            cells.setdefault((ds, ds), _pair_cell(read_metrics(own)) + " (in-domain)")
    trained = sorted({train for train, _ in cells})
    rows = [[train] + [cells.get((train, test), NOT_RUN) for test in sets] for train in trained]
    return pd.DataFrame(rows, columns=["trained on \\ tested on"] + sets)


def _pair_cell(metrics: dict) -> str:
    s1, s3 = _lookup(metrics, "stage1", "standard"), _lookup(metrics, "stage3", "standard")
    return f"{s3[0]} / {s3[1]} ({s1[0]} / {s1[1]})"


def to_markdown(df: pd.DataFrame) -> str:
    lines = ["| " + " | ".join(df.columns) + " |", "|" + "---|" * len(df.columns)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in df.itertuples(index=False)]
    return "\n".join(lines) + "\n"


def write_report(metrics_dir: Path, out_md: Path, out_csv: Path) -> pd.DataFrame:
    table = build_table(metrics_dir)
    others = other_datasets(metrics_dir)
    text = ("# Table 1, regenerated\n\nmAP / rank-1 in %. Published rows from the paper; maskreid rows from "
            "`metrics/<dataset>.json` of this run. *Standard protocol*: same-id same-camera gallery images "
            "removed, junk excluded (Market-1501 protocol). *Authors' protocol*: the whole gallery ranked, as "
            "the authors' public code did; not comparable with the other rows. (RR): after k-reciprocal "
            "re-ranking (`evaluation.rerank: true`), which the published rows do not use. n/a: the metrics file "
            "lacks that entry (re-run its evaluate stage).\n\n" + to_markdown(table))
    if not others.empty:
        text += "\n## Other datasets of this run\n\n" + to_markdown(others)
    cross = cross_domain_table(metrics_dir)
    if not cross.empty:
        text += ("\n## Cross-domain (params.yaml `cross_domain`)\n\nmAP / rank-1 in % of the final (stage-3) F, "
                 "stage 1's in brackets; standard protocol. Each row's models are trained on that set only and "
                 "scored unchanged on each column's test split.\n\n" + to_markdown(cross))
    atomic_write_text(out_md, text)
    atomic_write_text(out_csv, table.to_csv(index=False))
    return table

"""`maskreid check-reproduction`: does this clone's `dvc repro` give the committed metrics? On the same kind of
machine in the same precision the pipeline is deterministic, so the numbers must agree to the metrics files'
rounding; between precisions (bf16 where the CPU has it, fp32 elsewhere: `precision: auto`) they move, and the
check says by how much is expected rather than failing silently or passing for the wrong reason."""

from __future__ import annotations

import json
from typing import Any

from maskreid.paths import DatasetPaths

KEYS = (("stage1", "mAP"), ("stage1", "rank1"), ("stage3", "mAP"), ("stage3", "rank1"))
SAME_PRECISION_TOLERANCE = 1e-3      # the files round to 1e-4: identical runs agree exactly


class ReproductionError(ValueError):
    """A metrics file to compare is missing or unreadable; the message names it."""


def committed_metrics(dataset: str, rev: str) -> dict[str, Any]:
    from maskreid.tables.revisions import RevisionReadError, read_at_revision

    path = str(DatasetPaths(dataset).metrics)
    try:
        return json.loads(read_at_revision(path, rev))
    except RevisionReadError as err:
        raise ReproductionError(f"{rev}:{path}: cannot be read ({err.reason})") from err
    except ValueError as err:
        raise ReproductionError(f"{rev}:{path}: not a JSON metrics file ({str(err).splitlines()[0]})") from err


def compare_runs(here: dict[str, Any], committed: dict[str, Any], cross_precision_tolerance: float) -> dict[str, Any]:
    """Per headline number: committed, here, difference; and whether it is within the tolerance that applies
    (same precision: rounding only; different or unknown precision: `cross_precision_tolerance` points)."""
    same = here.get("trained_in") is not None and here.get("trained_in") == committed.get("trained_in")
    tolerance = SAME_PRECISION_TOLERANCE if same else cross_precision_tolerance
    rows = []
    for block, key in KEYS:
        a, b = committed.get(block, {}).get(key), here.get(block, {}).get(key)
        if a is None or b is None:
            raise ReproductionError(f"{block}.{key} missing from a metrics file (re-run `dvc repro`)")
        rows.append({"metric": f"{block}.{key}", "committed": a, "here": b, "difference": round(b - a, 4),
                     "within": abs(b - a) <= tolerance})
    return {"precision_committed": committed.get("trained_in", "unknown"), "precision_here": here.get("trained_in",
            "unknown"), "same_precision": same, "tolerance": tolerance, "rows": rows,
            "reproduced": all(r["within"] for r in rows)}


def render(result: dict[str, Any]) -> str:
    lines = [f"trained in {result['precision_here']} here, {result['precision_committed']} in the committed run: "
             + ("the same precision, so the numbers must agree to the files' rounding"
                if result["same_precision"] else
                f"other precisions, so they may differ by up to {result['tolerance']} points"),
             f"{'metric':<14} {'committed':>10} {'here':>10} {'difference':>11}"]
    for r in result["rows"]:
        lines.append(f"{r['metric']:<14} {r['committed']:>10.4f} {r['here']:>10.4f} {r['difference']:>+11.4f}"
                     + ("" if r["within"] else "   outside the tolerance"))
    lines.append("reproduced" if result["reproduced"] else "NOT reproduced: see docs/troubleshooting.md")
    return "\n".join(lines)

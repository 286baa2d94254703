"""Evaluation speed at Market-1501 scale: maskreid.evaluation.metrics vs fast-reid's compiled evaluator.

    bash bench/setup_anchors.sh          # once: fast-reid 1.4.0 + its Cython evaluator, in bench/.anchors
    python bench/eval_speed.py           # prints a Markdown table: seconds, speed-up, peak memory, max |diff|

The case (bench/market_case.py) is generated, seeded, with Market-1501's structure. Each method runs in a
fresh process so peak memory is its own.
"""

from __future__ import annotations

import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from market_case import load_case, max_metric_difference, peak_rss_kb, reset_peak_rss, run_children  # noqa: E402


def run_one(method: str) -> dict:
    """In a child process: time `method` (best of 3) and report its peak RSS above the loaded input."""
    data = load_case()
    args = [data[k] for k in ("distmat", "q_pids", "g_pids", "q_camids", "g_camids")]
    args = [args[0]] + [a.astype(np.int64) for a in args[1:]]
    if method == "maskreid":
        from maskreid.evaluation.metrics import evaluate

        def call():
            r = evaluate(*args, max_rank=50)
            return np.asarray(r["cmc"]), r["mAP"], r["mINP"]
    else:
        sys.path.insert(0, str(HERE / ".anchors" / "fastreid" / "evaluation" / "rank_cylib"))
        import rank_cy  # noqa: PLC0415 - the compiled anchor

        def call():
            cmc, aps, inps = rank_cy.evaluate_cy(*args, 50, False)
            return np.asarray(cmc, dtype=np.float64), float(np.mean(aps)), float(np.mean(inps))
    call()                                              # warm-up (imports, thread pools)
    base = reset_peak_rss()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        cmc, mAP, mINP = call()
        times.append(time.perf_counter() - start)
    peak = peak_rss_kb() - base
    return {"seconds": min(times), "peak_mb": peak / 1024, "cmc": cmc.tolist(), "mAP": mAP, "mINP": mINP}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(run_one(sys.argv[2])))
        return
    load_case()
    results = run_children(__file__, ("fastreid", "maskreid"))
    a, m = results["fastreid"], results["maskreid"]
    diff = max_metric_difference(a, m)
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; python {platform.python_version()}")
    print("| evaluator | seconds (best of 3) | speed-up vs fast-reid | peak memory above the input (MB) |")
    print("|---|---|---|---|")
    for name, r in (("fast-reid 1.4.0 rank_cy (anchor)", a), ("maskreid.evaluation.metrics", m)):
        print(f"| {name} | {r['seconds']:.3f} | {a['seconds'] / r['seconds']:.2f}x | {r['peak_mb']:.0f} |")
    print(f"\nmAP {m['mAP']:.6f}, rank-1 {m['cmc'][0]:.6f}, mINP {m['mINP']:.6f}; "
          f"max |difference| to fast-reid over mAP, mINP and CMC@1..50: {diff:.2e}")


if __name__ == "__main__":
    main()

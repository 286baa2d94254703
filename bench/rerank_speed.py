"""k-reciprocal re-ranking at Market-1501 scale: maskreid.evaluation.reranking vs torchreid's `re_ranking`.

    bash bench/setup_anchors.sh          # once: torchreid 0.2.5's rerank.py into bench/.anchors
    python bench/rerank_speed.py         # prints a Markdown table: seconds, speed-up, peak memory, agreement

Same seeded case as bench/eval_speed.py (bench/market_case.py): q_g, q_q and g_g float32 Euclidean
distances of 3,368 queries and 15,913 gallery images; k1=20, k2=6, lambda=0.3. Each method runs in a fresh
process (the anchor once, it takes over a minute; maskreid best of 3) and saves its re-ranked matrix; both
are then scored with maskreid.evaluation.metrics under the standard protocol.
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

from market_case import euclidean_f32, load_case, max_metric_difference, peak_rss_kb, reset_peak_rss, run_children  # noqa: E402

OUT = HERE / ".cache"


def run_one(method: str) -> dict:
    data = load_case()
    q, g = data["q_feat"], data["g_feat"]
    q_g, q_q, g_g = euclidean_f32(q, g), euclidean_f32(q, q), euclidean_f32(g, g)
    if method == "maskreid":
        from maskreid.evaluation.reranking import k_reciprocal_rerank as rerank
        repeats = 3
    else:
        sys.path.insert(0, str(HERE / ".anchors"))
        from torchreid_rerank import re_ranking as rerank  # noqa: PLC0415 - the anchor
        repeats = 1
    base = reset_peak_rss()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        final = rerank(q_g, q_q, g_g, 20, 6, 0.3)
        times.append(time.perf_counter() - start)
    peak = peak_rss_kb() - base
    np.save(OUT / f"rerank_{method}.npy", final)
    return {"seconds": min(times), "runs": repeats, "peak_mb": peak / 1024}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(run_one(sys.argv[2])))
        return
    data = load_case()
    labels = [data[k].astype(np.int64) for k in ("q_pids", "g_pids", "q_camids", "g_camids")]
    results = run_children(__file__, ("torchreid", "maskreid"))
    from maskreid.evaluation.metrics import evaluate

    scores = {m: evaluate(np.load(OUT / f"rerank_{m}.npy"), *labels) for m in results}
    plain = evaluate(data["distmat"], *labels)
    a, m = scores["torchreid"], scores["maskreid"]
    metric_diff = max_metric_difference(a, m)
    dist_diff = float(np.abs(np.load(OUT / "rerank_torchreid.npy") - np.load(OUT / "rerank_maskreid.npy")).max())
    t = results["torchreid"]
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"python {platform.python_version()}")
    print("| re-ranking | seconds | runs | speed-up vs torchreid | peak memory above the input (MB) |")
    print("|---|---|---|---|---|")
    for name, key in (("torchreid 0.2.5 re_ranking (anchor)", "torchreid"), ("maskreid.evaluation.reranking", "maskreid")):
        r = results[key]
        print(f"| {name} | {r['seconds']:.2f} | {r['runs']} | {t['seconds'] / r['seconds']:.1f}x | "
              f"{r['peak_mb']:.0f} |")
    print(f"\nwithout re-ranking: mAP {plain['mAP']:.4f}, rank-1 {plain['cmc'][0]:.4f}; with: mAP {m['mAP']:.4f}, "
          f"rank-1 {m['cmc'][0]:.4f}")
    print(f"max |difference| to torchreid: re-ranked distances {dist_diff:.2e}; mAP, mINP, CMC@1..50 {metric_diff:.2e}")


if __name__ == "__main__":
    main()

"""Evaluation speed at Market-1501 scale: maskreid.evaluation vs fast-reid's compiled evaluator.

    bash bench/setup_anchors.sh          # once: fast-reid 1.4.0 + its Cython evaluator, in bench/.anchors
    python bench/eval_speed.py           # prints a Markdown table: seconds, speed-up, peak memory, max |diff|

The case is generated, seeded, with Market-1501's structure: 3,368 queries x 15,913 gallery images,
6 cameras, 750 test identities plus 2,798 distractors (id 0), distances from clustered 128-d embeddings
(float32, as a feature extractor gives). Each method runs in a fresh process so peak memory is its own.
"""

from __future__ import annotations

import json
import platform
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
CASE = HERE / ".cache" / "market_scale.npz"


def make_case(seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    ids, dim = 750, 128
    centers = rng.normal(size=(ids, dim)).astype(np.float32)
    q_pids = rng.integers(0, ids, 3368)
    g_real = rng.integers(0, ids, 15913 - 2798)
    # noise comparable to the spread of identity centres: mAP around 0.7, like a good Market-1501 model
    q_feat = centers[q_pids] + rng.normal(scale=1.5, size=(3368, dim)).astype(np.float32)
    g_feat = np.concatenate([centers[g_real] + rng.normal(scale=1.5, size=(len(g_real), dim)),
                             rng.normal(scale=1.8, size=(2798, dim))]).astype(np.float32)
    q = q_feat.astype(np.float64)
    g = g_feat.astype(np.float64)
    distmat = np.sqrt(np.maximum((q * q).sum(1)[:, None] + (g * g).sum(1)[None] - 2 * q @ g.T, 0)).astype(np.float32)
    CASE.parent.mkdir(exist_ok=True)
    np.savez(CASE, distmat=distmat, q_pids=q_pids + 1, g_pids=np.concatenate([g_real + 1, np.zeros(2798, int)]),
             q_camids=rng.integers(1, 7, 3368), g_camids=rng.integers(1, 7, 15913))


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def _reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark (Linux: write 5 to clear_refs); return the current RSS in kB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS")


def run_one(method: str) -> dict:
    """In a child process: time `method` (best of 3) and report its peak RSS above the loaded input."""
    data = np.load(CASE)
    args = [data[k] for k in ("distmat", "q_pids", "g_pids", "q_camids", "g_camids")]
    args = [args[0]] + [a.astype(np.int64) for a in args[1:]]
    if method == "maskreid":
        from maskreid.evaluation import evaluate

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
    base = _reset_peak_rss()
    times = []
    for _ in range(3):
        start = time.perf_counter()
        cmc, mAP, mINP = call()
        times.append(time.perf_counter() - start)
    peak = _status_kb("VmHWM") - base
    return {"seconds": min(times), "peak_mb": peak / 1024, "cmc": cmc.tolist(), "mAP": mAP, "mINP": mINP}


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--child":
        print(json.dumps(run_one(sys.argv[2])))
        return
    if not CASE.is_file():
        make_case()
    results = {}
    for method in ("fastreid", "maskreid"):
        out = subprocess.run([sys.executable, __file__, "--child", method], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"{method} failed (run bench/setup_anchors.sh first?):\n{out.stderr[-2000:]}")
        results[method] = json.loads(out.stdout.strip().splitlines()[-1])
    a, m = results["fastreid"], results["maskreid"]
    diff = max(abs(a["mAP"] - m["mAP"]), abs(a["mINP"] - m["mINP"]),
               float(np.max(np.abs(np.array(a["cmc"]) - np.array(m["cmc"])))))
    import os
    print(f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; python {platform.python_version()}")
    print("| evaluator | seconds (best of 3) | speed-up vs fast-reid | peak memory above the input (MB) |")
    print("|---|---|---|---|")
    for name, r in (("fast-reid 1.4.0 rank_cy (anchor)", a), ("maskreid.evaluation", m)):
        print(f"| {name} | {r['seconds']:.3f} | {a['seconds'] / r['seconds']:.2f}x | {r['peak_mb']:.0f} |")
    print(f"\nmAP {m['mAP']:.6f}, rank-1 {m['cmc'][0]:.6f}, mINP {m['mINP']:.6f}; "
          f"max |difference| to fast-reid over mAP, mINP and CMC@1..50: {diff:.2e}")


if __name__ == "__main__":
    main()

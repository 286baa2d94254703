"""The benchmarks' shared case and memory probe: a seeded stand-in for Market-1501's test split.

3,368 queries x 15,913 gallery images, 6 cameras, 750 test identities plus 2,798 distractors (id 0);
clustered 128-d float32 embeddings whose noise is comparable to the spread of identity centres, so true
matches spread deep into the ranking (mAP about 0.44, rank-1 about 0.82). Saved once under bench/.cache.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np

CASE = Path(__file__).resolve().parent / ".cache" / "market_scale.npz"


def euclidean_f32(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Euclidean distances computed in float64 and stored as float32, as a re-ID tool would save them."""
    a, b = a.astype(np.float64), b.astype(np.float64)
    return np.sqrt(np.maximum((a * a).sum(1)[:, None] + (b * b).sum(1)[None] - 2 * a @ b.T, 0)).astype(np.float32)


def make_case(seed: int = 0) -> None:
    rng = np.random.default_rng(seed)
    ids, dim = 750, 128
    centers = rng.normal(size=(ids, dim)).astype(np.float32)
    q_pids = rng.integers(0, ids, 3368)
    g_real = rng.integers(0, ids, 15913 - 2798)
    q_feat = centers[q_pids] + rng.normal(scale=1.5, size=(3368, dim)).astype(np.float32)
    g_feat = np.concatenate([centers[g_real] + rng.normal(scale=1.5, size=(len(g_real), dim)),
                             rng.normal(scale=1.8, size=(2798, dim))]).astype(np.float32)
    CASE.parent.mkdir(exist_ok=True)
    np.savez(CASE, distmat=euclidean_f32(q_feat, g_feat), q_feat=q_feat, g_feat=g_feat,
             q_pids=q_pids + 1, g_pids=np.concatenate([g_real + 1, np.zeros(2798, int)]),
             q_camids=rng.integers(1, 7, 3368), g_camids=rng.integers(1, 7, 15913))


def load_case() -> np.lib.npyio.NpzFile:
    if not CASE.is_file() or "q_feat" not in np.load(CASE).files:
        make_case()
    return np.load(CASE)


def _status_kb(field: str) -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"{field} not in /proc/self/status")


def reset_peak_rss() -> int:
    """Reset the kernel's peak-RSS mark (Linux: write 5 to clear_refs); return the current RSS in kB."""
    Path("/proc/self/clear_refs").write_text("5")
    return _status_kb("VmRSS")


def peak_rss_kb() -> int:
    return _status_kb("VmHWM")


def run_children(script: str, methods: tuple[str, ...]) -> dict[str, dict]:
    """Run `script --child METHOD` once per method, each in a fresh process (so peak memory is its own), and
    return the JSON each printed last."""
    results = {}
    for method in methods:
        out = subprocess.run([sys.executable, script, "--child", method], capture_output=True, text=True)
        if out.returncode != 0:
            sys.exit(f"{method} failed (run bench/setup_anchors.sh first?):\n{out.stderr[-2000:]}")
        results[method] = json.loads(out.stdout.strip().splitlines()[-1])
    return results


def max_metric_difference(a: dict, b: dict) -> float:
    """Largest |difference| over mAP, mINP and every CMC rank of two evaluation results."""
    return max(abs(a["mAP"] - b["mAP"]), abs(a["mINP"] - b["mINP"]),
               float(np.max(np.abs(np.array(a["cmc"]) - np.array(b["cmc"])))))

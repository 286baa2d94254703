"""Gallery search at a million images: faiss exact (flat), IVF and HNSW against a torch brute-force baseline.

    python bench/search_benchmark.py                    # 1,000,000 x 512, 1,000 queries: a Markdown table
    python bench/search_benchmark.py --gallery 100000   # smaller, for a quick look

Features are random but clustered like a re-ID gallery (identities of ~4 images around random centres), made
in chunks. Each index is filled chunk by chunk (the chunk is the only copy of features outside the index).
Recall@10 of the approximate indexes is against the exact (flat) result on the same queries.
"""

from __future__ import annotations

import argparse
import gc
import platform
import time

import faiss
import numpy as np
import torch

from maskreid.runtime.provenance import device_name
from maskreid.serve.search import IndexSettings, brute_force_search, build_index, recall_at_k


def feature_chunks(n: int, dim: int, chunk: int, seed: int):
    """The same clustered features on every call (seeded per chunk), `chunk` rows at a time."""
    centres = np.random.default_rng(seed).normal(0, 1, (max(1, n // 4), dim)).astype(np.float32)
    for start in range(0, n, chunk):
        rng = np.random.default_rng([seed, start])
        rows = min(chunk, n - start)
        yield centres[rng.integers(0, len(centres), rows)] + rng.normal(0, 0.35, (rows, dim)).astype(np.float32)


def torch_fp32_search(queries: np.ndarray, chunks, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The fast brute force people write: |q|^2 + |g|^2 - 2 q.g with one fp32 matrix product per chunk."""
    q = torch.from_numpy(queries)
    q_sq = (q * q).sum(1, keepdim=True)
    best_d, best_i, offset = None, None, 0
    for chunk in chunks:
        g = torch.from_numpy(chunk)
        d = q_sq + (g * g).sum(1)[None] - 2 * q @ g.T
        top = torch.topk(d, min(k, d.shape[1]), dim=1, largest=False)
        idx = top.indices + offset
        if best_d is not None:
            merged = torch.cat([best_d, top.values], 1)
            order = torch.topk(merged, k, dim=1, largest=False).indices
            top_values, idx = torch.gather(merged, 1, order), torch.gather(torch.cat([best_i, idx], 1), 1, order)
        else:
            top_values = top.values
        best_d, best_i, offset = top_values, idx, offset + len(g)
    return best_d.clamp_min(0).sqrt().numpy(), best_i.numpy()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gallery", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=512)
    parser.add_argument("--queries", type=int, default=1_000)
    parser.add_argument("--chunk", type=int, default=100_000)
    parser.add_argument("--kinds", default="flat,ivf,hnsw", help="ivf is measured with nprobe 16 and 128")
    args = parser.parse_args()
    n, dim = args.gallery, args.dim
    # queries: new draws around the gallery's centres
    centres = np.random.default_rng(0).normal(0, 1, (max(1, n // 4), dim)).astype(np.float32)
    rng = np.random.default_rng(99)
    queries = centres[rng.integers(0, len(centres), args.queries)] + rng.normal(0, 0.35, (args.queries, dim))
    queries = queries.astype(np.float32)
    del centres
    print(f"machine: {device_name(torch.device('cpu'))}, {torch.get_num_threads()} threads, {platform.platform()}")
    print(f"gallery {n:,} x {dim}, {args.queries:,} queries, k=10, chunks of {args.chunk:,}\n")

    # the brute-force baselines read features as they are generated: time the generation alone, and subtract it
    began = time.perf_counter()
    for _ in feature_chunks(n, dim, args.chunk, 0):
        pass
    generation = time.perf_counter() - began
    print(f"  generating the gallery's features: {generation:.1f} s (subtracted from the brute-force times)")
    began = time.perf_counter()
    exact_d, exact_i = brute_force_search(queries, feature_chunks(n, dim, args.chunk, 0), k=10)
    brute = time.perf_counter() - began - generation
    rows = [("torch brute force, fp64 cdist (the reference)", "-", f"{args.chunk * dim * 8 / 2**20:.0f} (one chunk)",
             f"{args.queries / brute:.1f}", "1.000")]
    began = time.perf_counter()
    _, fast_i = torch_fp32_search(queries, feature_chunks(n, dim, args.chunk, 0), k=10)
    fast = time.perf_counter() - began - generation
    rows.append(("torch brute force, fp32 matrix product", "-", f"{args.chunk * dim * 4 / 2**20:.0f} (one chunk)",
                 f"{args.queries / fast:.1f}", f"{recall_at_k(fast_i, exact_i):.3f}"))
    for kind in args.kinds.split(","):
        gc.collect()
        began = time.perf_counter()
        index = build_index(feature_chunks(n, dim, args.chunk, 0), dim, IndexSettings(kind), expected_size=n)
        build = time.perf_counter() - began - generation                # net of generating the features
        memory = faiss.serialize_index(index.index).nbytes / 2**20      # the index's own bytes
        for nprobe in ((16, 128) if kind == "ivf" else (None,)):
            if nprobe is not None:
                index.index.nprobe = nprobe
            began = time.perf_counter()
            _, found = index.search(queries, 10)
            search = time.perf_counter() - began
            recall = recall_at_k(found, exact_i)
            if kind == "ivf":
                detail = f"IVFFlat nlist={index.index.nlist} nprobe={nprobe}"
            elif kind == "hnsw":
                detail = f"HNSWFlat M={index.settings.hnsw_m} efSearch={index.settings.ef_search}"
            else:
                detail = "IndexFlatL2, exact"
            rows.append((f"faiss {kind} ({detail})", f"{build:.1f}", f"{memory:.0f}",
                         f"{args.queries / search:.1f}", f"{recall:.3f}"))
            print(f"  {rows[-1]}", flush=True)
        del index
    print("\n| search | build (s) | memory (MiB) | queries/s | recall@10 vs exact |\n|---|---|---|---|---|")
    for row in rows:
        print("| " + " | ".join(row) + " |")


if __name__ == "__main__":
    main()

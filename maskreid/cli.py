"""The `maskreid` command: tools that work outside the DVC pipeline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

NPZ_FIELDS = ("distmat", "q_pids", "g_pids", "q_camids", "g_camids")
RERANK_FIELDS = ("q_q", "g_g")


def evaluate_distances(path: Path, max_rank: int, same_camera_removal: bool = True, rerank: bool = False,
                       k1: int = 20, k2: int = 6, lambda_value: float = 0.3) -> dict:
    """Score a saved distance matrix from any tool under the standard protocol, optionally re-ranked."""
    from maskreid.evaluation import evaluate

    if not path.is_file():
        raise ValueError(f"{path}: file not found")
    try:
        data = np.load(path, allow_pickle=False)
    except Exception as err:  # noqa: BLE001
        raise ValueError(f"{path}: not a readable .npz file ({err})") from err
    missing = [f for f in NPZ_FIELDS if f not in data.files]
    if missing:
        raise ValueError(f"{path}: missing array(s) {missing}; expected {', '.join(NPZ_FIELDS)} "
                         "(distmat: queries x gallery; the others 1-d)")
    arrays = {f: data[f] for f in NPZ_FIELDS}
    distmat = arrays["distmat"]
    if rerank:
        from maskreid.reranking import k_reciprocal_rerank

        missing = [f for f in RERANK_FIELDS if f not in data.files]
        if missing:
            raise ValueError(f"{path}: --rerank needs array(s) {missing}: q_q (queries x queries) and g_g "
                             "(gallery x gallery) distances, computed like distmat")
        try:
            distmat = k_reciprocal_rerank(distmat, data["q_q"], data["g_g"], k1, k2, lambda_value)
        except ValueError as err:
            raise ValueError(f"{path}: {err}") from err
    result = evaluate(distmat, arrays["q_pids"], arrays["g_pids"], arrays["q_camids"], arrays["g_camids"],
                      max_rank=max_rank, same_camera_removal=same_camera_removal)
    result["reranking"] = {"used": True, "k1": k1, "k2": k2, "lambda": lambda_value} if rerank else {"used": False}
    return result


def ablation(exp_show: Path | None, out: Path) -> int:
    """Write the ablation report from a saved exp-show listing or from `dvc exp show --json` run here."""
    import subprocess

    from maskreid.ablation import AblationError, load_exp_show, write_ablation
    from maskreid.io import atomic_write_text

    try:
        if exp_show is None:
            listing = subprocess.run(["dvc", "exp", "show", "--json"], capture_output=True, text=True)
            if listing.returncode != 0:
                raise AblationError(f"`dvc exp show --json` failed: {listing.stderr.strip()[-500:]}")
            exp_show = out / "ablation_exp_show.json"
            atomic_write_text(exp_show, listing.stdout)
        summary = write_ablation(load_exp_show(exp_show), out)
    except AblationError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(f"wrote {out / 'ablation.md'}, {out / 'ablation.csv'}, {out / 'ablation_runs.csv'} "
          f"({len(summary)} rows) from {exp_show}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="maskreid", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate-distances", help="CMC, mAP and mINP of a saved distance matrix (.npz)")
    ev.add_argument("file", type=Path, help=".npz with " + ", ".join(NPZ_FIELDS))
    ev.add_argument("--max-rank", type=int, default=50)
    ev.add_argument("--keep-same-camera", action="store_true",
                    help="rank the whole gallery (the authors' code), not the standard protocol")
    ev.add_argument("--rerank", action="store_true",
                    help="k-reciprocal re-ranking first (needs q_q and g_g arrays in the .npz)")
    ev.add_argument("--k1", type=int, default=20, help="re-ranking k1 (default 20)")
    ev.add_argument("--k2", type=int, default=6, help="re-ranking k2 (default 6)")
    ev.add_argument("--lambda", dest="lambda_value", type=float, default=0.3, help="re-ranking lambda (default 0.3)")
    ab = sub.add_parser("ablation", help="the masks ablation table (reports/ablation.md) from DVC experiments")
    ab.add_argument("--exp-show", type=Path, default=None,
                    help="a saved `dvc exp show --json` listing (default: run it in the current repository)")
    ab.add_argument("-o", "--out", type=Path, default=Path("reports"), help="output folder (default reports/)")
    args = parser.parse_args(argv)
    if args.command == "ablation":
        return ablation(args.exp_show, args.out)
    try:
        result = evaluate_distances(args.file, args.max_rank, not args.keep_same_camera, args.rerank,
                                    args.k1, args.k2, args.lambda_value)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

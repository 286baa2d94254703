"""The `maskreid` command: tools that work outside the DVC pipeline."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

NPZ_FIELDS = ("distmat", "q_pids", "g_pids", "q_camids", "g_camids")


def evaluate_distances(path: Path, max_rank: int, same_camera_removal: bool = True) -> dict:
    """Score a saved distance matrix from any tool under the standard protocol."""
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
    return evaluate(arrays["distmat"], arrays["q_pids"], arrays["g_pids"], arrays["q_camids"], arrays["g_camids"],
                    max_rank=max_rank, same_camera_removal=same_camera_removal)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="maskreid", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    ev = sub.add_parser("evaluate-distances", help="CMC, mAP and mINP of a saved distance matrix (.npz)")
    ev.add_argument("file", type=Path, help=".npz with " + ", ".join(NPZ_FIELDS))
    ev.add_argument("--max-rank", type=int, default=50)
    ev.add_argument("--keep-same-camera", action="store_true",
                    help="rank the whole gallery (the authors' code), not the standard protocol")
    args = parser.parse_args(argv)
    try:
        result = evaluate_distances(args.file, args.max_rank, not args.keep_same_camera)
    except ValueError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())

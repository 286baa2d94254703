"""The shared start of every stage script: logging, argument parsing, params loading with clear errors."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable

from maskreid.params import Params, ParamsError, load_params
from maskreid.paths import DatasetPaths


def run_stage(description: str, action: Callable[[Params, DatasetPaths], object]) -> None:
    """Parse `<dataset>`, load and validate params.yaml, run `action`; user errors exit 1 with one message."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("dataset")
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    try:
        params = load_params(args.params)
        if args.dataset not in params.datasets:
            raise ParamsError(f"{args.dataset!r} is not in datasets {list(params.datasets)} of {args.params}")
        action(params, DatasetPaths(args.dataset))
    except (ParamsError, ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)

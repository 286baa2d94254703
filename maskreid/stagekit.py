"""The shared start of every stage script: logging, argument parsing, params loading with clear errors."""

from __future__ import annotations

import argparse
import logging
import sys
import importlib
import signal

from maskreid.params import ParamsError, load_params
from maskreid.paths import DatasetPaths


def run_stage(description: str, action: str, target: str = "dataset") -> None:
    """Parse `<dataset>` (or, with target="cross_domain", the name of a cross_domain pair), load and validate
    params.yaml, then import and run `action` ("module:function", a stage module of maskreid.pipeline).

    The pipeline (torch, timm...) is imported only after validation, so a broken params.yaml fails fast.
    User errors exit 1 with one message, never a traceback.
    """
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("dataset", metavar=target.upper())
    parser.add_argument("--params", default="params.yaml")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s", datefmt="%H:%M:%S")
    # SIGTERM unwinds like Ctrl-C, so temporary files are cleaned up; progress files are already complete.
    signal.signal(signal.SIGTERM, _terminate)
    try:
        params = load_params(args.params)
        module, function = action.split(":")
        if target == "cross_domain":
            if args.dataset not in params.cross_domain:
                raise ParamsError(f"{args.dataset!r} is not in cross_domain {list(params.cross_domain)} of {args.params}")
            getattr(importlib.import_module(module), function)(params, args.dataset)
            return
        if args.dataset not in params.datasets:
            raise ParamsError(f"{args.dataset!r} is not in datasets {list(params.datasets)} of {args.params}")
        getattr(importlib.import_module(module), function)(params, DatasetPaths(args.dataset))
    except (ParamsError, ValueError, FileNotFoundError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print(f"interrupted: {args.dataset} stopped; training stages resume from their last complete epoch "
              "at the next `dvc repro`", file=sys.stderr)
        sys.exit(130)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt

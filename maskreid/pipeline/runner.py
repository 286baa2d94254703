"""The shared start of every stage script: logging, argument parsing, params loading with clear errors, and
the relaunch of a training stage under torchrun when it should run on several processes (the DVC `cmd` stays
`python -m stages.<stage> <dataset>` whatever `distributed.processes` says). Free of torch, so all of this
happens before the heavy imports."""

from __future__ import annotations

import argparse
import importlib
import logging
import os
import signal
import sys

from maskreid.console import report_error
from maskreid.params import ParamsError, load_params
from maskreid.paths import DatasetPaths
from maskreid.train.launch import relaunch_under_torchrun, under_torchrun

PR_SET_PDEATHSIG = 1          # prctl(2): the signal a process gets when its parent dies


def run_stage(description: str, action: str, target: str = "dataset", distributed: bool = False) -> None:
    """Parse `<dataset>` (or, with target="cross_domain", the name of a cross_domain pair), load and validate
    params.yaml, then import and run `action` ("module:function", a stage module of maskreid.pipeline).
    A `distributed` (training) stage re-executes itself under torchrun when the profile's
    `distributed.processes` is above 1 and it is not already running under torchrun.

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
    _stop_with_parent()
    try:
        params = load_params(args.params)
        if distributed and params.distributed.processes > 1 and not under_torchrun():
            relaunch_under_torchrun(params.distributed.processes)
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
        sys.exit(report_error(err))
    except KeyboardInterrupt:
        print(f"interrupted: {args.dataset} stopped; training stages resume from their last complete epoch "
              "at the next `dvc repro`", file=sys.stderr)
        sys.exit(130)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def _stop_with_parent() -> None:
    """Linux: SIGTERM this stage when the process that started it (`dvc repro`) dies. Without it a `kill` of dvc
    leaves the stage training on unrecorded: it finishes, marks its progress file complete, and the next `dvc repro`
    (which deletes the stage's outputs first) starts it over. Stopped here instead, it resumes."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    parent = os.getppid()
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:            # the parent died before the request took effect
        os.kill(os.getpid(), signal.SIGTERM)

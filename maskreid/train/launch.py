"""Launching a training stage on several processes: the stage re-executes itself under torchrun. Free of torch (it
runs before the heavy imports); the collectives the processes then use are in maskreid.train.distributed."""

from __future__ import annotations

import os
import sys


def under_torchrun() -> bool:
    """torchrun (torch.distributed.run) sets these for every process it starts."""
    return all(k in os.environ for k in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR"))


def torchrun_argv(processes: int, argv: list[str] | None = None) -> list[str]:
    """This very command under torchrun on one node (`--standalone`: a free local port, no rendezvous server),
    with no restarts: a failed rank stops the stage and the next `dvc repro` resumes it from its progress file."""
    argv = sys.argv if argv is None else argv
    spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    target = ["-m", spec.name] if spec is not None else [argv[0]]
    return [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc-per-node={processes}",
            "--max-restarts=0", *target, *argv[1:]]


def relaunch_under_torchrun(processes: int) -> None:
    """Replace this process by torchrun starting `processes` copies of it (does not return)."""
    argv = torchrun_argv(processes)
    print(f"distributed.processes={processes}: {' '.join(argv[1:])}", file=sys.stderr, flush=True)
    os.execv(argv[0], argv)

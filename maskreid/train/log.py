"""The per-epoch log of a training stage, written with dvclive: one `.tsv` per value under
`dvclive/<dataset>/stage<N>/plots/metrics/` (what `dvc plots` draws) and the latest values in `metrics.json`
(what `dvc exp show` lists, during the run too).

Why the log is rebuilt from the progress file on resume rather than continued with `Live(resume=True)` alone:
DVC deletes a stage's outputs before it runs the stage again, so after a kill the dvclive folder is gone when
the stage resumes; and where it survives (the stage started by hand), it may hold an epoch logged after the
last progress file was saved. The progress file holds exactly the completed epochs, so the folder is written
again from those rows and the log goes on from there, as if the run had never stopped.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

log = logging.getLogger("maskreid")

Row = dict[str, Any]      # {"epoch": 1-based epoch, "<name>": value, ...}


class TrainingLog:
    """Rows of one stage, kept by every rank (they are identical) and written by rank 0 only."""

    def __init__(self, directory: Path, writes: bool = True) -> None:
        self.directory, self.writes = directory, writes
        self.rows: list[Row] = []
        self._live: Any = None

    def start(self, rows: list[Row]) -> None:
        """Open the dvclive folder afresh and write `rows` (the epochs already completed) into it."""
        self.rows = []
        if self.writes:
            try:
                from dvclive import Live
            except ImportError:     # a torch-only machine running the stage functions without DVC
                log.warning("dvclive is not installed: %s is not written (the epochs stay in the progress file)",
                            self.directory)
                self.writes = False
        if self.writes:

            shutil.rmtree(self.directory, ignore_errors=True)
            os.environ.setdefault("DVCLIVE_LOGLEVEL", "WARNING")
            # dvcyaml=None: the stage's outputs are declared in the project's dvc.yaml, not written by dvclive;
            # save_dvc_exp=False: the pipeline (dvc repro / dvc exp run) makes experiments, not the logger
            self._live = Live(str(self.directory), dvcyaml=None, save_dvc_exp=False, report=None)
        for row in rows:
            self.add(row)

    def add(self, row: Row) -> None:
        """One completed epoch: its values, written at step = epoch (1-based), rounded as they are saved."""
        row = {"epoch": int(row["epoch"]), **{k: _rounded(v) for k, v in row.items() if k != "epoch"}}
        self.rows.append(row)
        if self._live is not None:
            self._live.step = row["epoch"]
            for name, value in row.items():
                if name != "epoch":
                    self._live.log_metric(name, value)
            self._live.make_summary()

    def close(self) -> None:
        if self._live is not None:
            self._live.make_summary()
            self._live = None

    def total(self, name: str) -> float:
        return float(sum(row.get(name, 0.0) for row in self.rows))


def _rounded(value: Any) -> Any:
    return round(float(value), 6) if isinstance(value, (int, float)) and not isinstance(value, bool) else value

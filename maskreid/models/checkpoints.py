"""Checkpoints: written atomically, read with weights_only=True (a checkpoint can never run code)."""

from __future__ import annotations

import pickle
from pathlib import Path
from typing import Any

import torch

from maskreid.io import atomic_path


class CheckpointError(RuntimeError):
    """A checkpoint is missing, unreadable, untrusted or not of the expected kind."""


def save_checkpoint(path: Path | str, payload: dict[str, Any], durable: bool = True) -> None:
    """Save tensors and plain values; a reader never sees a half-written file. `durable=False` skips the
    fsync: for files whose loss after a power cut costs only time (per-epoch progress)."""
    with atomic_path(path, durable) as tmp:
        torch.save(payload, tmp)


def load_checkpoint(path: Path | str, required: tuple[str, ...] = ()) -> dict[str, Any]:
    """Load with weights_only=True; refuse pickled code with a clear message; check required keys."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; run the stage that writes it (`dvc repro`)")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if "Unsupported global" not in str(err):      # corrupt bytes, not a refused class or function
            raise CheckpointError(f"{path}: not a readable checkpoint (corrupt, truncated or not a torch file: "
                                  f"{err.__context__ or 'unpickling failed'})") from err
        raise CheckpointError(f"{path}: refused: the file holds pickled objects other than tensors and plain "
                              "values (possibly code); it was not executed. Only load checkpoints you trust, "
                              "re-saved as plain state dicts.") from err
    except Exception as err:  # noqa: BLE001
        raise CheckpointError(f"{path}: not a readable checkpoint ({err.__class__.__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''})") from err
    if not isinstance(payload, dict):
        raise CheckpointError(f"{path}: expected a dict checkpoint, got {type(payload).__name__}")
    missing = [k for k in required if k not in payload]
    if missing:
        raise CheckpointError(f"{path}: missing field(s) {missing}; has {sorted(payload)}")
    return payload

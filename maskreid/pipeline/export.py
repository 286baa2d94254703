"""DVC stage export@<dataset>: models/<ds>/stage3.onnx, the final F for onnxruntime and other runtimes, with
the parity check against PyTorch on real test images recorded beside it."""

from __future__ import annotations

import json
from pathlib import Path

from maskreid.data.build import load_split
from maskreid.io import atomic_write_text
from maskreid.params import Params
from maskreid.paths import DatasetPaths
from maskreid.serve.export import export_onnx

CHECK_IMAGES = 32


def export_final_model(params: Params, paths: DatasetPaths) -> None:
    """Export stage 3's F; refuse (nothing written) if onnxruntime's embeddings of the first query images
    differ from PyTorch's by more than 1e-4."""
    query = load_split(paths, "query", params.input.resize)
    check = export_onnx(paths.checkpoint(3), paths.onnx, query.images[:CHECK_IMAGES])
    atomic_write_text(export_check_path(paths), json.dumps(check, indent=2) + "\n")


def export_check_path(paths: DatasetPaths) -> Path:
    return paths.onnx.with_suffix(".onnx.json")

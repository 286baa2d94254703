"""ONNX export of F: a dynamic batch axis, the preprocessing recorded as metadata, checked with onnxruntime."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import numpy as np
import torch

from maskreid.io import atomic_path
from maskreid.serve.inference import ONNX_METADATA_KEY, OnnxEmbedder, TorchEmbedder

OPSET = 18


class ExportError(RuntimeError):
    """The export failed or its output disagrees with PyTorch."""


def export_onnx(model_path: Path, out: Path, check_images: torch.Tensor | None = None,
                tolerance: float = 1e-4) -> dict[str, float | int]:
    """Write `out` (atomically) from the checkpoint `model_path`; then run both PyTorch and onnxruntime on
    `check_images` (uint8, resized; random ones if None) and refuse the file if any embedding differs by
    more than `tolerance` (max abs). Returns what was checked."""
    import onnx

    torch_model = TorchEmbedder(model_path, channels_last=False)
    spec = torch_model.spec
    example = torch.zeros(2, 3, *spec.crop)
    batch = torch.export.Dim("batch", min=1)
    with atomic_path(out) as tmp:
        try:
            with contextlib.redirect_stdout(io.StringIO()):      # the exporter narrates every step
                program = torch.onnx.export(torch_model.model, (example,), input_names=["images"],
                                            output_names=["embeddings"], dynamic_shapes=({0: batch},),
                                            opset_version=OPSET, dynamo=True, verbose=False)
            program.save(str(tmp))
        except Exception as err:  # noqa: BLE001 - the exporter raises many types
            raise ExportError(f"{model_path}: ONNX export failed ({err.__class__.__name__}: "
                              f"{str(err).splitlines()[0] if str(err) else ''})") from err
        proto = onnx.load(str(tmp))
        entry = proto.metadata_props.add()
        entry.key, entry.value = ONNX_METADATA_KEY, spec.to_json()
        proto.doc_string = (f"maskreid F ({spec.backbone}, {spec.embedding_dim}-d) trained on {spec.dataset}, "
                            f"stage {spec.stage}; input: images resized to {spec.resize[0]}x{spec.resize[1]}, "
                            f"centre-cropped to {spec.crop[0]}x{spec.crop[1]}, RGB in [0, 1], normalised with "
                            f"mean {list(spec.mean)} and std {list(spec.std)}; output: Euclidean-compared "
                            "embeddings")
        onnx.save(proto, str(tmp))
        if check_images is None:
            check_images = torch.randint(0, 256, (5, 3, *spec.resize), generator=torch.Generator().manual_seed(0),
                                         dtype=torch.uint8)
        reference = torch_model(check_images)
        exported = OnnxEmbedder(tmp)(check_images)
        difference = float(np.abs(reference - exported).max())
        if not difference <= tolerance:
            raise ExportError(f"{out}: onnxruntime embeddings differ from PyTorch by {difference:.3g} (max abs), "
                              f"more than {tolerance:g}; not written")
    return {"images_checked": int(len(check_images)), "max_abs_difference": difference, "opset": OPSET}

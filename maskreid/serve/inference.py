"""A trained F as a function from image files to embeddings: from a checkpoint (PyTorch) or an ONNX export
(onnxruntime), with the test transform the file itself describes (resize, centre crop, normalisation)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Protocol

import numpy as np
import torch

from maskreid.data.transforms import Normalizer, embed_test_batch, test_transform
from maskreid.models.checkpoints import CheckpointError, load_checkpoint
from maskreid.models.spec import ModelSpec, ModelSpecError

ONNX_METADATA_KEY = "maskreid"


class ModelLoadError(RuntimeError):
    """A model file is missing, unreadable, not ours, or of another version: the message names the file."""


class Embedder(Protocol):
    """Embeds a batch of images already resized to spec.resize: uint8 (B, 3, H, W) -> float32 (B, D).
    flip: the mean of the embeddings of each image and of its mirror image (test-time augmentation, mirrored
    after the crop, as the evaluate stage's `flip_tta` does)."""

    spec: ModelSpec
    source: Path

    def __call__(self, images: torch.Tensor, flip: bool = False) -> np.ndarray: ...


def preprocess(images: torch.Tensor, spec: ModelSpec) -> torch.Tensor:
    """The pipeline's test transform (maskreid.data.transforms) with the crop, mean and std the model file
    records."""
    return test_transform(images, spec.crop, Normalizer("cpu", spec.mean, spec.std))


class TorchEmbedder:
    """F in PyTorch, eval mode, fp32 (the CPU here has no bf16 units; see docs/benchmarks.md), on `device`."""

    def __init__(self, path: Path, channels_last: bool = True, device: torch.device | str = "cpu") -> None:
        from maskreid.models.build import extractor_with_weights

        self.source = Path(path)
        try:
            payload = load_checkpoint(self.source, required=("extractor",))
        except CheckpointError as err:
            raise ModelLoadError(str(err)) from err
        if "inference" not in payload:
            raise ModelLoadError(
                f"{self.source}: made by an older maskreid: it lacks the inference description (backbone, input "
                "size, normalisation); re-run its training stage (`dvc repro -f train_joint@<dataset>`)")
        try:
            self.spec = ModelSpec.from_dict(payload["inference"], str(self.source))
        except ModelSpecError as err:
            raise ModelLoadError(str(err)) from err
        try:
            self.model = extractor_with_weights(payload["extractor"], self.spec.backbone, self.spec.embedding_dim,
                                                self.source, self.spec.last_stride, self.spec.width)
        except CheckpointError as err:
            raise ModelLoadError(str(err)) from err
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.device = torch.device(device)
        self.model.eval().to(self.device, memory_format=self.memory_format)

    @torch.inference_mode()
    def __call__(self, images: torch.Tensor, flip: bool = False) -> np.ndarray:
        batch = preprocess(images, self.spec).to(self.device, memory_format=self.memory_format)
        return embed_test_batch(lambda images: self.model(images).float(), batch, flip).cpu().numpy()


class OnnxEmbedder:
    """The ONNX export run by onnxruntime; preprocessing from the metadata the export recorded."""

    def __init__(self, path: Path, threads: int = 0, device: torch.device | str = "cpu") -> None:
        import onnxruntime as ort

        self.source = Path(path)
        if not self.source.is_file():
            raise ModelLoadError(f"{self.source}: model file not found")
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(str(self.source), options, providers=onnx_providers(device))
        except Exception as err:  # noqa: BLE001 - onnxruntime raises its own exception types
            raise ModelLoadError(f"{self.source}: not a readable ONNX model ({str(err).splitlines()[0]})") from err
        meta = self.session.get_modelmeta().custom_metadata_map
        if ONNX_METADATA_KEY not in meta:
            raise ModelLoadError(f"{self.source}: an ONNX model without maskreid's metadata (key "
                                 f"{ONNX_METADATA_KEY!r}); export one with `maskreid export`")
        try:
            self.spec = ModelSpec.from_dict(json.loads(meta[ONNX_METADATA_KEY]), str(self.source))
        except (ValueError, ModelSpecError) as err:
            raise ModelLoadError(str(err)) from err
        self.input_name = self.session.get_inputs()[0].name

    def __call__(self, images: torch.Tensor, flip: bool = False) -> np.ndarray:
        return embed_test_batch(self._run, preprocess(images, self.spec), flip)

    def _run(self, batch: torch.Tensor) -> np.ndarray:
        return self.session.run(None, {self.input_name: batch.contiguous().numpy()})[0].astype(np.float32, copy=False)


def onnx_providers(device: torch.device | str) -> list[str]:
    """onnxruntime's providers for `device`: CUDA first on a GPU (the onnxruntime-gpu package provides it), the
    CPU otherwise; a GPU asked for where onnxruntime has no CUDA provider is an error, not a silent CPU run."""
    import onnxruntime as ort

    device = torch.device(device)
    if device.type != "cuda":
        return ["CPUExecutionProvider"]
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        raise ModelLoadError(f"device {device}: this onnxruntime has no CUDA provider (install onnxruntime-gpu), "
                             "or use --device cpu")
    return [("CUDAExecutionProvider", {"device_id": device.index or 0}), "CPUExecutionProvider"]


def load_embedder(path: Path | str, device: torch.device | str = "cpu") -> Embedder:
    """A checkpoint (.pt) or an ONNX export (.onnx), chosen by the file's suffix, computing on `device`."""
    path = Path(path)
    if not path.is_file():
        raise ModelLoadError(f"{path}: model file not found")
    if path.suffix.lower() == ".onnx":
        return OnnxEmbedder(path, device=device)
    return TorchEmbedder(path, device=device)

"""What inference needs to know about a trained F, stored inside its checkpoint and its ONNX export.

A model file must be usable without the params.yaml that trained it: the backbone and embedding size rebuild
the network; resize, crop, mean and std reproduce the test transform; the dataset and the params hash say
where it came from. FORMAT changes whenever these fields change meaning, so an older or newer file is
refused with a message instead of giving wrong embeddings.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass
from typing import Any

from maskreid.params import RESNET_WIDTH

FORMAT = "maskreid-model/3"          # 2: last_stride added (a /1 file was made with last stride 2); 3: width
READABLE_FORMATS = ("maskreid-model/1", "maskreid-model/2", FORMAT)   # (/1, /2 files: width 64)
FIELDS = ("format", "backbone", "embedding_dim", "resize", "crop", "mean", "std", "dataset", "stage",
          "params_hash")


class ModelSpecError(ValueError):
    """A model file lacks the inference description, or has one of another version."""


@dataclass(frozen=True)
class ModelSpec:
    backbone: str
    embedding_dim: int
    resize: tuple[int, int]        # (h, w) the image is resized to
    crop: tuple[int, int]          # (h, w) centre crop fed to F
    mean: tuple[float, float, float]
    std: tuple[float, float, float]
    dataset: str                   # the training set
    stage: int                     # 1: F alone; 3: F after the masked stage (the paper's final model)
    params_hash: str               # hash of every setting the training stage read
    last_stride: int = 2           # F's last-stage stride (1: BoT's last_stride=1)
    width: int = RESNET_WIDTH      # F's first-stage channels (64: the published ResNet)
    format: str = FORMAT

    def to_dict(self) -> dict[str, Any]:
        """Plain values only: the checkpoint stays loadable with weights_only=True."""
        out = asdict(self)
        for key in ("resize", "crop", "mean", "std"):
            out[key] = list(out[key])
        return out

    @classmethod
    def from_dict(cls, raw: Any, source: str) -> "ModelSpec":
        if not isinstance(raw, dict):
            raise ModelSpecError(f"{source}: the inference description is not a mapping")
        found = raw.get("format")
        if found not in READABLE_FORMATS:
            raise ModelSpecError(f"{source}: model format {found!r}, this maskreid reads {FORMAT!r}; "
                                 "re-export or re-train it with this version")
        missing = [f for f in FIELDS if f not in raw]
        if missing:
            raise ModelSpecError(f"{source}: inference description lacks {missing}")
        try:
            return cls(backbone=str(raw["backbone"]), embedding_dim=int(raw["embedding_dim"]),
                       resize=_pair(raw["resize"]), crop=_pair(raw["crop"]),
                       mean=_triple(raw["mean"]), std=_triple(raw["std"]), dataset=str(raw["dataset"]),
                       stage=int(raw["stage"]), params_hash=str(raw["params_hash"]),
                       last_stride=int(raw.get("last_stride", 2)), width=int(raw.get("width", RESNET_WIDTH)))
        except (TypeError, ValueError) as err:
            raise ModelSpecError(f"{source}: malformed inference description ({err})") from err

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)


def settings_hash(settings: dict[str, Any]) -> str:
    """A short, stable hash of the settings a training stage read (JSON with sorted keys)."""
    return hashlib.sha256(json.dumps(settings, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _pair(value: Any) -> tuple[int, int]:
    h, w = (int(v) for v in value)
    return h, w


def _triple(value: Any) -> tuple[float, float, float]:
    a, b, c = (float(v) for v in value)
    return a, b, c

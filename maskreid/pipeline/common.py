"""What the training, evaluation and mask stages share: seeding, device, the image caches, building F and M."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from maskreid.checkpoints import load_checkpoint
from maskreid.data.loading import ImageCache
from maskreid.data.manifest import read_manifest
from maskreid.data.market import JUNK_PID
from maskreid.models.extractor import FeatureExtractor
from maskreid.models.unet import UNet
from maskreid.params import Params
from maskreid.paths import DatasetPaths


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def pick_device(setting: str = "auto") -> torch.device:
    """params `device`: auto (the first GPU when torch sees one, else the CPU), cpu, cuda or cuda:N.
    A GPU that is asked for and absent is an error, not a silent CPU run of a GPU-sized job."""
    if setting == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if setting == "cpu":
        return torch.device("cpu")
    if not torch.cuda.is_available():
        raise RuntimeError(f"device: {setting!r}, but torch sees no CUDA GPU (a CPU-only torch build, or no GPU "
                           "here); set device: auto or cpu")
    index = int(setting.split(":")[1]) if ":" in setting else 0
    if index >= torch.cuda.device_count():
        raise RuntimeError(f"device: {setting!r}, but torch sees {torch.cuda.device_count()} GPU(s) "
                           f"(cuda:0..cuda:{torch.cuda.device_count() - 1})")
    return torch.device("cuda", index)


def _split(manifest: pd.DataFrame, split: str, drop_junk: bool = True) -> pd.DataFrame:
    part = manifest[manifest.split == split]
    return part[part.pid != JUNK_PID] if drop_junk else part


def load_split(paths: DatasetPaths, split: str, size: tuple[int, int], drop_junk: bool = True) -> ImageCache:
    part = _split(read_manifest(paths.manifest), split, drop_junk)
    root = paths.root
    name = split if drop_junk else f"{split}_with_junk"
    return ImageCache.load_or_build([str(root / p) for p in part.path], part.pid.tolist(), part.camid.tolist(),
                                    size, paths.decoded, name, desc=f"decoding {paths.dataset}/{split}")


def layout(params: Params) -> torch.memory_format:
    """channels_last (NHWC) lets oneDNN / cuDNN run convolutions without reordering: faster with bf16."""
    return torch.channels_last if params.channels_last else torch.contiguous_format


def build_extractor(params: Params) -> FeatureExtractor:
    m = params.model
    return FeatureExtractor(m.backbone, m.embedding_dim, m.pretrained)


def build_mask_net(params: Params) -> UNet:
    return UNet(params.model.unet_width, upsampling_init=params.mask_upsampling_init)


def build_extractor_from(checkpoint: Path, params: Params, device: torch.device) -> FeatureExtractor:
    """F with the weights of a checkpoint (its ImageNet init is not re-fetched: the weights replace it)."""
    payload = load_checkpoint(checkpoint, required=("extractor",))
    m = params.model
    extractor = FeatureExtractor(m.backbone, m.embedding_dim, "none")
    extractor.load_state_dict(payload["extractor"])
    return extractor.to(device, memory_format=layout(params))


def load_mask_net(checkpoint: Path, params: Params, device: torch.device) -> UNet:
    payload = load_checkpoint(checkpoint, required=("mask",))
    mask_net = build_mask_net(params)
    mask_net.load_state_dict(payload["mask"])
    return mask_net.to(device, memory_format=layout(params)).eval()

"""Builders of F and M, beside what they build: fresh from params, or with a checkpoint's weights. Every caller
that needs a trained F (the stages, the mask diagnostics, `maskreid extract/search/evaluate`) goes through
`extractor_with_weights`, so a checkpoint is turned into a network in one way only."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Mapping

import torch

from maskreid.models.checkpoints import CheckpointError, load_checkpoint
from maskreid.models.extractor import FeatureExtractor
from maskreid.models.unet import UNet
from maskreid.params import RESNET_WIDTH, Params


def layout(params: Params) -> torch.memory_format:
    """channels_last (NHWC) lets oneDNN / cuDNN run convolutions without reordering: faster with bf16."""
    return torch.channels_last if params.channels_last else torch.contiguous_format


def build_extractor(params: Params) -> FeatureExtractor:
    m = params.model
    return FeatureExtractor(m.backbone, m.embedding_dim, m.pretrained, m.last_stride, m.width)


def build_mask_net(params: Params) -> UNet:
    return UNet(params.model.unet_width, upsampling_init=params.mask_upsampling_init)


def extractor_with_weights(weights: Mapping[str, Any], backbone: str, embedding_dim: int,
                           source: Path | str, last_stride: int = 2, width: int = RESNET_WIDTH) -> FeatureExtractor:
    """F of this backbone, embedding size, last stride and width holding `weights` (its ImageNet init is not
    fetched: the weights replace it); weights of another shape are refused with a message naming `source`."""
    extractor = FeatureExtractor(backbone, embedding_dim, "none", last_stride, width)
    try:
        extractor.load_state_dict(weights)
    except RuntimeError as err:
        raise CheckpointError(f"{source}: weights do not fit {backbone} of width {width} with a {embedding_dim}-d "
                              f"embedding ({str(err).splitlines()[0]})") from err
    return extractor


def load_extractor(checkpoint: Path, params: Params, device: torch.device) -> FeatureExtractor:
    """F with a checkpoint's weights, on `device` in the params' layout (train mode, as torch builds it)."""
    payload = load_checkpoint(checkpoint, required=("extractor",))
    extractor = extractor_with_weights(payload["extractor"], params.model.backbone, params.model.embedding_dim,
                                       checkpoint, params.model.last_stride, params.model.width)
    return extractor.to(device, memory_format=layout(params))


def load_mask_net(checkpoint: Path, params: Params, device: torch.device) -> UNet:
    """M with a checkpoint's weights, on `device`, in eval mode."""
    payload = load_checkpoint(checkpoint, required=("mask",))
    mask_net = build_mask_net(params)
    mask_net.load_state_dict(payload["mask"])
    return mask_net.to(device, memory_format=layout(params)).eval()

"""Feature extractor F: a CNN backbone without its classifier, global average pooling, then
1x1 conv to the embedding size, BatchNorm and ReLU (paper, section 2)."""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

import torch
from torch import nn

from maskreid.net import is_reachable
from maskreid.params import RESNET_WIDTH, WIDTH_BACKBONES

# torchvision's ImageNet weights (the file name carries the sha256 prefix torch.hub checks).
IMAGENET_URLS = {
    "resnet18": "https://download.pytorch.org/models/resnet18-f37072fd.pth",
    "resnet34": "https://download.pytorch.org/models/resnet34-b627a593.pth",
    "resnet50": "https://download.pytorch.org/models/resnet50-0676ba61.pth",
    "resnet101": "https://download.pytorch.org/models/resnet101-63fe2227.pth",
    "resnet152": "https://download.pytorch.org/models/resnet152-394f9c45.pth",
}


class PretrainedWeightsError(RuntimeError):
    """Pretrained weights are missing, unreachable or do not fit the backbone."""


def imagenet_weights_path(backbone: str) -> Path:
    """Where the ImageNet weights of `backbone` are expected (torch.hub's checkpoint cache)."""
    url = IMAGENET_URLS[backbone]
    return Path(torch.hub.get_dir()) / "checkpoints" / Path(urlparse(url).path).name


def fetch_imagenet_weights(backbone: str) -> Path:
    """Return the local path of the ImageNet weights, downloading them (hash-checked) when reachable."""
    if backbone not in IMAGENET_URLS:
        raise PretrainedWeightsError(
            f"pretrained: imagenet is available for {', '.join(IMAGENET_URLS)}; for backbone {backbone!r} "
            "give a weights file path (pretrained: path/to/weights.pth) or pretrained: none")
    path = imagenet_weights_path(backbone)
    if path.is_file():
        return path
    url = IMAGENET_URLS[backbone]
    if not is_reachable(url):
        raise PretrainedWeightsError(
            f"ImageNet weights for {backbone} are not on this machine and {urlparse(url).hostname} is unreachable.\n"
            f"  Download {url}\n  and place it at {path}\n"
            "  (or set pretrained to that file's path, or pretrained: none to train from scratch)")
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.hub.download_url_to_file(url, str(path), hash_prefix=path.stem.rsplit("-", 1)[-1], progress=True)
    return path


def load_backbone_weights(backbone: nn.Module, path: Path, name: str) -> None:
    """Load a state dict (weights only, never pickled code) into `backbone`, checking keys and shapes."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 - any failure here means an unusable file
        raise PretrainedWeightsError(f"{path}: cannot be read as a weights file ({err.__class__.__name__}: "
                                     f"{str(err).splitlines()[0]})") from err
    for key in ("state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
    if not isinstance(state, dict):
        raise PretrainedWeightsError(f"{path}: expected a state dict (name -> tensor), got {type(state).__name__}")
    state = {k.removeprefix("module.").removeprefix("backbone."): v for k, v in state.items()}
    state = {k: v for k, v in state.items() if not k.startswith("fc.")}  # the classifier is removed anyway
    own = backbone.state_dict()
    # torchvision's published files predate BatchNorm's num_batches_tracked buffer: a count, not a weight
    # (used only with momentum=None), so a missing one starts at the model's own value, as torchvision does
    for key in own:
        if key.endswith("num_batches_tracked") and key not in state:
            state[key] = own[key]
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    wrong = [f"{k}: file {tuple(state[k].shape)} vs model {tuple(own[k].shape)}"
             for k in own if k in state and tuple(state[k].shape) != tuple(own[k].shape)]
    if missing or unexpected or wrong:
        detail = []
        if missing:
            detail.append(f"{len(missing)} missing, e.g. {missing[:3]}")
        if unexpected:
            detail.append(f"{len(unexpected)} unexpected, e.g. {unexpected[:3]}")
        if wrong:
            detail.append(f"{len(wrong)} with other shapes, e.g. {wrong[:2]}")
        raise PretrainedWeightsError(f"{path}: does not fit backbone {name!r}: " + "; ".join(detail))
    backbone.load_state_dict(state)


def set_last_stride_1(backbone: nn.Module, name: str) -> None:
    """The last stage's stride-2 convolutions at stride 1, no dilation (BoT's `last_stride=1`, as torchreid and
    fast-reid use it): a final feature map twice as tall and wide, the same weights. ResNets whose last stage
    downsamples by strided convolutions only; others are refused by name."""
    first = getattr(backbone, "layer4", None)
    leaves = [m for m in first[0].modules() if not any(m.children())] if first is not None else []
    strided = [m for m in leaves if getattr(m, "stride", 1) not in (1, (1, 1))]
    if not strided or any(not isinstance(m, nn.Conv2d) for m in strided):
        raise ValueError(f"model.last_stride: 1 needs a ResNet whose last stage downsamples with strided "
                         f"convolutions (resnet18..152, resnext50_32x4d, seresnet50); {name!r} is not one")
    for module in strided:
        module.stride = (1, 1)


def width_arguments(backbone: str, width: int) -> dict[str, object]:
    """timm's arguments for a ResNet whose four stages have width, 2x, 4x, 8x channels (Bottleneck blocks expand
    them 4x as usual; the stem stays as timm builds it): the published network at 64. The stages' compute
    scales by about (width / 64)^2, the lever for a CPU-sized F that keeps the ResNet's depth and strides."""
    if width == RESNET_WIDTH:
        return {}
    if backbone not in WIDTH_BACKBONES:
        raise ValueError(f"model.width: {width} needs a ResNet backbone ({', '.join(WIDTH_BACKBONES)}); "
                         f"{backbone!r} keeps its published width")
    return {"channels": tuple(width * 2 ** i for i in range(4))}


class FeatureExtractor(nn.Module):
    """F: backbone -> GAP -> 1x1 conv (embedding_dim) -> BN -> ReLU -> embedding vector. last_stride: 2 is the
    backbone as built (torchvision's ResNet), 1 removes the last stage's downsampling (`set_last_stride_1`);
    width: the first stage's channels (64 as published; `width_arguments`)."""

    def __init__(self, backbone: str, embedding_dim: int = 512, pretrained: str = "none", last_stride: int = 2,
                 width: int = RESNET_WIDTH) -> None:
        super().__init__()
        import timm

        if last_stride not in (1, 2):
            raise ValueError(f"last_stride: {last_stride!r}, expected 1 or 2")
        if pretrained == "imagenet" and width != RESNET_WIDTH:
            raise PretrainedWeightsError(f"pretrained: imagenet has width {RESNET_WIDTH}, not {width}")
        self.backbone = timm.create_model(backbone, pretrained=False, num_classes=0, global_pool="avg",
                                          **width_arguments(backbone, width))
        if pretrained == "imagenet":
            load_backbone_weights(self.backbone, fetch_imagenet_weights(backbone), backbone)
        elif pretrained != "none":
            load_backbone_weights(self.backbone, Path(pretrained), backbone)
        if last_stride == 1:
            set_last_stride_1(self.backbone, backbone)
        channels = int(self.backbone.num_features)
        self.embed = nn.Sequential(
            nn.Conv2d(channels, embedding_dim, kernel_size=1, stride=1),
            nn.BatchNorm2d(embedding_dim),
            nn.ReLU(inplace=True),
        )

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        pooled = self.backbone(images)  # (B, C) after global average pooling
        return self.embed(pooled[:, :, None, None]).flatten(1)

from pathlib import Path

import pytest
import torch
from torch import nn

from maskreid.models import extractor as extractor_module
from maskreid.models.extractor import FeatureExtractor, PretrainedWeightsError
from maskreid.models.unet import UNet


def _count(module: nn.Module, kind: type) -> list[nn.Module]:
    return [m for m in module.modules() if type(m) is kind]


def test_unet_layer_structure_matches_section_2_1() -> None:
    net = UNet(base_width=32)
    encoder_convs = [m for block in net.down for m in _count(block, nn.Conv2d)] + _count(net.bottom, nn.Conv2d)
    assert len(encoder_convs) == 9
    assert [c.out_channels for c in encoder_convs] == [32, 32, 64, 64, 128, 128, 256, 256, 512]
    assert all(c.kernel_size == (3, 3) and c.stride == (1, 1) for c in encoder_convs)
    assert len(_count(net, nn.MaxPool2d)) == 1 and len(net.down) == 4          # one pool module, used 4 times
    ups = _count(net, nn.ConvTranspose2d)
    assert [u.out_channels for u in ups] == [256, 128, 64, 32]
    assert all(u.kernel_size == (2, 2) and u.stride == (2, 2) for u in ups)
    assert len(_count(net, nn.BatchNorm2d)) == 9 + 8                           # every 3x3 conv has BN + ReLU
    assert net.head.kernel_size == (1, 1) and net.head.out_channels == 1


def test_unet_output_is_a_mask_of_the_input_size() -> None:
    net = UNet(base_width=4).eval()
    x = torch.randn(2, 3, 64, 32)
    m = net(x)
    assert m.shape == (2, 1, 64, 32)
    assert (m > 0).all() and (m < 1).all()


def test_unet_rejects_sizes_not_divisible_by_16() -> None:
    with pytest.raises(ValueError, match="multiple of 16"):
        UNet(4)(torch.randn(1, 3, 40, 32))


def test_unet_nearest_init_starts_each_upsampling_as_nearest_neighbour() -> None:
    """mask_upsampling_init: nearest: every 2x2 stride-2 transposed conv equals a 1x1 conv (its first tap)
    followed by nearest-neighbour upsampling, so it paints no pattern inside its 2x2 cells; torch's default
    init does (the 16-pixel lattice of four such layers)."""
    torch.manual_seed(0)
    nearest = UNet(base_width=4, upsampling_init="nearest")
    torch.manual_seed(0)
    default = UNet(base_width=4)
    x = torch.randn(2, 64, 5, 3)
    for up_n, up_d in zip(nearest.up, default.up):
        one_by_one = nn.functional.conv2d(x[:, :up_n.in_channels], up_n.weight[:, :, :1, :1].transpose(0, 1),
                                          up_n.bias)
        expected = nn.functional.interpolate(one_by_one, scale_factor=2, mode="nearest")
        assert torch.allclose(up_n(x[:, :up_n.in_channels]), expected, atol=1e-6)
        assert not torch.allclose(up_d(x[:, :up_d.in_channels]), expected, atol=1e-3)
    # only the transposed convs differ: the rest of M starts as torch initialises it
    for (name, a), (_, b) in zip(nearest.state_dict().items(), default.state_dict().items()):
        assert torch.equal(a, b) == (not name.startswith("up.") or name.endswith(".bias")), name


def test_unet_unknown_upsampling_init_is_refused() -> None:
    with pytest.raises(ValueError, match="mask_upsampling_init: 'bilinear' is not one of default, nearest"):
        UNet(4, upsampling_init="bilinear")


def test_extractor_output_and_head_structure() -> None:
    f = FeatureExtractor("resnet18", embedding_dim=512).eval()
    out = f(torch.randn(3, 3, 64, 32))
    assert out.shape == (3, 512) and (out >= 0).all()                           # ends with ReLU
    conv, bn, relu = f.embed
    assert isinstance(conv, nn.Conv2d) and conv.kernel_size == (1, 1) and conv.in_channels == 512
    assert isinstance(bn, nn.BatchNorm2d) and isinstance(relu, nn.ReLU)
    assert not hasattr(f.backbone, "fc") or isinstance(f.backbone.fc, nn.Identity)


def test_resnet50_has_2048_features_before_the_embedding() -> None:
    f = FeatureExtractor("resnet50", embedding_dim=512)
    assert f.embed[0].in_channels == 2048


def test_imagenet_offline_fails_at_once_naming_file_and_folder(monkeypatch: pytest.MonkeyPatch,
                                                               tmp_path: Path) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(extractor_module, "is_reachable", lambda url, timeout=3.0: False)
    with pytest.raises(PretrainedWeightsError) as err:
        FeatureExtractor("resnet50", pretrained="imagenet")
    message = str(err.value)
    assert "resnet50-0676ba61.pth" in message and str(tmp_path / "hub" / "checkpoints") in message
    assert "https://download.pytorch.org/models/resnet50-0676ba61.pth" in message


def test_imagenet_weights_are_used_from_the_cache(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    reference = FeatureExtractor("resnet18")
    path = extractor_module.imagenet_weights_path("resnet18")
    path.parent.mkdir(parents=True)
    torch.save({**reference.backbone.state_dict(), "fc.weight": torch.zeros(1000, 512)}, path)
    loaded = FeatureExtractor("resnet18", pretrained="imagenet")
    assert torch.equal(loaded.backbone.conv1.weight, reference.backbone.conv1.weight)


def test_weights_file_with_wrong_shapes_is_explained(tmp_path: Path) -> None:
    path = tmp_path / "r18.pth"
    torch.save(FeatureExtractor("resnet18").backbone.state_dict(), path)
    with pytest.raises(PretrainedWeightsError, match="does not fit backbone 'resnet50'.*missing"):
        FeatureExtractor("resnet50", pretrained=str(path))


def test_weights_file_that_is_not_a_state_dict(tmp_path: Path) -> None:
    path = tmp_path / "junk.pth"
    path.write_bytes(b"not a torch file")
    with pytest.raises(PretrainedWeightsError, match="cannot be read as a weights file"):
        FeatureExtractor("resnet18", pretrained=str(path))


def test_every_allowed_backbone_is_a_timm_model() -> None:
    import timm

    from maskreid.params import BACKBONES

    assert [b for b in BACKBONES if not timm.is_model(b)] == []


@pytest.mark.parametrize(("name", "with_counts"), [(n, False) for n in ("resnet18", "resnet34", "resnet50",
                                                                         "resnet101", "resnet152")]
                         + [("resnet50", True)])
def test_torchvision_weight_files_load_for_every_imagenet_backbone(monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
                                                                   name: str, with_counts: bool) -> None:
    """`pretrained: imagenet` reads torchvision's own files: torchvision's state dict (fc included) under
    torchvision's file name, with or without BatchNorm's num_batches_tracked buffers (older files lack them)."""
    import torchvision

    monkeypatch.setattr(torch.hub, "get_dir", lambda: str(tmp_path))
    torch.manual_seed(0)
    state = getattr(torchvision.models, name)().state_dict()
    if not with_counts:
        state = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}
    path = extractor_module.imagenet_weights_path(name)
    assert path.name == extractor_module.IMAGENET_URLS[name].rsplit("/", 1)[1]
    path.parent.mkdir(parents=True)
    torch.save(state, path)
    loaded = FeatureExtractor(name, 64, pretrained="imagenet").backbone.state_dict()
    for key, value in state.items():
        if not key.startswith("fc."):
            assert torch.equal(loaded[key], value), key


def test_last_stride_1_doubles_the_final_map_with_the_same_weights() -> None:
    """BoT's last_stride=1: layer4 no longer downsamples (no dilation), so 128x64 gives an 8x4 final map
    instead of 4x2; the parameters are the same, so stride-2 weights load and give other embeddings."""
    images = torch.randn(2, 3, 128, 64, generator=torch.Generator().manual_seed(0))
    two, one = FeatureExtractor("resnet18", 32).eval(), FeatureExtractor("resnet18", 32, last_stride=1).eval()
    assert two.backbone.forward_features(images).shape[-2:] == (4, 2)
    assert one.backbone.forward_features(images).shape[-2:] == (8, 4)
    one.load_state_dict(two.state_dict())
    with torch.no_grad():
        assert not torch.allclose(one(images), two(images), atol=1e-4)
    bottleneck = FeatureExtractor("resnet50", 16, last_stride=1).eval()
    assert bottleneck.backbone.forward_features(images[:1]).shape[-2:] == (8, 4)


@pytest.mark.parametrize("backbone", ["resnet50d", "densenet121", "resnetblur18"])
def test_last_stride_1_is_refused_where_the_last_stage_does_not_downsample_by_convolution(backbone: str) -> None:
    with pytest.raises(ValueError, match=f"last_stride: 1 needs a ResNet .* {backbone!r} is not one"):
        FeatureExtractor(backbone, 16, last_stride=1)


def test_the_model_file_carries_last_stride(tmp_path) -> None:
    """A checkpoint's inference description says last_stride, and the serving path builds F with it (the same
    embeddings as the trained network); a description of the first format reads as stride 2."""
    from maskreid.models.spec import ModelSpec
    from maskreid.serve.inference import TorchEmbedder

    extractor = FeatureExtractor("resnet18", 16, last_stride=1).eval()
    spec = ModelSpec("resnet18", 16, (68, 34), (64, 32), (0.5, 0.5, 0.5), (0.2, 0.2, 0.2), "synthetic", 3, "x",
                     last_stride=1)
    torch.save({"extractor": extractor.state_dict(), "inference": spec.to_dict()}, tmp_path / "f.pt")
    embedder = TorchEmbedder(tmp_path / "f.pt", channels_last=False)
    assert embedder.spec.last_stride == 1 and '"last_stride": 1' in spec.to_json()
    images = torch.randint(0, 256, (2, 3, 68, 34), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    from maskreid.serve.inference import preprocess

    with torch.no_grad():
        expected = extractor(preprocess(images, spec)).numpy()
    assert abs(embedder(images) - expected).max() < 1e-5
    old = {**spec.to_dict(), "format": "maskreid-model/1"}
    del old["last_stride"]
    assert ModelSpec.from_dict(old, "old.pt").last_stride == 2


def test_width_scales_every_stage_and_keeps_the_depth_and_strides() -> None:
    """model.width: 32 halves the channels of each stage (32..256 for a ResNet-18, Bottleneck stages expanded
    4x as usual), so about a quarter of the weights, with the same 4x2 final map at 128x64."""
    images = torch.randn(2, 3, 128, 64, generator=torch.Generator().manual_seed(0))
    full, half = FeatureExtractor("resnet18", 32).eval(), FeatureExtractor("resnet18", 32, width=32).eval()
    assert full.backbone.num_features == 512 and half.backbone.num_features == 256
    assert half.backbone.layer1[0].conv1.out_channels == 32 and half.backbone.layer4[0].conv2.out_channels == 256
    assert half.backbone.forward_features(images).shape[1:] == (256, 4, 2)
    weights = [sum(p.numel() for p in net.backbone.parameters()) for net in (full, half)]
    assert 0.24 < weights[1] / weights[0] < 0.26
    assert FeatureExtractor("resnet50", 16, width=32).backbone.num_features == 1024
    assert FeatureExtractor("resnet18", 16, width=48, last_stride=1).backbone.forward_features(images).shape[1:] == (
        384, 8, 4)


def test_width_is_refused_for_backbones_it_cannot_scale_and_for_imagenet_weights() -> None:
    with pytest.raises(ValueError, match="model.width: 32 needs a ResNet backbone .* 'densenet121' keeps"):
        FeatureExtractor("densenet121", 16, width=32)
    with pytest.raises(extractor_module.PretrainedWeightsError, match="imagenet has width 64, not 32"):
        FeatureExtractor("resnet18", 16, pretrained="imagenet", width=32)


def test_the_model_file_carries_width(tmp_path) -> None:
    """The serving path builds F at the width the checkpoint records (a width-64 F could not hold the
    weights); descriptions of the earlier formats read as width 64."""
    from maskreid.models.spec import ModelSpec
    from maskreid.serve.inference import TorchEmbedder, preprocess

    extractor = FeatureExtractor("resnet18", 16, width=16).eval()
    spec = ModelSpec("resnet18", 16, (68, 34), (64, 32), (0.5, 0.5, 0.5), (0.2, 0.2, 0.2), "synthetic", 3, "x",
                     width=16)
    torch.save({"extractor": extractor.state_dict(), "inference": spec.to_dict()}, tmp_path / "f.pt")
    embedder = TorchEmbedder(tmp_path / "f.pt", channels_last=False)
    images = torch.randint(0, 256, (2, 3, 68, 34), dtype=torch.uint8, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = extractor(preprocess(images, spec)).numpy()
    assert embedder.spec.width == 16 and abs(embedder(images) - expected).max() < 1e-5
    for older in ("maskreid-model/1", "maskreid-model/2"):
        old = {**spec.to_dict(), "format": older}
        del old["width"]
        assert ModelSpec.from_dict(old, "old.pt").width == 64

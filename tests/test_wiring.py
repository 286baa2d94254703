"""How the parts are connected in each training stage, pinned with small nets on a few images (seconds each):
what is trained, what is frozen, which mode each net is in, what reaches the loss and the hiding."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from maskreid.data.loading import ImageCache
from maskreid.data.transforms import Normalizer
from maskreid.models.extractor import FeatureExtractor
from maskreid.models.masking import hidden_count
from maskreid.models.unet import UNet
from maskreid.runtime.precision import MixedPrecision
from maskreid.train.epochs import BatchMaker, train_joint_epoch, train_mask_epoch

H, W = 32, 16


def _cache(ids: int = 4, per_id: int = 4) -> ImageCache:
    """Random images whose pixel values stay in [20, 235]: no pixel is black before hiding."""
    g = torch.Generator().manual_seed(0)
    images = torch.randint(20, 236, (ids * per_id, 3, H + 4, W + 2), generator=g, dtype=torch.uint8)
    pids = np.repeat(np.arange(ids), per_id)
    return ImageCache(images, pids, np.ones_like(pids), [f"{i}.jpg" for i in range(len(pids))])


def _maker(cache: ImageCache, seed: int = 0) -> BatchMaker:
    cpu = torch.device("cpu")
    return BatchMaker(cache, (H, W), 0.5, cpu, torch.Generator().manual_seed(seed), Normalizer(cpu),
                      MixedPrecision("fp32", cpu))


class OneBatch:
    """A sampler yielding one fixed PK batch per epoch."""

    def __init__(self, indices: list[int]) -> None:
        self.indices = indices

    def __iter__(self):
        yield list(self.indices)

    def __len__(self) -> int:
        return 1


def _nets() -> tuple[FeatureExtractor, UNet]:
    torch.manual_seed(0)
    return FeatureExtractor("resnet18", 16), UNet(2)


def _bn_buffers(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in module.state_dict().items() if "running" in k or "num_batches" in k}


def _params(module: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.named_parameters()}


def _modes(module: nn.Module, log: list[bool]) -> None:
    module.register_forward_pre_hook(lambda m, args: log.append(m.training))


def _equal(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> bool:
    return a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


# ---------------------------------------------------------------------------------------------- stage 2
def test_stage2_moves_only_m_and_leaves_f_frozen_in_eval_mode() -> None:
    extractor, mask_net = _nets()
    f_params, f_buffers, m_params = _params(extractor), _bn_buffers(extractor), _params(mask_net)
    f_modes: list[bool] = []
    _modes(extractor, f_modes)
    optimizer = torch.optim.Adam(mask_net.parameters(), lr=1e-2)
    train_mask_epoch(mask_net, extractor, optimizer, _maker(_cache()), 8, 0.95, 1.0, np.random.default_rng(0), 0)
    assert _equal(_params(extractor), f_params)            # F's weights did not move
    assert _equal(_bn_buffers(extractor), f_buffers)        # nor its BatchNorm running statistics
    assert f_modes and not any(f_modes)                     # every forward pass of F in eval mode
    assert all(p.grad is None for p in extractor.parameters())
    assert all(p.requires_grad for p in extractor.parameters())    # unfrozen again for stage 3
    moved = [k for k, v in _params(mask_net).items() if not torch.equal(v, m_params[k])]
    assert len(moved) == len(m_params)                      # every parameter of M moved


# ---------------------------------------------------------------------------------------------- stage 3
def _joint_step(extractor, mask_net, lambda1: float = 0.9, drop_ratio: float = 0.3, hiding: str = "learned",
                optimizer=None, seed: int = 0, mask_space: str = "pixel", freeze_hidden_bn: bool = True):
    cache = _cache()
    make = _maker(cache, seed)
    optimizer = optimizer or torch.optim.SGD(extractor.parameters(), lr=0.0)
    values = train_joint_epoch(extractor, mask_net, optimizer, make, OneBatch(list(range(16))), lambda1, drop_ratio,
                               1.0, 0, hiding, torch.Generator().manual_seed(seed), mask_space, freeze_hidden_bn)
    return values, make


def test_stage3_m_is_frozen_in_eval_mode_while_f_trains() -> None:
    extractor, mask_net = _nets()
    m_params, m_buffers = _params(mask_net), _bn_buffers(mask_net)
    m_modes, f_modes = [], []
    _modes(mask_net, m_modes)
    _modes(extractor, f_modes)
    _joint_step(extractor, mask_net, optimizer=torch.optim.Adam(extractor.parameters(), lr=1e-2))
    assert m_modes == [False] and f_modes == [True, True]   # M once in eval mode; F on original and hidden
    assert all(p.grad is None for p in mask_net.parameters())
    assert _equal(_params(mask_net), m_params) and _equal(_bn_buffers(mask_net), m_buffers)


def test_stage3_bn_running_statistics_come_from_original_images_only() -> None:
    extractor, mask_net = _nets()
    before = _bn_buffers(extractor)
    twin = copy.deepcopy(extractor)
    _joint_step(extractor, mask_net)
    # the same original batch (same augmentation draw) through a twin of F, once, in train mode
    images, _ = _maker(_cache(), 0)(list(range(16)))
    twin.train()
    with torch.no_grad():
        twin(images)
    # running mean and variance; num_batches_tracked counts both passes, which matters only for BatchNorm with
    # momentum=None (a cumulative average), not F's momentum 0.1
    stats = lambda m: {k: v for k, v in _bn_buffers(m).items() if "running" in k}   # noqa: E731
    after, expected = stats(extractor), stats(twin)
    assert not _equal(after, {k: before[k] for k in after})  # the original pass did update them
    for key in after:
        assert torch.allclose(after[key].float(), expected[key].float(), atol=1e-6), key   # and nothing else did


def test_stage3_freeze_hidden_bn_false_lets_the_hidden_pass_move_the_running_statistics() -> None:
    """freeze_hidden_bn: false (a plain second pass): the running statistics then also follow hidden batches."""
    frozen, plain = _nets()[0], _nets()[0]
    _joint_step(frozen, _nets()[1])
    _joint_step(plain, _nets()[1], freeze_hidden_bn=False)
    stats = lambda m: {k: v for k, v in _bn_buffers(m).items() if "running" in k}   # noqa: E731
    assert not _equal(stats(frozen), stats(plain))
    # the weights' gradients do not depend on it (both passes normalise with batch statistics)
    assert all(torch.allclose(a.grad, b.grad) for a, b in zip(frozen.parameters(), plain.parameters()))


def test_stage3_normalized_mask_space_fills_hidden_pixels_with_the_mean_colour() -> None:
    """mask_space: normalized: the hidden pixels are 0 in the normalised image (ImageNet's mean colour), the
    same count as in pixel space, the rest untouched."""
    extractor, mask_net = _nets()
    seen: list[torch.Tensor] = []
    extractor.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    _joint_step(extractor, mask_net, mask_space="normalized")
    original, hidden = seen
    zero = (hidden.abs() < 1e-6).all(dim=1).flatten(1).sum(1)
    assert (zero == hidden_count(H, W, 0.3)).all(), zero
    kept = (hidden.abs() >= 1e-6).any(dim=1, keepdim=True).expand_as(hidden)
    torch.testing.assert_close(hidden[kept], original[kept])
    mean_colour = Normalizer().denormalize(torch.zeros(1, 3, 1, 1)).flatten()
    torch.testing.assert_close(mean_colour, torch.tensor([0.485, 0.456, 0.406]))


def _grads(lambda1: float, hiding: str = "learned") -> torch.Tensor:
    extractor, mask_net = _nets()
    _joint_step(extractor, mask_net, lambda1=lambda1, hiding=hiding)
    return torch.cat([p.grad.flatten() for p in extractor.parameters()])


def test_stage3_loss_weights_the_hidden_triplet_by_one_minus_lambda1() -> None:
    only_original, only_hidden, mixed = _grads(1.0), _grads(0.0), _grads(0.3)
    assert not torch.allclose(only_original, only_hidden)
    torch.testing.assert_close(only_original, _grads(1.0, "none"))     # lambda1 = 1: the original images alone
    torch.testing.assert_close(mixed, 0.3 * only_original + 0.7 * only_hidden, atol=1e-5, rtol=1e-4)
    values, _ = _joint_step(*_nets(), lambda1=0.3)
    expected = 0.3 * values["triplet_original"] + 0.7 * values["triplet_hidden"]      # Eq. 2, written out
    assert values["extractor"] == pytest.approx(expected, rel=1e-6)


def test_stage3_none_control_trains_on_original_images_only() -> None:
    extractor, mask_net = _nets()
    f_modes: list[bool] = []
    _modes(extractor, f_modes)
    values, _ = _joint_step(extractor, None, hiding="none")
    assert f_modes == [True] and np.isnan(values["triplet_hidden"])
    assert values["extractor"] == values["triplet_original"]
    torch.testing.assert_close(_grads(1.0, "none"), _grads(1.0, "learned"))   # = lambda1 1.0 of the paper's loss


@pytest.mark.parametrize("hiding", ["learned", "random_blocks", "random_pixels"])
@pytest.mark.parametrize("drop_ratio", [0.1, 0.3])
def test_stage3_f_sees_exactly_drop_ratio_of_each_image_hidden(hiding: str, drop_ratio: float) -> None:
    extractor, mask_net = _nets()
    seen: list[torch.Tensor] = []
    extractor.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    _joint_step(extractor, mask_net, drop_ratio=drop_ratio, hiding=hiding)
    original, hidden = (Normalizer().denormalize(x) for x in seen)
    black = (hidden.abs() < 1e-5).all(dim=1).flatten(1).sum(1)          # pixels black in all three channels
    assert (black == hidden_count(H, W, drop_ratio)).all(), black
    assert ((original.abs() < 1e-5).all(dim=1).sum() == 0)               # none were black before
    kept = (hidden.abs() >= 1e-5).any(dim=1, keepdim=True).expand_as(hidden)
    torch.testing.assert_close(hidden[kept], original[kept], atol=1e-5, rtol=0)   # the rest untouched


def test_stage3_learned_hiding_hides_the_masks_top_pixels() -> None:
    extractor, mask_net = _nets()
    seen: list[torch.Tensor] = []
    extractor.register_forward_pre_hook(lambda m, args: seen.append(args[0].detach().clone()))
    _joint_step(extractor, mask_net, drop_ratio=0.3)
    with torch.no_grad():
        masks = mask_net.eval()(seen[0])[:, 0]
    hidden = (Normalizer().denormalize(seen[1]).abs() < 1e-5).all(dim=1)
    for b in range(len(masks)):
        assert masks[b][hidden[b]].min() >= masks[b][~hidden[b]].max()


# ------------------------------------------------------------------------------ features and precision
def test_extraction_runs_f_in_eval_mode_in_fp32_and_batches_do_not_matter() -> None:
    from maskreid.evaluation.features import extract_features

    extractor, _ = _nets()
    extractor.train()
    cache = _cache()
    modes: list[bool] = []
    _modes(extractor, modes)
    before = _bn_buffers(extractor)
    a = extract_features(extractor, cache, (H, W), 5, torch.device("cpu"))
    b = extract_features(extractor, cache, (H, W), 16, torch.device("cpu"))
    assert a.dtype == np.float32 and a.shape == (16, 16)
    assert not any(modes) and _equal(_bn_buffers(extractor), before)
    np.testing.assert_allclose(a, b, atol=1e-5)            # eval mode: an image's embedding ignores its batch


def test_colour_histogram_counts_pixels_into_joint_rgb_bins() -> None:
    from maskreid.evaluation.features import color_histograms

    images = torch.zeros(2, 3, 4, 2, dtype=torch.uint8)
    images[0, 0] = 255                                      # image 0: all red
    images[1, :, :2] = 200                                  # image 1: top half light grey, bottom black
    cache = ImageCache(images, np.array([1, 2]), np.array([1, 1]), ["a", "b"])
    hist = color_histograms(cache, (4, 2), bins=2) ** 2     # undo the square root: L1-normalised counts
    assert hist.shape == (2, 8)
    np.testing.assert_allclose(hist.sum(1), 1.0)
    assert hist[0, 0b100] == 1.0                            # red bin 1, green 0, blue 0
    assert hist[1, 0b111] == pytest.approx(0.5) and hist[1, 0b000] == pytest.approx(0.5)


def test_precision_auto_follows_the_hardware_and_fp16_is_refused_on_the_cpu(monkeypatch) -> None:
    import maskreid.runtime.precision as precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    assert precision.resolve_precision("auto", cpu) == torch.bfloat16
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: False)
    assert precision.resolve_precision("auto", cpu) is None
    assert precision.resolve_precision("bf16", cpu) == torch.bfloat16 and precision.resolve_precision("fp32", cpu) is None
    with pytest.raises(ValueError, match="fp16 needs a CUDA device"):
        precision.resolve_precision("fp16", cpu)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert precision.resolve_precision("auto", torch.device("cuda")) == torch.float16     # older GPUs
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision.resolve_precision("auto", torch.device("cuda")) == torch.bfloat16
    assert MixedPrecision("fp32", cpu).name == "fp32"


def test_bf16_on_the_cpu_is_kept_off_maps_where_it_returns_nan(monkeypatch) -> None:
    """A crop below 128x64 gives F's layer4 a map as small as 4x2, where the CPU's bf16 convolutions return NaN:
    auto trains in fp32 there, an explicit bf16 is refused with the reason; GPUs and larger crops are unaffected."""
    import maskreid.runtime.precision as precision

    cpu = torch.device("cpu")
    monkeypatch.setattr(precision, "cpu_has_fast_bf16", lambda: True)
    assert precision.resolve_precision("auto", cpu, (64, 32)) is None
    assert precision.resolve_precision("auto", cpu, (96, 64)) is None
    assert precision.resolve_precision("auto", cpu, (128, 64)) == torch.bfloat16
    assert precision.resolve_precision("bf16", cpu, (256, 128)) == torch.bfloat16
    with pytest.raises(ValueError, match=r"bf16 on the CPU with crop \[64, 32\].*NaN.*fp32"):
        precision.resolve_precision("bf16", cpu, (64, 32))
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision.resolve_precision("auto", torch.device("cuda"), (64, 32)) == torch.bfloat16
    assert MixedPrecision("auto", cpu, (64, 32)).name == "fp32"
    import maskreid.runtime.provenance as provenance

    monkeypatch.setattr(provenance, "cpu_has_fast_bf16", lambda: True)
    record = provenance.provenance(cpu, "auto", (64, 32))
    assert record["precision_resolved_here"] == "fp32" and record["cpu_bf16"] is True


def test_a_nan_loss_in_bf16_names_precision_as_the_first_suspect() -> None:
    from maskreid.train.epochs import NonFiniteLossError, _check_finite

    with pytest.raises(NonFiniteLossError, match=r"training in bf16: a suspect first .*precision fp32"):
        _check_finite(torch.tensor(float("nan")), "train_extractor (stage 1)", 0, 3, "bf16")
    with pytest.raises(NonFiniteLossError, match=r"lower the learning rate\?"):
        _check_finite(torch.tensor(float("inf")), "train_extractor (stage 1)", 0, 3, "fp32")


def test_a_bf16_training_step_on_a_known_good_shape_runs_and_learns() -> None:
    """The bf16 path, in emulation where the CPU has no bf16 units: one stage-1 step of ResNet-18 at 128x64 in
    bf16 autocast gives a finite loss and moves F's weights."""
    from maskreid.train.epochs import train_extractor_epoch

    torch.manual_seed(0)
    extractor = FeatureExtractor("resnet18", 32).to(memory_format=torch.channels_last)
    cache = ImageCache(torch.randint(0, 255, (8, 3, 134, 67), dtype=torch.uint8), np.repeat(np.arange(4), 2),
                       np.tile([1, 2], 4), [f"{i}.jpg" for i in range(8)])
    amp = MixedPrecision("bf16", torch.device("cpu"), (128, 64))
    make = BatchMaker(cache, (128, 64), 0.5, torch.device("cpu"), torch.Generator().manual_seed(0),
                      Normalizer("cpu"), amp, torch.channels_last)
    before = [p.detach().clone() for p in extractor.parameters()]
    optimizer = torch.optim.Adam(extractor.parameters(), lr=1e-3)
    one_batch = [[0, 1, 2, 3, 4, 5, 6, 7]]                   # 4 identities x 2 images
    record = train_extractor_epoch(extractor, optimizer, make, one_batch, 1.0, 0)
    assert amp.name == "bf16" and np.isfinite(record["triplet"]) and record["triplet"] > 0
    moved = [not torch.equal(b, p) for b, p in zip(before, extractor.parameters())]
    assert moved[0] and moved[-1] and sum(moved) >= len(moved) // 2        # the first conv and the head learn

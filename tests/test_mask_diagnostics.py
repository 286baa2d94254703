"""The mask diagnostics measure what they say, on masks built to have (or lack) each property."""

from __future__ import annotations

import torch

from maskreid.data.transforms import Normalizer
from maskreid.masks.diagnostics import (
    border_ratio,
    brightness_correlation,
    checkerboard_share,
    mask_statistics,
    mask_terms,
    triplet_terms,
)
from maskreid.models.extractor import FeatureExtractor


def test_checkerboard_share_finds_the_two_pixel_pattern() -> None:
    y, x = torch.meshgrid(torch.arange(32), torch.arange(16), indexing="ij")
    smooth = torch.sigmoid((y.float() - 16) / 4).expand(3, 32, 16)
    dots = smooth + 0.3 * ((y + x) % 2).float()
    assert checkerboard_share(smooth) < 0.01
    assert checkerboard_share(dots) > 0.1 and checkerboard_share(dots) > 50 * checkerboard_share(smooth)


def test_border_ratio_sees_masks_that_light_up_at_the_edges() -> None:
    flat = torch.full((2, 32, 16), 0.5)
    edges = flat.clone()
    edges[:, :4], edges[:, -4:], edges[:, :, :4], edges[:, :, -4:] = 1.0, 1.0, 1.0, 1.0
    assert abs(border_ratio(flat) - 1.0) < 1e-6
    assert border_ratio(edges) == 2.0


def test_brightness_correlation_is_one_for_a_mask_that_copies_brightness() -> None:
    images = torch.rand(4, 3, 16, 8)
    lum = 0.299 * images[:, 0] + 0.587 * images[:, 1] + 0.114 * images[:, 2]
    assert abs(brightness_correlation(images, lum) - 1.0) < 1e-5
    assert abs(brightness_correlation(images, 1 - lum) + 1.0) < 1e-5
    stats = mask_statistics(lum, images, 0.3)
    assert stats["hidden_luminance"] > stats["image_luminance"]        # the brightest 30% are hidden


def test_triplet_terms_leave_the_model_as_it_was_and_weight_the_gradients() -> None:
    torch.manual_seed(0)
    extractor = FeatureExtractor("resnet18", 16)
    before = {k: v.clone() for k, v in extractor.state_dict().items()}
    images = Normalizer().normalize(torch.rand(8, 3, 64, 32))
    pids = torch.tensor([0, 0, 1, 1, 2, 2, 3, 3])
    keep = torch.ones(8, 1, 64, 32)
    keep[:, :, :20] = 0
    low, high = (triplet_terms(extractor, keep, images, pids, Normalizer(), lam, 1.0) for lam in (0.9, 0.5))
    assert all(torch.equal(before[k], v) for k, v in extractor.state_dict().items())   # no update, BN put back
    assert abs(low["triplet_hidden"] - high["triplet_hidden"]) < 1e-6
    # the hidden term's weighted gradient scales with 1 - lambda1: 0.1 vs 0.5
    assert abs(high["grad_norm_hidden_weighted"] / low["grad_norm_hidden_weighted"] - 5.0) < 1e-3
    assert low["bn_mean_shift_mean"] > 0


def test_grid_peak_sees_squares_every_sixteen_pixels() -> None:
    from maskreid.masks.diagnostics import grid_peak

    torch.manual_seed(0)
    y, x = torch.meshgrid(torch.arange(64), torch.arange(32), indexing="ij")
    blob = torch.exp(-((y - 32.0) ** 2 / 300 + (x - 16.0) ** 2 / 80)).expand(4, 64, 32)
    noise = blob + 0.05 * torch.rand(4, 64, 32)
    squares = noise + 0.3 * ((y % 16 < 4) & (x % 16 < 4)).float()
    assert grid_peak(noise, 16) < 3
    assert grid_peak(squares, 16) > 10 * grid_peak(noise, 16)
    assert grid_peak(squares[:, :60], 16) != grid_peak(squares[:, :60], 16)          # 60 rows: NaN


def test_a_strided_net_depends_on_some_positions_of_each_cell_and_the_alignment_sees_a_copied_pattern() -> None:
    """Five stride-2 convs without padding overlap (kernel 2): each output position reads one 32 x 32 input
    cell, with weights that differ by position, so F's saliency repeats every 32 pixels; a mask built from
    that saliency follows F's lattice (alignment 1), a smooth blob does not."""
    from maskreid.masks.diagnostics import input_saliency, lattice_alignment, lattice_contrast

    torch.manual_seed(0)
    layers = []
    for cin, cout in ((3, 8), (8, 8), (8, 8), (8, 8), (8, 16)):
        layers += [torch.nn.Conv2d(cin, cout, 2, stride=2), torch.nn.ReLU()]
    strided = torch.nn.Sequential(*layers, torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten())
    images = torch.randn(8, 3, 64, 64)
    saliency = input_saliency(strided, images)
    assert saliency.shape == (64, 64)
    assert lattice_contrast(saliency) > 1.0
    y, x = torch.meshgrid(torch.arange(64.0), torch.arange(64.0), indexing="ij")
    blob = torch.exp(-((y - 30) ** 2 + (x - 34) ** 2) / 900)
    assert lattice_contrast(blob + 1) < 0.2 < 1.0 < lattice_contrast(saliency)
    copied = 0.2 * blob + saliency / saliency.max()
    assert lattice_alignment(copied, saliency) > 0.99
    assert abs(lattice_alignment(blob + 0.01 * torch.rand(64, 64), saliency)) < 0.5


def test_mask_terms_measure_f_in_eval_mode_as_stage_2_uses_it() -> None:
    """A freshly built or loaded F is in train mode; L_mask's identity term must still be measured with
    BatchNorm's running statistics (stage 2's F is in eval mode), whatever mode F and M come in, and leave it."""
    from maskreid.models.unet import UNet

    torch.manual_seed(0)
    extractor, mask_net = FeatureExtractor("resnet18", 16), UNet(4)
    for module in extractor.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    images = torch.randn(6, 3, 64, 32)
    as_trained = mask_terms(mask_net, extractor.train(), images, Normalizer(), 0.95, 1.0)
    assert extractor.training and mask_net.training                  # left as they came
    in_eval = mask_terms(mask_net.eval(), extractor.eval(), images, Normalizer(), 0.95, 1.0)
    assert not extractor.training
    assert as_trained == in_eval and in_eval["identity_weighted"] > 0

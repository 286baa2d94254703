import torch

from maskreid.data.loading import Normalizer
from maskreid.masking import apply_soft_mask, hide_top_pixels, top_fraction_mask


def test_exactly_the_top_fraction_is_hidden_per_image() -> None:
    masks = torch.rand(5, 1, 32, 16)
    keep = top_fraction_mask(masks, 0.3)
    n_hide = round(0.3 * 32 * 16)
    assert ((keep == 0).flatten(1).sum(1) == n_hide).all()
    for b in range(5):
        hidden_values = masks[b][keep[b] == 0]
        kept_values = masks[b][keep[b] == 1]
        assert hidden_values.min() >= kept_values.max()


def test_ties_still_hide_exactly_the_fraction() -> None:
    masks = torch.full((2, 1, 10, 10), 0.5)
    assert ((top_fraction_mask(masks, 0.3) == 0).flatten(1).sum(1) == 30).all()


def test_hidden_pixels_are_black_in_pixel_space() -> None:
    norm = Normalizer()
    images01 = torch.rand(2, 3, 16, 8) * 0.8 + 0.1
    images = norm.normalize(images01)
    masks = torch.rand(2, 1, 16, 8)
    hidden = norm.denormalize(hide_top_pixels(images, masks, 0.25, norm))
    keep = top_fraction_mask(masks, 0.25).expand_as(hidden)
    assert torch.allclose(hidden[keep == 0], torch.zeros(()), atol=1e-6)
    assert torch.allclose(hidden[keep == 1], images01[keep == 1], atol=1e-5)


def test_soft_mask_multiplies_pixels_then_renormalises() -> None:
    norm = Normalizer()
    images01 = torch.rand(1, 3, 4, 4)
    masks = torch.full((1, 1, 4, 4), 0.5)
    out = apply_soft_mask(norm.normalize(images01), masks, norm)
    assert torch.allclose(norm.denormalize(out), images01 * 0.5, atol=1e-6)

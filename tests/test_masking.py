import pytest
import torch

from maskreid.data.transforms import Normalizer
from maskreid.models.masking import apply_soft_mask, hide_top_pixels, top_fraction_mask


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


def _components(hidden: torch.Tensor) -> int:
    """4-connected regions of hidden pixels (a plain flood fill)."""
    h, w = hidden.shape
    seen = torch.zeros_like(hidden, dtype=torch.bool)
    count = 0
    for y in range(h):
        for x in range(w):
            if hidden[y, x] and not seen[y, x]:
                count += 1
                stack = [(y, x)]
                seen[y, x] = True
                while stack:
                    cy, cx = stack.pop()
                    for ny, nx in ((cy + 1, cx), (cy - 1, cx), (cy, cx + 1), (cy, cx - 1)):
                        if 0 <= ny < h and 0 <= nx < w and hidden[ny, nx] and not seen[ny, nx]:
                            seen[ny, nx] = True
                            stack.append((ny, nx))
    return count


def test_random_controls_hide_exactly_as_many_pixels_as_the_learned_masks() -> None:
    from maskreid.models.masking import hidden_count, random_block_mask, random_pixel_mask

    for h, w, ratio in ((64, 32, 0.3), (128, 64, 0.3), (32, 16, 0.05), (32, 16, 0.9)):
        n = hidden_count(h, w, ratio)
        assert ((top_fraction_mask(torch.rand(3, 1, h, w), ratio) == 0).flatten(1).sum(1) == n).all()
        for make in (random_pixel_mask, random_block_mask):
            keep = make(6, h, w, ratio, torch.Generator().manual_seed(1))
            assert keep.shape == (6, 1, h, w)
            assert ((keep == 0).flatten(1).sum(1) == n).all(), (make.__name__, h, w, ratio)


def test_random_blocks_are_contiguous_and_random_pixels_are_scattered() -> None:
    from maskreid.models.masking import random_block_mask, random_pixel_mask

    blocks = random_block_mask(8, 64, 32, 0.3, torch.Generator().manual_seed(0))
    pixels = random_pixel_mask(8, 64, 32, 0.3, torch.Generator().manual_seed(0))
    block_regions = [_components(blocks[i, 0] == 0) for i in range(8)]
    pixel_regions = [_components(pixels[i, 0] == 0) for i in range(8)]
    assert max(block_regions) <= 8          # a few rectangles (overlapping ones merge)
    assert min(pixel_regions) > 100         # 614 single pixels fall into hundreds of separate specks
    assert not torch.equal(blocks[0], blocks[1])          # each image its own draw


def test_random_hiding_is_reproducible_from_its_generator() -> None:
    from maskreid.models.masking import random_block_mask, random_pixel_mask

    for make in (random_pixel_mask, random_block_mask):
        a = make(4, 32, 16, 0.3, torch.Generator().manual_seed(5))
        b = make(4, 32, 16, 0.3, torch.Generator().manual_seed(5))
        c = make(4, 32, 16, 0.3, torch.Generator().manual_seed(6))
        assert torch.equal(a, b) and not torch.equal(a, c)


def test_input_dependence_is_zero_for_a_fixed_pattern_and_large_for_image_driven_masks() -> None:
    from maskreid.masks.measures import input_dependence

    pattern = torch.rand(1, 16, 8).expand(10, 16, 8)
    assert input_dependence(pattern) == 0.0
    assert input_dependence(torch.rand(10, 16, 8)) > 0.4          # uniform masks: std/mean ~ 0.58
    half = torch.zeros(10, 16, 8)
    half[:5] = 1.0                                                 # on in half the images, off in the others
    assert abs(input_dependence(half) - 1.0) < 1e-6


def test_hidden_on_person_counts_where_the_top_pixels_fall() -> None:
    from maskreid.masks.measures import hidden_on_person

    person = torch.zeros(2, 10, 10, dtype=torch.bool)
    person[:, :, :3] = True                                   # the person: 30% of each image (left 3 columns)
    on_person = torch.rand(2, 10, 10) * 0.1 + person * 1.0    # M high exactly on the person
    on_background = 1.0 - on_person
    assert hidden_on_person(on_person, person, 0.3) == pytest.approx((1.0, 0.3))
    assert hidden_on_person(on_background, person, 0.3)[0] == 0.0
    half = hidden_on_person(on_person, person, 0.6)           # 60% hidden: all 30 person pixels, 30 background
    assert half == pytest.approx((0.5, 0.3))


def test_soft_mask_in_normalized_space_removes_towards_the_mean_colour() -> None:
    """pixel space: a removed dark pixel is (almost) unchanged, so it costs L_identity nothing; normalized space:
    every removed pixel becomes the mean colour, whatever its brightness."""
    norm = Normalizer()
    dark = norm.normalize(torch.full((1, 3, 4, 4), 0.02))
    off = torch.zeros(1, 1, 4, 4)
    pixel, normalized = apply_soft_mask(dark, off, norm), apply_soft_mask(dark, off, norm, "normalized")
    assert (norm.denormalize(pixel) - 0.02).abs().max() < 0.03          # black: next to the dark pixel
    torch.testing.assert_close(normalized, torch.zeros_like(dark))     # the mean colour
    with pytest.raises(ValueError, match="mask_space: 'hsv' is not one of pixel, normalized"):
        apply_soft_mask(dark, off, norm, "hsv")


def test_ties_at_the_threshold_are_broken_by_pixel_order_in_every_precision() -> None:
    """A third of the pixels share the top value, more than drop_ratio asks for: the hidden ones are the first of
    them in row-major order (torch.topk picks among ties in no promised order), in fp32 and bf16 alike."""
    from maskreid.models.masking import top_fraction_mask

    masks = torch.zeros(2, 1, 128, 64)
    masks.view(2, -1)[:, ::3] = 1.0                      # 2,731 tied pixels; 30% of 8,192 is 2,458
    for dtype in (torch.float32, torch.bfloat16):
        hidden = (top_fraction_mask(masks.to(dtype), 0.3).float().view(2, -1) == 0)
        expected = torch.zeros(2, 128 * 64, dtype=torch.bool)
        expected[:, torch.arange(0, 128 * 64, 3)[:2458]] = True
        assert torch.equal(hidden, expected), dtype

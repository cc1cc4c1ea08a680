"""Shared patch helpers: exact change masks, placement, box geometry and OpenCV's seamless cloning quirks."""

from __future__ import annotations

import pytest
import torch

from anomaly_synth_aug.generators._patch_ops import (
    MIN_VISIBLE_CHANGE,
    Box,
    blend_patch,
    bounding_box,
    expand_box,
    feather,
    from_uint8_hwc,
    keep_visible_change,
    random_top_left,
    seamless_clone,
    to_uint8_hwc,
)


def _texture(height: int, width: int, seed: int) -> torch.Tensor:
    """An 8-bit-exact random texture (so uint8 round trips are lossless)."""
    generator = torch.Generator().manual_seed(seed)
    return torch.randint(60, 200, (3, height, width), generator=generator).float() / 255


def test_keep_visible_change_reverts_tiny_and_outside_changes() -> None:
    image = torch.full((3, 4, 5), 0.5)
    candidate = image.clone()
    candidate[:, 0, 0] += MIN_VISIBLE_CHANGE / 2  # invisible: reverted
    candidate[1, 1, 1] += 0.1  # visible in one channel: kept
    candidate[:, 3, 4] = 0.9  # visible but outside the region: reverted
    candidate[:, 2, 2] = 1.7  # out of range: clamped, kept
    region = torch.ones(4, 5, dtype=torch.bool)
    region[3, 4] = False
    result, mask = keep_visible_change(image, candidate, region)
    assert mask.nonzero().tolist() == [[1, 1], [2, 2]]
    assert torch.equal((result != image).any(0), mask)
    assert float(result.max()) == 1.0


def test_a_change_that_vanishes_at_8_bits_is_not_labelled() -> None:
    """Off the 8-bit grid, a change just over half a grey level can round to the same level: 0.5 and 128/255
    are both saved as 128, yet the mask claimed a defect there (a Poisson clone of a flat 0.5 image)."""
    image = torch.full((3, 2, 2), 0.5)
    candidate = torch.full((3, 2, 2), 128 / 255)
    candidate[:, 1, 1] = 129 / 255  # a level apart once saved: kept
    result, mask = keep_visible_change(image, candidate, torch.ones(2, 2, dtype=torch.bool))
    assert mask.nonzero().tolist() == [[1, 1]]
    assert torch.equal((result != image).any(0), mask)


def test_blend_patch_with_binary_alpha_is_an_exact_paste() -> None:
    image, patch = _texture(10, 12, 0), _texture(3, 4, 1)
    alpha = torch.ones(3, 4)
    alpha[0, 0] = 0
    blended, region = blend_patch(image, patch, alpha, top=2, left=5)
    assert torch.equal(blended[:, 2:5, 5:9][:, alpha > 0], patch[:, alpha > 0])
    assert torch.equal(blended[:, ~region], image[:, ~region])
    assert int(region.sum()) == 11


def test_feather_keeps_the_defect_opaque_and_fades_outside() -> None:
    mask = torch.zeros(15, 15, dtype=torch.bool)
    mask[6:9, 6:9] = True
    alpha = feather(mask, sigma=1.0)
    assert bool((alpha[mask] == 1).all())
    assert 0 < float(alpha[5, 7]) < 1 and float(alpha[0, 0]) == 0


def test_feather_of_a_mask_thinner_than_the_blur_fades_outside_it_too() -> None:
    mask = torch.zeros(2, 40, dtype=torch.bool)
    mask[1, 5:30] = True
    alpha = feather(mask, sigma=1.0)
    assert bool((alpha[mask] == 1).all()) and 0 < float(alpha[0, 10]) < 1 and float(alpha[0, 39]) == 0
    from torchvision.transforms.v2 import functional as TF

    just_wide_enough = torch.zeros(4, 40, dtype=torch.bool)  # 4 rows > the 3 of padding: the blur as before
    just_wide_enough[1:3, 5:30] = True
    alpha = just_wide_enough.float()
    before = torch.maximum(TF.gaussian_blur(alpha[None], [7, 7], [1.0, 1.0])[0], alpha)
    assert torch.equal(feather(just_wide_enough, sigma=1.0), before)


def test_expand_box_grows_and_stays_inside() -> None:
    assert expand_box(Box(1, 1, 2, 2), (10, 20), margin=3) == Box(0, 0, 8, 8)
    assert expand_box(Box(4, 15, 2, 2), (10, 20), min_size=8) == Box(1, 12, 8, 8)
    assert expand_box(Box(0, 0, 2, 2), (5, 6), min_size=32) == Box(0, 0, 5, 6)


def test_random_top_left_centres_on_the_placement() -> None:
    placement = torch.zeros(30, 40, dtype=torch.bool)
    placement[20, 33] = True
    generator = torch.Generator().manual_seed(0)
    assert random_top_left((30, 40), (5, 7), placement, generator) == (18, 30)
    assert random_top_left((30, 40), (5, 40), placement, generator) == (18, 0)  # shifted inside
    with pytest.raises(ValueError, match="does not fit"):
        random_top_left((30, 40), (31, 5), None, generator)


def test_uint8_round_trip_is_lossless_for_8bit_values() -> None:
    image = _texture(6, 7, 2)
    assert torch.equal(from_uint8_hwc(to_uint8_hwc(image)), image)


@pytest.mark.parametrize("mode", ["normal", "mixed"])
@pytest.mark.parametrize(
    "box",
    [Box(10, 10, 9, 15), Box(10, 11, 10, 14), Box(0, 0, 9, 13), Box(21, 27, 9, 13), Box(0, 0, 30, 40)],
    ids=["odd", "even", "top-left corner", "bottom-right corner", "whole image"],
)
def test_seamless_clone_changes_only_interior_mask_pixels(box: Box, mode: str) -> None:
    destination, source = _texture(30, 40, 3), _texture(30, 40, 4)
    mask = torch.zeros(30, 40, dtype=torch.bool)
    mask[box.slices] = True
    cloned = seamless_clone(destination, source, mask, mode)
    changed = (cloned != destination).any(0)
    assert bool(changed.any())
    assert not bool((changed & ~mask).any())


@pytest.mark.parametrize(
    "box", [Box(5, 9, 21, 25), Box(0, 0, 21, 25), Box(9, 15, 21, 25)], ids=["inside", "top-left", "bottom-right"]
)
def test_seamless_clone_is_aligned_with_the_mask(box: Box) -> None:
    # Guards OpenCV's centre rounding (odd sizes) and its zeroed border row/column: the
    # source's gradients must land where the mask is, not a pixel off.
    destination = torch.full((3, 30, 40), 0.5)
    source = destination.clone()
    edge_column = box.left + 10
    source[:, :, edge_column:] = 0.8
    edge_row = box.top + 8
    source[:, edge_row:, :] += 0.1
    mask = torch.zeros(30, 40, dtype=torch.bool)
    mask[box.slices] = True
    cloned = seamless_clone(destination, source, mask, "normal")[0]
    middle_row, middle_column = cloned[box.top + box.height // 2], cloned[:, box.left + box.width // 2]
    assert int((middle_row[1:] - middle_row[:-1]).abs().argmax()) + 1 == edge_column
    assert int((middle_column[1:] - middle_column[:-1]).abs().argmax()) + 1 == edge_row


def test_seamless_clone_skips_masks_opencv_rejects() -> None:
    destination, source = _texture(10, 10, 5), _texture(10, 10, 6)
    mask = torch.zeros(10, 10, dtype=torch.bool)
    mask[4:6, 4:9] = True  # only 2 rows: OpenCV raises on it
    assert torch.equal(seamless_clone(destination, source, mask, "normal"), destination)


def test_bounding_box_is_tight() -> None:
    mask = torch.zeros(8, 9, dtype=torch.bool)
    mask[2, 3] = mask[5, 7] = True
    assert bounding_box(mask) == Box(2, 3, 4, 5)
    with pytest.raises(ValueError, match="empty"):
        bounding_box(torch.zeros(3, 3, dtype=torch.bool))

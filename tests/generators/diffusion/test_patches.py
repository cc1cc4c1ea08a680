"""Crop/paste geometry: boxes contain the mask, small defects stay 1:1, pasting is bit-exact outside the region."""

from __future__ import annotations

import pytest
import torch

from anomaly_synth_aug.errors import InvalidInputError, MaskError
from anomaly_synth_aug.generators.diffusion.patches import (
    CropBox,
    context_box,
    crop_image_patch,
    crop_mask_patch,
    defect_windows,
    enclosing_box,
    fine_detail,
    mask_bbox,
    paste_patch,
    uncrop_patch,
)


def _mask(size: tuple[int, int], top: int, left: int, height: int, width: int) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    mask[top : top + height, left : left + width] = True
    return mask


def test_mask_bbox_is_tight() -> None:
    mask = _mask((40, 50), 5, 7, 3, 9)
    mask[20, 30] = True
    assert mask_bbox(mask) == CropBox(5, 7, 16, 24)


def test_mask_bbox_rejects_empty_mask() -> None:
    with pytest.raises(MaskError, match="empty"):
        mask_bbox(torch.zeros(8, 8, dtype=torch.bool))


def test_small_defect_box_is_patch_sized_and_centred() -> None:
    box = context_box(CropBox(50, 60, 6, 4), (200, 300), patch_size=32, fill=0.5)
    assert (box.height, box.width) == (32, 32)  # native scale: never upsampled
    assert box.top <= 50 and box.bottom >= 56 and box.left <= 60 and box.right >= 64
    assert abs((box.top + box.bottom) / 2 - 53) <= 1


def test_large_defect_box_scales_with_fill() -> None:
    box = context_box(CropBox(10, 10, 40, 20), (200, 300), patch_size=32, fill=0.5)
    assert (box.height, box.width) == (80, 80)


def test_box_is_clamped_inside_image_and_still_contains_bbox() -> None:
    bbox = CropBox(0, 90, 30, 10)  # touches the top and right border
    box = context_box(bbox, (50, 100), patch_size=32, fill=0.5)
    assert box.top >= 0 and box.left >= 0 and box.bottom <= 50 and box.right <= 100
    assert box.top <= bbox.top and box.bottom >= bbox.bottom and box.left <= bbox.left and box.right >= bbox.right
    assert (box.height, box.width) == (50, 60)  # side 60 > image height 50: that side is the whole image


def test_offset_shifts_the_context() -> None:
    bbox = CropBox(50, 50, 10, 10)
    low = context_box(bbox, (200, 200), patch_size=40, fill=0.5, offset=(0.0, 0.0))
    high = context_box(bbox, (200, 200), patch_size=40, fill=0.5, offset=(1.0, 1.0))
    assert low.top < high.top and low.left < high.left
    for box in (low, high):
        assert box.top <= 50 and box.bottom >= 60


def test_invalid_fill_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="fill"):
        context_box(CropBox(0, 0, 4, 4), (10, 10), patch_size=8, fill=0.0)


def test_crop_mask_patch_keeps_thin_lines_when_downscaled() -> None:
    mask = torch.zeros(128, 128, dtype=torch.bool)
    mask[10:120, 63] = True  # a 1 px crack, downscaled 4x
    patch = crop_mask_patch(mask, CropBox(0, 0, 128, 128), 32)
    assert patch.shape == (1, 32, 32) and patch.dtype == torch.bool
    assert int(patch[0].any(dim=1).sum()) >= 27  # still a connected vertical line


def test_crop_then_uncrop_round_trips_size() -> None:
    image = torch.rand(3, 60, 70)
    box = CropBox(5, 6, 50, 44)
    patch = crop_image_patch(image, box, 32)
    assert patch.shape == (3, 32, 32)
    assert uncrop_patch(patch, box).shape == (3, 50, 44)


def test_paste_changes_only_the_region_bit_exactly() -> None:
    image = torch.rand(3, 40, 50)
    box = CropBox(8, 10, 24, 24)
    region = _mask((40, 50), 12, 14, 5, 6)
    restored = torch.zeros(3, 24, 24)
    out = paste_patch(image, restored, box, region)
    assert torch.equal(out[:, ~region], image[:, ~region])
    assert torch.all(out[:, region] == 0)
    assert not torch.equal(image[:, region], out[:, region])  # the input itself was not modified in place


def test_paste_rejects_region_outside_box() -> None:
    region = _mask((40, 50), 0, 0, 3, 3)
    with pytest.raises(MaskError, match="outside"):
        paste_patch(torch.rand(3, 40, 50), torch.rand(3, 10, 10), CropBox(20, 20, 10, 10), region)


def test_aspect_ratio_keeps_thin_defects_wide_enough() -> None:
    crack = CropBox(20, 50, 180, 4)
    square = context_box(crack, (400, 400), patch_size=32, fill=0.5)
    tall = context_box(crack, (400, 400), patch_size=32, fill=0.5, max_aspect=3.0)
    assert (square.height, square.width) == (360, 360)
    assert (tall.height, tall.width) == (360, 120)  # width scale 120/32 instead of 360/32
    assert tall.left <= 50 and tall.right >= 54
    with pytest.raises(InvalidInputError, match="max_aspect"):
        context_box(crack, (400, 400), patch_size=32, fill=0.5, max_aspect=0.5)


def _striped(height: int, width: int) -> torch.Tensor:
    """A surface with 2-pixel stripes: texture far finer than a 32 px patch of a large box can hold."""
    stripes = (torch.arange(width) // 2 % 2).float() * 0.4 + 0.3
    return stripes.expand(1, height, width).clone()


def test_fine_detail_is_the_texture_a_coarse_patch_loses() -> None:
    image = _striped(200, 200)
    big = CropBox(0, 0, 160, 160)  # 5x larger than the patch
    detail = fine_detail(image, big, patch_size=32)
    coarse = uncrop_patch(crop_image_patch(image, big, 32), big)
    assert coarse.std() < 0.02  # upscaled from 32 px, the stripes are gone: a flat grey
    assert torch.allclose(coarse + detail, image[:, :160, :160], atol=1e-5)  # the two bands make the surface
    small = CropBox(10, 10, 32, 32)  # generated 1:1: nothing is lost, nothing is added
    assert fine_detail(image, small, patch_size=32).abs().max() < 1e-5


def test_a_large_generated_defect_keeps_the_surface_texture() -> None:
    """A large 'uneven' defect of magnetic tile came out as a flat blur that erased the stripes under it."""
    image = _striped(200, 200)
    box = CropBox(0, 0, 160, 160)
    brighter = crop_image_patch(image, box, 32) + 0.1  # what a generator draws: the coarse band, brighter
    region = torch.zeros(200, 200, dtype=torch.bool)
    region[20:140, 20:140] = True
    smooth = paste_patch(image, uncrop_patch(brighter, box), box, region)
    textured = paste_patch(image, uncrop_patch(brighter, box) + fine_detail(image, box, 32), box, region)
    inside = (slice(None), slice(20, 140), slice(20, 140))
    assert smooth[inside].std() < 0.02 < 0.15 < textured[inside].std()
    assert torch.allclose(textured[inside].mean(), image[inside].mean() + 0.1, atol=1e-3)  # still brighter


# ------------------------------------------------------------------ windows
def _crack(length: int = 150, size: tuple[int, int] = (120, 200)) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    mask[60:63, 20 : 20 + length] = True
    return mask


def _box(mask: torch.Tensor) -> CropBox:
    return context_box(mask_bbox(mask), tuple(mask.shape), patch_size=16, fill=0.5, max_aspect=3.0)


def test_without_window_scale_a_defect_keeps_its_one_box() -> None:
    mask = _crack()
    assert defect_windows(mask, _box(mask), patch_size=16, window_scale=None) == [_box(mask)]


def test_a_defect_that_fits_one_window_keeps_its_box() -> None:
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[30:34, 30:34] = True  # box 16 px: fits a 32 px window
    assert defect_windows(mask, _box(mask), patch_size=16, window_scale=2.0) == [_box(mask)]


def test_a_long_crack_is_tiled_at_the_window_scale_and_every_pixel_is_in_a_window() -> None:
    mask = _crack()
    box = _box(mask)
    assert box.width / 16 > 9  # one patch would shrink the 3 px crack below a pixel
    windows = defect_windows(mask, box, patch_size=16, window_scale=2.0, max_windows=8)
    assert len(windows) > 1 and all((w.height, w.width) == (32, 32) for w in windows)
    covered = torch.zeros_like(mask)
    for window in windows:
        rows, cols = window.slices()
        assert bool((mask[rows, cols] & ~covered[rows, cols]).any())  # each window adds defect pixels
        covered[rows, cols] = True
        assert window.top >= 0 and window.left >= 0 and window.bottom <= 120 and window.right <= 200
    assert bool(covered[mask].all())
    outer = enclosing_box(windows)
    assert all(outer.top <= w.top and w.bottom <= outer.bottom for w in windows)


def test_max_windows_coarsens_the_scale_instead_of_adding_windows() -> None:
    mask = _crack()
    fine = defect_windows(mask, _box(mask), patch_size=16, window_scale=2.0, max_windows=8)
    bounded = defect_windows(mask, _box(mask), patch_size=16, window_scale=2.0, max_windows=2)
    assert len(bounded) <= 2 < len(fine)
    assert bounded[0].width > fine[0].width


def test_bad_window_settings_are_rejected() -> None:
    mask = _crack()
    with pytest.raises(InvalidInputError, match="window_scale"):
        defect_windows(mask, _box(mask), patch_size=16, window_scale=0.5)
    with pytest.raises(InvalidInputError, match="max_windows"):
        defect_windows(mask, _box(mask), patch_size=16, window_scale=2.0, max_windows=0)

"""``to_rgb_float``: one validated image format, without paying for a copy when the image is already valid."""

from __future__ import annotations

import torch

from anomaly_synth_aug.data.sample import AnomalySample, to_rgb_float


def test_valid_float_image_is_returned_without_a_copy() -> None:
    """Samples re-validate images that the loader already converted; that must not copy them again."""
    image = torch.rand(3, 8, 10)
    assert to_rgb_float(image) is image
    sample = AnomalySample.normal(image)
    assert sample.image is image


def test_uint8_is_scaled_and_grey_is_promoted() -> None:
    grey = torch.tensor([[0, 255], [51, 102]], dtype=torch.uint8)
    out = to_rgb_float(grey)
    assert out.shape == (3, 2, 2) and out.dtype == torch.float32 and out.is_contiguous()
    assert torch.allclose(out[:, 1, 0], torch.full((3,), 0.2))
    assert float(out.max()) == 1.0 and float(out.min()) == 0.0


def test_out_of_range_floats_are_clamped_and_the_input_is_left_alone() -> None:
    image = torch.tensor([[[-0.5, 0.5], [1.5, 1.0]]]).expand(3, -1, -1).contiguous()
    before = image.clone()
    out = to_rgb_float(image)
    assert float(out.min()) == 0.0 and float(out.max()) == 1.0
    assert torch.equal(image, before)


def test_alpha_channel_is_dropped() -> None:
    rgba = torch.full((4, 3, 3), 200, dtype=torch.uint8)
    assert to_rgb_float(rgba).shape == (3, 3, 3)


def test_a_uint8_label_mask_of_zeros_and_ones_keeps_its_defect() -> None:
    """Thresholded at 127, a 0/1 uint8 mask came out empty ("mask 0 is empty", "drop this shot")."""
    from anomaly_synth_aug.data.sample import to_bool_mask

    labels = torch.tensor([[0, 1], [1, 0]], dtype=torch.uint8)
    assert torch.equal(to_bool_mask(labels), labels.bool())
    assert torch.equal(to_bool_mask(labels * 255), labels.bool())
    soft = torch.tensor([[0, 100], [128, 255]], dtype=torch.uint8)
    assert to_bool_mask(soft).tolist() == [[False, False], [True, True]]  # 0..255 masks: the > 127 rule
    assert not to_bool_mask(torch.zeros(2, 2, dtype=torch.uint8)).any()


def test_a_float_image_in_0_to_255_is_refused_not_turned_white() -> None:
    """Clamped to [0, 1] silently, a float image of grey levels came out saturated white."""
    import pytest

    from anomaly_synth_aug.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="reaches 200.*divide a 0..255 image by 255"):
        to_rgb_float(torch.full((3, 4, 4), 200.0))
    overshoot = torch.full((3, 4, 4), 0.5)
    overshoot[0, 0, 0], overshoot[0, 0, 1] = 1.24, -0.2  # bicubic resampling: clamped, as before
    assert float(to_rgb_float(overshoot).max()) == 1.0 and float(to_rgb_float(overshoot).min()) == 0.0

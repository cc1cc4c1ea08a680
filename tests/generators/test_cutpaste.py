"""CutPasteGenerator: patches come from the same image, shapes follow the variant, bad settings are refused."""

from __future__ import annotations

import pytest
import torch

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators import CutPasteGenerator
from anomaly_synth_aug.generators._patch_ops import bounding_box


def _seed(value: int) -> torch.Generator:
    return torch.Generator().manual_seed(value)


def _unique_pixels(height: int, width: int) -> torch.Tensor:
    """Every pixel distinct, so a pasted patch can be traced back to where it was cut."""
    ramp = torch.arange(height * width, dtype=torch.float32).reshape(height, width) / (height * width)
    return torch.stack([ramp, ramp.flip(0), ramp.flip(1)])


def test_normal_patch_is_an_unjittered_copy_of_another_window() -> None:
    image = _unique_pixels(20, 24)
    generator = CutPasteGenerator("normal", color_jitter=0.0)
    for seed in range(5):
        batch = generator.generate([image], generator=_seed(seed))
        box = bounding_box(batch.masks[0])
        pasted = batch.images[0][:, box.top : box.top + box.height, box.left : box.left + box.width]
        windows = image.unfold(1, box.height, 1).unfold(2, box.width, 1)  # [3, rows, cols, h, w]
        matches = (windows == pasted[:, None, None]).flatten(3).all(-1).all(0)
        assert bool(matches.any()), "the pasted rectangle is not a window of the input image"


def test_normal_patch_area_follows_area_ratio() -> None:
    image = _unique_pixels(40, 56)
    generator = CutPasteGenerator("normal", area_ratio=(0.05, 0.1), aspect_ratio=1.0, color_jitter=0.0)
    for seed in range(5):
        box = bounding_box(generator.generate([image], generator=_seed(seed)).masks[0])
        assert 0.05 * 40 * 56 - 20 <= box.height * box.width <= 0.1 * 40 * 56 + 20
        assert abs(box.height - box.width) <= 1  # aspect ratio 1: squares


def test_unrotated_scar_has_scar_dimensions() -> None:
    generator = CutPasteGenerator("scar", scar_width=(2, 4), scar_length=(12, 16), scar_rotation=0.0)
    for seed in range(5):
        box = bounding_box(generator.generate([_unique_pixels(40, 56)], generator=_seed(seed)).masks[0])
        assert 12 <= box.height <= 16 and 2 <= box.width <= 4


def test_rotated_scar_is_thin_and_slanted() -> None:
    generator = CutPasteGenerator("scar", scar_width=(2, 2), scar_length=(20, 20), scar_rotation=45.0)
    masks = [m for s in range(6) for m in generator.generate([_unique_pixels(40, 56)], generator=_seed(s)).masks]
    assert all(int(m.sum()) <= 2 * 20 + 8 for m in masks)  # a 2 x 20 strip, a few pixels of rotation slack
    assert any(bounding_box(m).width > 4 for m in masks), "no scar was rotated"


def test_both_variant_makes_both_types() -> None:
    batch = CutPasteGenerator("both").generate([_unique_pixels(40, 56)] * 12, generator=_seed(0))
    assert set(batch.defect_types) == {"cutpaste_normal", "cutpaste_scar"}
    assert CutPasteGenerator("scar").defect_types == ["cutpaste_scar"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"variant": "stripe"}, "unknown CutPaste variant 'stripe'"),
        ({"area_ratio": (0.3, 0.1)}, "area_ratio must be a \\(min, max\\) pair"),
        ({"area_ratio": (0.1, 1.5)}, "area_ratio must be a \\(min, max\\) pair"),
        ({"aspect_ratio": 2.0}, "aspect_ratio must be in \\(0, 1\\]"),
        ({"scar_width": (0, 3)}, "scar_width must be a \\(min, max\\) pair"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        CutPasteGenerator(**kwargs)


def test_flat_black_image_cannot_be_altered_and_says_so() -> None:
    # Jitter cannot brighten black and every patch of it is black: nothing visible can change.
    with pytest.raises(InvalidInputError, match="made no visible change to image 0 in 20 attempts"):
        CutPasteGenerator("normal").generate([torch.zeros(3, 20, 24)], generator=_seed(0))

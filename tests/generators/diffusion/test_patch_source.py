"""``PatchSource``: typed defect patches and normal patches, cut at the scale generation will use."""

from __future__ import annotations

import pytest
import torch
from diffusion_helpers import TINY, normals, shots, surface

from anomaly_synth_aug.data.sample import AnomalySample
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators.diffusion.model import NORMAL_TOKEN
from anomaly_synth_aug.generators.diffusion.patch_source import PatchSource
from anomaly_synth_aug.generators.diffusion.patches import CropBox, crop_image_patch

TYPES = ["dent", "streak"]


def _source(augment: bool = True) -> PatchSource:
    return PatchSource(shots(), normals(), TYPES, patch_size=TINY["patch_size"], fill=0.5, augment=augment)


def test_draw_mixes_normal_and_typed_defect_patches() -> None:
    batch = _source().draw(8, 0.25, torch.Generator().manual_seed(0))
    assert batch.images.shape == (8, 3, 16, 16) and batch.masks.shape == (8, 1, 16, 16)
    assert batch.masks.dtype == torch.bool and bool(batch.masks.flatten(1).any(1).all())
    assert int((batch.tokens == NORMAL_TOKEN).sum()) == 2
    assert torch.equal(batch.is_defect, batch.tokens != NORMAL_TOKEN)
    assert set(batch.tokens[batch.is_defect].tolist()) <= {1, 2}


def test_defect_patches_carry_only_their_own_type_token() -> None:
    """SeaS decoupled alignment: a dent patch never trains the streak token (dents are dark, streaks bright)."""
    batch = _source(augment=False).draw(32, 0.0, torch.Generator().manual_seed(1))
    for image, mask, token in zip(batch.images, batch.masks, batch.tokens, strict=True):
        inside = image[0][mask[0]].mean()
        assert (inside < 0.4) if token == 1 else (inside > 0.6)


def test_unaugmented_defect_patch_is_the_centred_context_crop() -> None:
    source = _source(augment=False)
    image, mask, box = source._shot_patch(0, torch.Generator().manual_seed(0))
    assert torch.equal(image, crop_image_patch(source.shots[0].image, box, 16))
    assert isinstance(box, CropBox) and bool(mask.any())


def test_source_rejects_type_without_shots() -> None:
    with pytest.raises(InvalidInputError, match="no shots"):
        PatchSource(shots(), normals(), ["dent", "streak", "hole"], patch_size=16, fill=0.5)


def _long_crack() -> AnomalySample:
    image = surface(7, (64, 160))
    mask = torch.zeros(64, 160, dtype=torch.bool)
    mask[30:32, 10:150] = True
    image[:, mask] = 0.1
    return AnomalySample(image=image, mask=mask, label=1, defect_type="crack")


def test_a_long_shot_is_cropped_to_windows_of_the_generation_scale() -> None:
    options = {"patch_size": 16, "fill": 0.5, "max_aspect": 3.0, "augment": False}
    whole = PatchSource([_long_crack()], normals(), ["crack"], **options)
    windowed = PatchSource([_long_crack()], normals(), ["crack"], window_scale=2.0, max_windows=8, **options)
    _, _, box = whole._shot_patch(0, torch.Generator().manual_seed(0))
    assert box.width > 200 // 2  # the whole crack, downscaled about 10 times into 16 px
    for seed in range(5):
        image, mask, window = windowed._shot_patch(0, torch.Generator().manual_seed(seed))
        assert (window.height, window.width) == (32, 32)  # the side defect_windows tiles this crack with
        assert bool(mask.any()) and torch.equal(image, crop_image_patch(_long_crack().image, window, 16))
    batch = windowed.draw(4, 0.5, torch.Generator().manual_seed(1))  # normal patches at the window's size
    assert batch.images.shape == (4, 3, 16, 16) and bool(batch.masks.flatten(1).any(1).all())


def test_a_shot_that_fits_one_window_is_cut_as_before() -> None:
    plain = _source(augment=False)
    windowed = PatchSource(
        shots(), normals(), TYPES, patch_size=TINY["patch_size"], fill=0.5, augment=False, window_scale=4.0
    )
    for index in range(len(plain.shots)):
        expected = plain._shot_patch(index, torch.Generator().manual_seed(index))
        actual = windowed._shot_patch(index, torch.Generator().manual_seed(index))
        assert actual[2] == expected[2] and torch.equal(actual[0], expected[0])

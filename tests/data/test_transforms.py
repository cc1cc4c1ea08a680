"""Native-resolution training transforms: crops that contain the defect, lossless shot augmentation, padding."""

from __future__ import annotations

import pytest
import torch
from torchvision import tv_tensors

from anomaly_synth_aug.data.transforms import (
    DefectCentredRandomCrop,
    RandomRot90,
    native_crop_augmentations,
    pad_to_multiple,
    shot_augmentations,
)
from anomaly_synth_aug.errors import InvalidInputError


def _plain(tensor: torch.Tensor) -> torch.Tensor:
    return tensor.as_subclass(torch.Tensor)


def _image_and_mask(
    height: int, width: int, box: tuple[int, int, int, int]
) -> tuple[tv_tensors.Image, tv_tensors.Mask]:
    image = tv_tensors.Image(torch.rand(3, height, width))
    mask = torch.zeros(height, width, dtype=torch.bool)
    top, left, bottom, right = box
    mask[top:bottom, left:right] = True
    image = tv_tensors.Image(
        torch.where(mask, 1.0, _plain(image))
    )  # the defect is bright, so image and mask must move together
    return image, tv_tensors.Mask(mask)


def test_every_crop_contains_the_defect_and_image_and_mask_stay_aligned() -> None:
    """A uniform crop of this 300x400 image would miss the corner defect most of the time."""
    torch.manual_seed(0)
    image, mask = _image_and_mask(300, 400, (280, 380, 290, 395))
    crop = DefectCentredRandomCrop(128)
    for _ in range(20):
        out_image, out_mask = crop(image, mask)
        assert out_image.shape == (3, 128, 128) and out_mask.shape == (128, 128)
        assert out_mask.any()
        assert torch.all(_plain(out_image)[:, _plain(out_mask)] == 1.0)


def test_without_a_defect_or_with_probability_zero_the_crop_is_uniform() -> None:
    torch.manual_seed(0)
    image, mask = _image_and_mask(300, 400, (280, 380, 290, 395))
    hits = sum(bool(DefectCentredRandomCrop(128, defect_probability=0.0)(image, mask)[1].any()) for _ in range(40))
    assert hits < 20  # the defect covers a small corner: a uniform crop mostly misses it
    empty = tv_tensors.Mask(torch.zeros(300, 400, dtype=torch.bool))
    assert DefectCentredRandomCrop(128)(image, empty)[0].shape == (3, 128, 128)
    with pytest.raises(InvalidInputError, match="defect_probability"):
        DefectCentredRandomCrop(128, defect_probability=1.5)


@pytest.mark.parametrize("size", [(100, 300), (40, 50)])
def test_images_smaller_than_the_crop_are_padded_with_the_mask(size: tuple[int, int]) -> None:
    """Reflection where it fits, the edge where the image is far too small to reflect."""
    height, width = size
    image, mask = _image_and_mask(height, width, (height - 8, width - 8, height - 2, width - 2))
    out_image, out_mask = DefectCentredRandomCrop(128)(image, mask)
    assert out_image.shape == (3, 128, 128) and out_mask.any()
    assert torch.all(_plain(out_image)[:, _plain(out_mask)] == 1.0)


def test_right_angle_rotation_moves_image_and_mask_losslessly() -> None:
    torch.manual_seed(3)
    image, mask = _image_and_mask(20, 30, (2, 3, 5, 9))
    seen = set()
    for _ in range(16):
        out_image, out_mask = RandomRot90(keep_shape=False)(image, mask)
        seen.add(tuple(out_image.shape[-2:]))
        assert int(out_mask.sum()) == int(mask.sum()) and torch.all(_plain(out_image)[:, _plain(out_mask)] == 1.0)
        assert sorted(out_image.flatten().tolist()) == sorted(image.flatten().tolist())  # no interpolation
    assert seen == {(20, 30), (30, 20)}


def test_non_square_images_keep_their_shape_by_default() -> None:
    """A quarter turn of a non-square shot swapped its sides; without a crop after it, collate stretched it back."""
    torch.manual_seed(3)
    image, mask = _image_and_mask(20, 30, (2, 3, 5, 9))
    turned = {_plain(RandomRot90()(image, mask)[1]).nonzero()[0].tolist()[0] for _ in range(16)}
    assert {tuple(RandomRot90()(image, mask)[0].shape[-2:]) for _ in range(16)} == {(20, 30)}
    assert turned == {2, 20 - 5}  # both the unturned and the half-turned defect are drawn
    square, square_mask = _image_and_mask(24, 24, (2, 3, 5, 9))
    corners = {tuple(_plain(RandomRot90()(square, square_mask)[1]).nonzero()[0].tolist()) for _ in range(32)}
    assert len(corners) == 4  # square images still draw every quarter turn
    shapes = {tuple(shot_augmentations()(image, mask)[0].shape[-2:]) for _ in range(16)}
    assert shapes == {(20, 30)}


def test_shot_augmentation_jitters_the_image_only() -> None:
    torch.manual_seed(0)
    image, mask = _image_and_mask(32, 32, (4, 4, 10, 10))
    out_image, out_mask = shot_augmentations()(image, mask)
    assert out_mask.dtype == torch.bool and int(out_mask.sum()) == int(mask.sum())
    assert out_image.shape == image.shape
    steps = native_crop_augmentations(64).transforms
    assert isinstance(steps[0], DefectCentredRandomCrop) and len(steps) == 3


def test_pad_to_multiple() -> None:
    images = torch.rand(2, 3, 47, 64)
    padded, size = pad_to_multiple(images, 32)
    assert padded.shape == (2, 3, 64, 64) and size == (47, 64)
    assert torch.equal(padded[..., :47, :], images)
    same, _ = pad_to_multiple(torch.rand(1, 3, 64, 32), 32)
    assert same.shape == (1, 3, 64, 32)
    tiny, _ = pad_to_multiple(torch.rand(1, 3, 5, 7), 32)  # too small to reflect: replicated
    assert tiny.shape == (1, 3, 32, 32)


def test_pil_images_are_turned_as_tensors_are() -> None:
    """A PIL image raised a bare StopIteration (no tensor to measure) and was never turned before that."""
    import numpy as np
    from PIL import Image as PILImage

    array = (np.arange(20 * 30) % 251).astype(np.uint8).reshape(20, 30)
    pil = PILImage.fromarray(array)
    for keep_shape in (True, False):
        seen = set()
        for seed in range(16):
            torch.manual_seed(seed)
            turned = RandomRot90(keep_shape=keep_shape)(pil)
            torch.manual_seed(seed)
            expected = RandomRot90(keep_shape=keep_shape)(torch.from_numpy(array)[None])[0]
            assert np.array_equal(np.asarray(turned), expected.numpy())
            seen.add(np.asarray(turned).tobytes())
        assert len(seen) == (2 if keep_shape else 4)

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomaly_synth_aug.data.io import load_image, load_mask, load_sample
from anomaly_synth_aug.data.sample import AnomalySample
from anomaly_synth_aug.errors import CorruptFileError, InvalidInputError, MaskError


def test_grayscale_promoted_to_rgb(tmp_path: Path) -> None:
    Image.fromarray(np.full((5, 7), 200, np.uint8)).save(tmp_path / "g.png")
    img = load_image(tmp_path / "g.png")
    assert img.shape == (3, 5, 7) and img.dtype == torch.float32
    assert torch.allclose(img, torch.full_like(img, 200 / 255))


def test_soft_mask_binarised_at_127(tmp_path: Path) -> None:
    Image.fromarray(np.array([[0, 127, 128, 255]], np.uint8)).save(tmp_path / "m.png")
    assert load_mask(tmp_path / "m.png").tolist() == [[False, False, True, True]]


def test_corrupt_image_names_file(tmp_path: Path) -> None:
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    with pytest.raises(CorruptFileError, match=r"broken\.jpg.*Fix:"):
        load_image(bad)


def test_missing_file_names_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="nope.png: file not found"):
        load_image(tmp_path / "nope.png")


def test_mask_size_mismatch(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "i.png")
    Image.fromarray(np.full((5, 4), 255, np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(MaskError, match=r"m\.png: mask size \(5, 4\).*\(4, 4\)"):
        load_sample(tmp_path / "i.png", tmp_path / "m.png", "x")


def test_empty_mask_required(tmp_path: Path) -> None:
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "i.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "m.png")
    with pytest.raises(MaskError, match="empty after binarising"):
        load_sample(tmp_path / "i.png", tmp_path / "m.png", "x", require_defect=True)


def test_sample_to_image_item_has_bool_mask() -> None:
    normal = AnomalySample.normal(torch.rand(1, 6, 6))
    item = normal.to_image_item()
    assert item.gt_mask.dtype == torch.bool and not item.gt_mask.any()
    assert int(item.gt_label) == 0 and item.image_path is None
    with pytest.raises(MaskError, match="differs from image size"):
        AnomalySample(image=torch.rand(3, 6, 6), mask=torch.ones(5, 6, dtype=torch.bool))


def test_zero_one_masks_are_read_as_defects_with_one_warning(tmp_path: Path, caplog) -> None:
    """Labelling tools often write 0/1 masks; the > 127 rule used to make every one of them empty."""
    for name in ("a.png", "b.png"):
        Image.fromarray(np.array([[0, 1, 1, 0]], np.uint8)).save(tmp_path / name)
    with caplog.at_level("WARNING", logger="anomaly_synth_aug.data.io"):
        first = load_mask(tmp_path / "a.png")
        second = load_mask(tmp_path / "b.png")
    assert first.tolist() == second.tolist() == [[False, True, True, False]]
    assert len([r for r in caplog.records if "does not reach the threshold" in r.message]) == 1  # once per folder
    Image.fromarray(np.array([[0, 200, 100, 0]], np.uint8)).save(tmp_path / "soft.png")
    assert load_mask(tmp_path / "soft.png").tolist() == [[False, True, False, False]]  # it reaches 127: thresholded


def test_masks_that_never_reach_the_threshold_mark_their_defect_with_small_values(tmp_path: Path) -> None:
    """Palette masks (defect colour dark in gray), 16-bit 0/255 masks and faint masks all came out empty."""
    palette = Image.fromarray(np.array([[0, 1, 1, 0]], np.uint8), mode="P")
    palette.putpalette([0, 0, 0, 128, 0, 0] + [0] * 762)  # index 1 = dark red: gray 38
    palette.save(tmp_path / "palette.png")
    assert load_mask(tmp_path / "palette.png").tolist() == [[False, True, True, False]]
    Image.fromarray(np.array([[0, 255, 0, 255]], np.uint16)).save(tmp_path / "wide_0_255.png")
    assert load_mask(tmp_path / "wide_0_255.png").tolist() == [[False, True, False, True]]
    Image.fromarray(np.array([[0, 100, 127, 0]], np.uint8)).save(tmp_path / "faint.png")
    assert load_mask(tmp_path / "faint.png").tolist() == [[False, True, True, False]]
    Image.fromarray(np.zeros((1, 4), np.uint8)).save(tmp_path / "empty.png")
    assert not load_mask(tmp_path / "empty.png").any()


def test_sixteen_bit_grayscale_images_and_masks_are_scaled_not_clipped(tmp_path: Path) -> None:
    """Pillow clipped 16-bit values to 255: a 16-bit photo came out all white."""
    values = np.array([[0, 16384, 32768, 65535]], np.uint16)
    Image.fromarray(values).save(tmp_path / "wide.png")
    image = load_image(tmp_path / "wide.png")
    assert image[0, 0].tolist() == pytest.approx([0.0, 64 / 255, 128 / 255, 1.0], abs=1 / 255)
    Image.fromarray(np.array([[0, 65535, 30000, 0]], np.uint16)).save(tmp_path / "mask16.png")
    assert load_mask(tmp_path / "mask16.png").tolist() == [[False, True, False, False]]
    Image.fromarray(np.array([[0, 1, 0, 1]], np.uint16)).save(tmp_path / "mask01_16.png")
    assert load_mask(tmp_path / "mask01_16.png").tolist() == [[False, True, False, True]]

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
    Image.fromarray(np.full((4, 4), 100, np.uint8)).save(tmp_path / "m.png")  # soft, below threshold
    with pytest.raises(MaskError, match="empty after binarising"):
        load_sample(tmp_path / "i.png", tmp_path / "m.png", "x", require_defect=True)


def test_sample_to_image_item_has_bool_mask() -> None:
    normal = AnomalySample.normal(torch.rand(1, 6, 6))
    item = normal.to_image_item()
    assert item.gt_mask.dtype == torch.bool and not item.gt_mask.any()
    assert int(item.gt_label) == 0 and item.image_path is None
    with pytest.raises(MaskError, match="differs from image size"):
        AnomalySample(image=torch.rand(3, 6, 6), mask=torch.ones(5, 6, dtype=torch.bool))

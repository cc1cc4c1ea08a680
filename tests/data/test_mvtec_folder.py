"""The one MVTec-folder loader: bad layouts are named up front, before any fit or training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from shared_fixtures import make_folder_datamodule, make_mvtec_layout

from anomaly_synth_aug.data.mvtec_datamodule import mvtec_datamodule
from anomaly_synth_aug.data.mvtec_folder import check_folder_masks, mvtec_folder, scan_mvtec_folder
from anomaly_synth_aug.errors import CorruptFileError, InvalidInputError, MaskError


def test_scan_finds_every_file_and_the_folder_reads_them(tiny_mvtec: Path) -> None:
    layout = scan_mvtec_folder(tiny_mvtec)
    assert layout.defect_types == ["blob", "scratch"] and len(layout.train_normals) == 12
    assert all(
        mask is not None and mask.stem == image.stem + "_mask"
        for pairs in layout.defects.values()
        for image, mask in pairs
    )
    folder = mvtec_folder(layout, train_batch_size=2)
    folder.setup()
    assert len(folder.test_data) == len(layout.test_normals) + 12


def test_a_defect_image_without_its_mask_is_named(tiny_mvtec: Path) -> None:
    """anomalib's Folder failed inside pandas ("cannot assign 5 input values ...") and named no file."""
    mask = next((tiny_mvtec / "ground_truth" / "blob").glob("*_mask.png"))
    mask.unlink()
    image_name = mask.name.replace("_mask", "")
    with pytest.raises(MaskError, match=f"{image_name}: this defect image has no mask"):
        scan_mvtec_folder(tiny_mvtec)
    with pytest.raises(MaskError, match="no mask"):
        mvtec_datamodule(tiny_mvtec, None)


@pytest.mark.parametrize("defect_type", ["blob", "scratch"])
def test_a_mask_without_its_image_is_named(tiny_mvtec: Path, defect_type: str) -> None:
    """An extra mask was blamed on another image ("would give this image 001_mask.png") or on another type's folder."""
    source = next((tiny_mvtec / "ground_truth" / defect_type).glob("*_mask.png"))
    orphan = source.with_name("zzz_mask.png")
    orphan.write_bytes(source.read_bytes())
    with pytest.raises(MaskError, match=f"{orphan}: this mask has no defect image in .*test/{defect_type}"):
        scan_mvtec_folder(tiny_mvtec)
    with pytest.raises(MaskError, match=f"{orphan}: this mask has no defect image in .*test/{defect_type}"):
        check_folder_masks(make_folder_datamodule(tiny_mvtec))


def test_masks_that_sort_differently_from_their_images_are_refused(tmp_path: Path) -> None:
    """Folder pairs sorted images with sorted masks: 'a.png'/'a1.png' against 'a1_mask'/'a_mask' would swap them."""
    root = make_mvtec_layout(tmp_path / "swap", defects={"blob": 0})
    (root / "test" / "blob").mkdir(exist_ok=True)
    (root / "ground_truth" / "blob").mkdir(parents=True, exist_ok=True)
    for stem in ("a", "a1"):
        Image.fromarray(np.zeros((48, 64), np.uint8)).save(root / "test" / "blob" / f"{stem}.png")
        Image.fromarray(np.full((48, 64), 255, np.uint8)).save(root / "ground_truth" / "blob" / f"{stem}_mask.png")
    with pytest.raises(MaskError, match="pairs masks with images by sorted file name"):
        scan_mvtec_folder(root)


def test_a_corrupt_test_image_is_found_before_anything_runs(tiny_mvtec: Path) -> None:
    broken = next((tiny_mvtec / "test" / "good").iterdir())
    broken.write_bytes(broken.read_bytes()[:40])  # truncated
    with pytest.raises(CorruptFileError, match=broken.name):
        scan_mvtec_folder(tiny_mvtec)
    assert scan_mvtec_folder(tiny_mvtec, decode=False).test_normals  # the quick scan does not decode


def test_a_mask_of_another_size_and_a_wrong_layout_are_named(tiny_mvtec: Path, tmp_path: Path) -> None:
    mask = next((tiny_mvtec / "ground_truth" / "scratch").glob("*_mask.png"))
    Image.fromarray(np.zeros((10, 10), np.uint8)).save(mask)
    with pytest.raises(MaskError, match=f"{mask.name}: mask size"):
        scan_mvtec_folder(tiny_mvtec)
    with pytest.raises(InvalidInputError, match="not an MVTec-layout"):
        scan_mvtec_folder(tmp_path)
    with pytest.raises(InvalidInputError, match="data folder not found"):
        scan_mvtec_folder(tmp_path / "absent")
    (tmp_path / "a_file.png").write_bytes(b"")
    with pytest.raises(InvalidInputError, match="a_file.png: this is a file, not a data folder"):
        scan_mvtec_folder(tmp_path / "a_file.png")  # "not found" sent users looking for a folder that is there


def test_without_test_normals_every_setup_holds_back_the_same_train_normals(tiny_mvtec: Path, tmp_path: Path) -> None:
    """anomalib takes test normals from train when test/good is missing; unseeded, a second setup (the trainer's)
    drew other ones, so images a generator was fitted on could be tested as unseen normals."""
    import shutil

    import torch

    root = tmp_path / "no_test_good"
    shutil.copytree(tiny_mvtec, root)
    shutil.rmtree(root / "test" / "good")

    def test_normals() -> set[str]:
        folder = mvtec_folder(root, train_batch_size=2)
        folder.setup()
        samples = folder.test_data.samples
        return set(samples.loc[samples.label_index == 0, "image_path"])

    first = test_normals()
    torch.rand(100)  # whatever ran in between
    assert first and test_normals() == first


def test_the_digest_follows_the_files_not_where_the_folder_lies(tiny_mvtec: Path, tmp_path: Path) -> None:
    import shutil

    moved = tmp_path / "elsewhere" / "tiny"
    shutil.copytree(tiny_mvtec, moved)
    digest = scan_mvtec_folder(tiny_mvtec, decode=False).digest()
    assert scan_mvtec_folder(moved, decode=False).digest() == digest
    mask = moved / "ground_truth" / "blob" / "000_mask.png"
    mask.write_bytes(mask.read_bytes()[:-1] + b"\1")  # its last byte (the end chunk's checksum) only
    assert scan_mvtec_folder(moved, decode=False).digest() != digest  # another mask (of the same size)
    shutil.copytree(tiny_mvtec, moved, dirs_exist_ok=True)
    (moved / "train" / "good" / "001.png").unlink()
    assert scan_mvtec_folder(moved, decode=False).digest() != digest  # a normal less

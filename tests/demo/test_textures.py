"""The embedded demo dataset: MVTec layout, exact drawn masks, labelled as a demo, reproducible."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from anomaly_synth_aug.data.fewshot import few_shot_split
from anomaly_synth_aug.demo.textures import (
    DEFECT_PAINTERS,
    DEMO_TEXTURES,
    build_texture_dataset,
    load_texture,
    random_crop,
)
from anomaly_synth_aug.errors import InvalidInputError


@pytest.mark.parametrize("texture", DEMO_TEXTURES)
def test_textures_ship_with_scikit_image(texture: str) -> None:
    image = load_texture(texture)
    assert image.dtype == np.uint8 and image.ndim == 2 and min(image.shape) >= 256


def test_builds_a_labelled_mvtec_layout_with_exact_masks(tmp_path: Path) -> None:
    root = build_texture_dataset(tmp_path, "grass", image_size=64, n_train=5, n_test_good=2, n_per_defect=3)
    assert root.name == "DEMO_textures_grass"
    assert "DEMO DATASET" in (root / "README.txt").read_text()
    assert len(list((root / "train" / "good").glob("*.png"))) == 5
    split = few_shot_split(root)
    assert split.defect_types == ["blob", "crack", "scratch"]
    assert len(split.shots) == 3 and len(split.eval_anomalies) == 6  # one shot, two held out per type
    for record in split.shots + split.eval_anomalies:
        image = np.asarray(Image.open(record.image_path), dtype=np.int16)
        mask = np.asarray(Image.open(record.mask_path))
        assert image.shape == mask.shape == (64, 64)
        assert set(np.unique(mask)) == {0, 255}  # binary: the drawn region exactly


@pytest.mark.parametrize("defect_type", sorted(DEFECT_PAINTERS))
def test_defects_change_exactly_the_masked_pixels(defect_type: str) -> None:
    rng = np.random.default_rng(3)
    crop = random_crop(load_texture("gravel"), 96, rng)
    image, mask = DEFECT_PAINTERS[defect_type](crop, rng)
    inside = mask > 0
    assert inside.any()
    assert np.array_equal(image[~inside], crop[~inside])
    assert (image[inside] != crop[inside]).mean() > 0.9


def test_same_seed_same_files(tmp_path: Path) -> None:
    first = build_texture_dataset(tmp_path / "a", "brick", image_size=32, n_train=2, n_test_good=1, n_per_defect=1)
    second = build_texture_dataset(tmp_path / "b", "brick", image_size=32, n_train=2, n_test_good=1, n_per_defect=1)
    files = sorted(p.relative_to(first) for p in first.rglob("*.png"))
    assert files == sorted(p.relative_to(second) for p in second.rglob("*.png"))
    for name in files:
        assert (first / name).read_bytes() == (second / name).read_bytes()


@pytest.mark.parametrize(
    ("arguments", "match"),
    [
        ({"texture": "marble"}, "unknown demo texture"),
        ({"defect_types": ["dent"]}, "unknown demo defect types"),
        ({"image_size": 1024}, "larger than the texture"),
        ({"n_per_defect": 0}, ">= 1"),
    ],
)
def test_bad_arguments_are_named(tmp_path: Path, arguments: dict, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        build_texture_dataset(tmp_path, **arguments)


def test_rebuild_keeps_identical_files_and_replaces_changed_ones(tmp_path: Path) -> None:
    small = {"image_size": 32, "n_train": 3, "n_test_good": 1, "n_per_defect": 1}
    root = build_texture_dataset(tmp_path, "brick", **small)
    first_normal = root / "train" / "good" / "000.png"
    mtime = first_normal.stat().st_mtime_ns
    assert build_texture_dataset(tmp_path, "brick", **small) == root
    assert first_normal.stat().st_mtime_ns == mtime  # untouched: caches keyed on file times stay valid

    build_texture_dataset(tmp_path, "brick", **{**small, "n_train": 2})
    assert sorted(p.name for p in (root / "train" / "good").iterdir()) == ["000.png", "001.png"]  # no stale files
    assert [p.name for p in tmp_path.iterdir()] == [root.name]  # no staging leftovers


def test_never_replaces_a_folder_it_did_not_build(tmp_path: Path) -> None:
    (tmp_path / "DEMO_textures_brick").mkdir()
    (tmp_path / "DEMO_textures_brick" / "precious.png").write_bytes(b"x")
    with pytest.raises(InvalidInputError, match="not a demo dataset"):
        build_texture_dataset(tmp_path, "brick", image_size=32, n_train=1, n_test_good=1, n_per_defect=1)
    assert (tmp_path / "DEMO_textures_brick" / "precious.png").exists()

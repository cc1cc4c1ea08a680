import os
from pathlib import Path

import pytest

from anomaly_synth_aug.cache.layout import CacheLayout, UnsafeCachePathError, check_defect_type_name
from anomaly_synth_aug.errors import InvalidInputError


def test_names_follow_mvtec_layout(tmp_path: Path) -> None:
    sample_id = CacheLayout.sample_id("crack", 7)
    assert sample_id == "crack/000007"
    assert CacheLayout.image_name(sample_id) == "images/crack/000007.png"
    assert CacheLayout.mask_name(sample_id) == "ground_truth/crack/000007_mask.png"
    layout = CacheLayout(tmp_path)
    assert layout.resolve("images/crack/000007.png") == (tmp_path / "images/crack/000007.png").resolve()


@pytest.mark.parametrize(
    "name", ["/etc/passwd", "", "../outside.png", "images/../../outside.png", "C:/x.png", "images\\..\\x.png"]
)
def test_names_leaving_the_cache_are_refused(tmp_path: Path, name: str) -> None:
    with pytest.raises(UnsafeCachePathError) as info:
        CacheLayout(tmp_path / "cache").resolve(name)
    assert "Fix:" in str(info.value)


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_symlink_pointing_out_is_refused_and_inside_is_allowed(tmp_path: Path) -> None:
    root = tmp_path / "cache"
    (root / "images").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    (root / "images" / "evil").symlink_to(outside, target_is_directory=True)
    (root / "images" / "alias").symlink_to(root / "images", target_is_directory=True)
    layout = CacheLayout(root)
    with pytest.raises(UnsafeCachePathError, match="symlink"):
        layout.resolve("images/evil/000000.png")
    assert layout.resolve("images/alias/x.png").is_relative_to(root.resolve())


@pytest.mark.parametrize("name", ["crack", "blow_hole", "type-2", "v1.0"])
def test_plain_defect_type_names_pass(name: str) -> None:
    assert check_defect_type_name(name) == name


@pytest.mark.parametrize("name", ["", "a/b", "..", ".hidden", "a b", "x.tmp", "-x"])
def test_defect_types_that_cannot_be_folders_are_refused(name: str) -> None:
    with pytest.raises(InvalidInputError, match="cannot be used as a cache folder name"):
        check_defect_type_name(name)

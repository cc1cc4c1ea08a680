"""PerlinGenerator: offline by construction, textures from a local folder, placements and tiny images."""

from __future__ import annotations

import socket
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.data.utils import download
from classic_helpers import surface
from PIL import Image

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators import PerlinGenerator


def _seed(value: int) -> torch.Generator:
    return torch.Generator().manual_seed(value)


def _refuse(*args: object, **kwargs: object) -> None:
    raise AssertionError("PerlinGenerator tried to download")


def test_never_downloads(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(socket.socket, "connect", _refuse)
    monkeypatch.setattr(download, "download_and_extract", _refuse)
    monkeypatch.setattr(download, "urlretrieve", _refuse)
    batch = PerlinGenerator().generate([surface(40, 56, seed=0)], generator=_seed(0))
    assert bool(batch.masks[0].any())
    assert list(tmp_path.iterdir()) == [], "nothing (e.g. ./datasets/dtd) may be written"


def test_noise_source_keeps_gray_images_gray() -> None:
    image = surface(40, 56, seed=1)
    out = PerlinGenerator().generate([image] * 4, generator=_seed(1)).images
    assert all(torch.equal(o[0], o[1]) and torch.equal(o[1], o[2]) for o in out)


# anomalib reads textures with torchvision.io, which warns about its own deprecation.
@pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
def test_texture_dir_is_the_anomaly_source(tmp_path: Path) -> None:
    red = np.zeros((32, 32, 3), np.uint8)
    red[..., 0] = 255
    Image.fromarray(red).save(tmp_path / "red.png")
    generator = PerlinGenerator(texture_dir=str(tmp_path), blend_factor=1.0)
    batch = generator.generate([surface(40, 56, seed=2)] * 4, generator=_seed(2))
    # A gray image only becomes coloured if the coloured texture was blended in.
    assert any(bool((out[0] != out[1]).any()) for out in batch.images)


@pytest.mark.filterwarnings("ignore:The image decoding:DeprecationWarning")
def test_a_seed_picks_the_same_texture_whatever_order_the_file_system_lists_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """anomalib kept ``rglob``'s order, which differs between file systems: one seed, other textures."""
    for index, shade in enumerate((40, 120, 200, 250)):
        Image.fromarray(np.full((32, 32, 3), shade, np.uint8)).save(tmp_path / f"t{index}.png")
    images = [surface(40, 56, seed=seed) for seed in range(4)]
    listed = PerlinGenerator(texture_dir=str(tmp_path), blend_factor=1.0).generate(images, generator=_seed(3))
    rglob = Path.rglob
    monkeypatch.setattr(Path, "rglob", lambda self, pattern: reversed(sorted(rglob(self, pattern))))
    reversed_listing = PerlinGenerator(texture_dir=str(tmp_path), blend_factor=1.0).generate(images, generator=_seed(3))
    assert all(torch.equal(a, b) for a, b in zip(listed.images, reversed_listing.images, strict=True))


def test_texture_dir_must_hold_images(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="texture_dir is not a folder"):
        PerlinGenerator(texture_dir=str(tmp_path / "missing"))
    (tmp_path / "notes.txt").write_text("no images here")
    with pytest.raises(InvalidInputError, match="texture_dir holds no images"):
        PerlinGenerator(texture_dir=str(tmp_path))


@pytest.mark.parametrize("name", ["texture.bmp", "texture.tif"])
def test_textures_anomalib_cannot_decode_are_named_at_construction(tmp_path: Path, name: str) -> None:
    """anomalib collects every torchvision image extension but decodes with torchvision.io: a folder of .bmp or
    .tif textures was accepted, then training failed at the first such texture drawn, without naming it."""
    Image.fromarray(np.full((32, 32, 3), 90, np.uint8)).save(tmp_path / "good.png")
    Image.fromarray(np.full((32, 32, 3), 200, np.uint8)).save(tmp_path / name)
    with pytest.raises(InvalidInputError, match="convert the textures to PNG or JPEG") as error:
        PerlinGenerator(texture_dir=str(tmp_path))
    assert name in str(error.value)


def test_small_placement_is_hit_and_respected() -> None:
    placement = torch.zeros(40, 56, dtype=torch.bool)
    placement[30:33, 50:54] = True
    batch = PerlinGenerator().generate([surface(40, 56, seed=3)] * 3, masks=[placement] * 3, generator=_seed(3))
    assert all(bool(m.any()) and not bool((m & ~placement).any()) for m in batch.masks)


def test_images_smaller_than_anomalib_supports() -> None:
    # anomalib's noise fails for sides of 16 px or less; the wrapper pads them.
    images = [surface(12, 14, seed=4), surface(9, 40, seed=5)]
    for seed in range(10):
        batch = PerlinGenerator().generate(images, generator=_seed(seed))
        assert [tuple(m.shape) for m in batch.masks] == [(12, 14), (9, 40)]


def test_blend_factor_list_from_json_config_behaves_like_tuple() -> None:
    image = [surface(40, 56, seed=6)]
    as_list = PerlinGenerator(blend_factor=[0.3, 0.6]).generate(image, generator=_seed(6))
    as_tuple = PerlinGenerator(blend_factor=(0.3, 0.6)).generate(image, generator=_seed(6))
    assert torch.equal(as_list.images[0], as_tuple.images[0])


def test_construction_is_deterministic_and_leaves_global_rng_alone() -> None:
    state = torch.get_rng_state()
    first, second = PerlinGenerator(), PerlinGenerator()
    assert torch.equal(torch.get_rng_state(), state)
    image = [surface(40, 56, seed=7)]
    outputs = [g.generate(image, generator=_seed(7)).images[0] for g in (first, second)]
    assert torch.equal(*outputs)


@pytest.mark.parametrize("blend_factor", [1.5, (0.8, 0.2), (-0.1, 0.5)])
def test_bad_blend_factor_is_refused(blend_factor: object) -> None:
    with pytest.raises(InvalidInputError, match="blend_factor must be a \\(min, max\\) pair"):
        PerlinGenerator(blend_factor=blend_factor)

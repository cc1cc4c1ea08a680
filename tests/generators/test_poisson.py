"""PoissonBlendGenerator: needs a source pool from fit, blends patches of it, persists it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from classic_helpers import normals, surface

from anomaly_synth_aug.errors import InvalidInputError, NotFittedError
from anomaly_synth_aug.generators import AnomalyGenerator, PoissonBlendGenerator
from anomaly_synth_aug.generators._patch_ops import bounding_box
from anomaly_synth_aug.generators.poisson import POOL_FILE


def _seed(value: int) -> torch.Generator:
    return torch.Generator().manual_seed(value)


def test_generate_before_fit_is_refused() -> None:
    with pytest.raises(NotFittedError):
        PoissonBlendGenerator().generate([surface(40, 56, seed=0)])
    with pytest.raises(InvalidInputError, match="got no normal images"):
        PoissonBlendGenerator().fit([], [])


def test_changes_stay_inside_one_patch_of_the_configured_size() -> None:
    generator = PoissonBlendGenerator("normal", patch_ratio=(0.2, 0.3)).fit(normals(), [])
    for seed in range(5):
        box = bounding_box(generator.generate([surface(40, 56, seed=seed)], generator=_seed(seed)).masks[0])
        assert box.height <= round(0.3 * 40) and box.width <= round(0.3 * 56)


def test_patch_content_comes_from_the_pool() -> None:
    stripes = torch.zeros(3, 40, 56)
    stripes[:, :, ::4] = 1.0  # strong vertical stripes: only the pool has them
    generator = PoissonBlendGenerator("normal", patch_ratio=(0.5, 0.5)).fit([stripes], [])
    target = torch.full((3, 40, 56), 0.5)
    out = generator.generate([target], generator=_seed(1))
    box = bounding_box(out.masks[0])
    patch = out.images[0][0, box.top + 2 : box.top + box.height - 2, box.left + 2 : box.left + box.width - 2]
    horizontal = (patch[:, 1:] - patch[:, :-1]).abs().mean()
    vertical = (patch[1:] - patch[:-1]).abs().mean()
    assert float(horizontal) > 0.2 > float(vertical)


def test_pool_is_limited_and_drawn_with_the_fit_seed() -> None:
    images = [surface(40, 56, seed=i) for i in range(6)]
    first = PoissonBlendGenerator(pool_size=2).fit(images, [], generator=_seed(0))
    again = PoissonBlendGenerator(pool_size=2).fit(images, [], generator=_seed(0))
    other = PoissonBlendGenerator(pool_size=2).fit(images, [], generator=_seed(1))
    assert len(first._pool) == 2
    assert first.fingerprint() == again.fingerprint() != other.fingerprint()


def test_sources_of_another_size_are_resized() -> None:
    generator = PoissonBlendGenerator().fit([surface(64, 48, seed=0)], [])
    batch = generator.generate([surface(30, 36, seed=1)], generator=_seed(2))
    assert batch.images[0].shape == (3, 30, 36)


def test_saved_pool_makes_the_dataset_unnecessary(tmp_path: Path) -> None:
    folder = PoissonBlendGenerator().fit(normals(), []).save(tmp_path / "poisson")
    assert (folder / POOL_FILE).is_file()
    loaded = AnomalyGenerator.load(folder)
    assert len(loaded.generate([surface(40, 56, seed=3)], generator=_seed(3))) == 1
    (folder / POOL_FILE).unlink()
    with pytest.raises(InvalidInputError, match="a file of the saved generator is missing"):
        AnomalyGenerator.load(folder)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"clone_mode": "seamless"}, "unknown clone_mode 'seamless'"),
        ({"patch_ratio": (0.5, 0.2)}, "patch_ratio must be a \\(min, max\\) pair"),
        ({"pool_size": 0}, "pool_size must be >= 1"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        PoissonBlendGenerator(**kwargs)


def test_images_too_small_to_clone_are_refused() -> None:
    generator = PoissonBlendGenerator().fit(normals(), [])
    with pytest.raises(InvalidInputError, match="4x30 is too small for Poisson blending"):
        generator.generate([torch.rand(3, 4, 30)])


def test_a_placement_mask_on_the_image_border_alone_is_named_as_the_cause() -> None:
    """Cloning leaves the outermost pixels as they are: a one-pixel border strip can never change."""
    generator = PoissonBlendGenerator().fit(normals(), [])
    strip = torch.zeros(40, 56, dtype=torch.bool)
    strip[0, :] = True
    with pytest.raises(InvalidInputError, match="placement mask lies within 8 px of the image border") as refused:
        generator.generate([surface(40, 56, seed=9)], masks=[strip], generator=_seed(0))
    assert "widen the placement mask inward" in refused.value.fix
    strip[:12, :] = True  # reaching inward, the same generator places its patch there
    batch = generator.generate([surface(40, 56, seed=9)], masks=[strip], generator=_seed(0))
    assert batch.masks[0].any() and not batch.masks[0][12:].any()

"""One conformance suite for every classic generator: the ``AnomalyGenerator`` contract, checked bit for bit."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from classic_helpers import normals, shots, surface

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators import (
    AnomalyGenerator,
    CutPasteGenerator,
    MixtureGenerator,
    PerlinGenerator,
    PoissonBlendGenerator,
    RealShotPasteGenerator,
)


def _fitted(generator: AnomalyGenerator) -> AnomalyGenerator:
    return generator.fit(normals(), shots(), generator=torch.Generator().manual_seed(0))


FACTORIES: dict[str, Callable[[], AnomalyGenerator]] = {
    "perlin": PerlinGenerator,
    "perlin_dual": lambda: PerlinGenerator(dual_mask=True, blend_factor=0.7),
    "cutpaste_normal": lambda: CutPasteGenerator("normal"),
    "cutpaste_scar": lambda: CutPasteGenerator("scar"),
    "cutpaste_both": lambda: CutPasteGenerator("both"),
    "poisson_mixed": lambda: _fitted(PoissonBlendGenerator("mixed")),
    "poisson_normal": lambda: _fitted(PoissonBlendGenerator("normal")),
    "real_paste_alpha": lambda: _fitted(RealShotPasteGenerator()),
    "real_paste_poisson": lambda: _fitted(RealShotPasteGenerator(blend="poisson")),
    # components that share their defect types: the whole contract holds (typed requests included)
    "mixture": lambda: _fitted(
        MixtureGenerator([RealShotPasteGenerator(), RealShotPasteGenerator(blend="poisson")], weights=[1, 2])
    ),
}


@pytest.fixture(params=sorted(FACTORIES), scope="module")
def generator(request: pytest.FixtureRequest) -> AnomalyGenerator:
    return FACTORIES[request.param]()


def _inputs() -> list[torch.Tensor]:
    """Images of different sizes (and one tinted) in one batch."""
    return [surface(40, 56, seed=1), surface(33, 47, seed=2, gray=False), surface(48, 36, seed=3)]


def _seed(value: int) -> torch.Generator:
    return torch.Generator().manual_seed(value)


def _assert_same(first, second) -> None:
    assert first.defect_types == second.defect_types
    for a, b in zip(first.images + first.masks, second.images + second.masks, strict=True):
        assert torch.equal(a, b)


def test_changes_exactly_inside_returned_mask(generator: AnomalyGenerator) -> None:
    images = _inputs()
    originals = [img.clone() for img in images]
    for seed in range(3):
        batch = generator.generate(images, generator=_seed(seed))
        assert len(batch) == len(images)
        for image, out, mask, defect_type in zip(images, batch.images, batch.masks, batch.defect_types, strict=True):
            assert out.shape == image.shape and out.dtype == torch.float32
            assert mask.shape == image.shape[-2:] and mask.dtype == torch.bool
            assert 0.0 <= float(out.min()) and float(out.max()) <= 1.0
            assert bool(mask.any())
            assert torch.equal((out != image).any(dim=0), mask)
            assert defect_type in generator.defect_types
    assert all(torch.equal(a, b) for a, b in zip(images, originals, strict=True)), "inputs were modified"


def test_same_seed_same_output_and_different_seed_differs(generator: AnomalyGenerator) -> None:
    images = _inputs()
    first = generator.generate(images, generator=_seed(7))
    _assert_same(first, generator.generate(images, generator=_seed(7)))
    other = generator.generate(images, generator=_seed(8))
    assert any(not torch.equal(a, b) for a, b in zip(first.masks, other.masks, strict=True))


def test_an_int_seed_is_the_same_as_a_generator_seeded_with_it(generator: AnomalyGenerator) -> None:
    images = _inputs()
    _assert_same(generator.generate(images, generator=11), generator.generate(images, generator=_seed(11)))
    with pytest.raises(InvalidInputError, match="int seed"):
        generator.generate(images, generator="11")  # type: ignore[arg-type]


def test_batch_equals_per_image_calls(generator: AnomalyGenerator) -> None:
    images = _inputs()
    batch = generator.generate(images, generator=_seed(3))
    sequential = _seed(3)
    for index, image in enumerate(images):
        single = generator.generate([image], generator=sequential)
        assert torch.equal(single.images[0], batch.images[index])
        assert torch.equal(single.masks[0], batch.masks[index])


def test_placement_mask_is_respected(generator: AnomalyGenerator) -> None:
    images = _inputs()
    placements = []
    for image in images:
        placement = torch.zeros(image.shape[-2:], dtype=torch.bool)
        placement[5:20, 8:30] = True
        placements.append(placement)
    batch = generator.generate(images, masks=placements, generator=_seed(4))
    for mask, placement in zip(batch.masks, placements, strict=True):
        assert bool(mask.any()) and not bool((mask & ~placement).any())


def test_requested_defect_type_is_returned(generator: AnomalyGenerator) -> None:
    images = _inputs()
    for defect_type in generator.defect_types:
        batch = generator.generate(images, defect_types=defect_type, generator=_seed(5))
        assert batch.defect_types == [defect_type] * len(images)


def test_seeded_call_leaves_global_rng_alone(generator: AnomalyGenerator) -> None:
    state = torch.get_rng_state()
    generator.generate(_inputs(), generator=_seed(6))
    assert torch.equal(torch.get_rng_state(), state)


def test_save_load_gives_identical_output(generator: AnomalyGenerator, tmp_path: Path) -> None:
    loaded = AnomalyGenerator.load(generator.save(tmp_path / "saved"))
    assert type(loaded) is type(generator)
    assert loaded.get_config() == generator.get_config()
    assert loaded.fingerprint() == generator.fingerprint()
    _assert_same(generator.generate(_inputs(), generator=_seed(9)), loaded.generate(_inputs(), generator=_seed(9)))

"""One conformance suite for every packaged generator: the ``AnomalyGenerator`` contract.

Classic generators are checked bit for bit. The diffusion generator is held to the same contract
with two documented tolerances (``EXACT``): its returned mask may hold pixels the defect left
unchanged (the image changes only inside it), and a batch matches per-image calls up to float
rounding in the UNet kernels, which differ by batch size.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from classic_helpers import normals, shots, surface

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators.diffusion import DiffusionAnomalyGenerator
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


TINY_DIFFUSION = {
    "patch_size": 16,
    "block_out_channels": (8, 16),
    "max_steps": 4,
    "batch_size": 4,
    "num_inference_steps": 3,
    "guidance_candidates": (1.0, 3.0),
    "calibration_samples": 1,
    "progress": False,
}

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
    "real_paste_context": lambda: _fitted(RealShotPasteGenerator(context_placement=True)),
    # components that share their defect types: the whole contract holds (typed requests included)
    "mixture": lambda: _fitted(
        MixtureGenerator([RealShotPasteGenerator(), RealShotPasteGenerator(blend="poisson")], weights=[1, 2])
    ),
    # a tiny diffusion model with the product's sampling defaults (inversion, calibrated guidance, filters)
    "diffusion": lambda: _fitted(DiffusionAnomalyGenerator(**TINY_DIFFUSION)),
    "diffusion_repaint": lambda: _fitted(DiffusionAnomalyGenerator(**TINY_DIFFUSION, mode="repaint")),
}
#: Generators whose output is checked bit for bit (see the module docstring for the others).
EXACT = {name for name in FACTORIES if not name.startswith("diffusion")}


def _inputs() -> list[torch.Tensor]:
    """Images of different sizes (and one tinted) in one batch."""
    return [surface(40, 56, seed=1), surface(33, 47, seed=2, gray=False), surface(48, 36, seed=3)]


def _seed(value: int) -> torch.Generator:
    return torch.Generator().manual_seed(value)


def _assert_same(first, second) -> None:
    assert first.defect_types == second.defect_types
    for a, b in zip(first.images + first.masks, second.images + second.masks, strict=True):
        assert torch.equal(a, b)


def _name(generator: AnomalyGenerator) -> str:
    return next(name for name, factory in _BUILT.items() if factory is generator)


_BUILT: dict[str, AnomalyGenerator] = {}


@pytest.fixture(params=sorted(FACTORIES), scope="module")
def generator(request: pytest.FixtureRequest) -> AnomalyGenerator:
    _BUILT[request.param] = FACTORIES[request.param]()
    return _BUILT[request.param]


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
            changed = (out != image).any(dim=0)
            if _name(generator) in EXACT:
                assert torch.equal(changed, mask)
            else:
                assert not bool((changed & ~mask).any()), "pixels outside the returned mask changed"
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
        assert torch.equal(single.masks[0], batch.masks[index])
        if _name(generator) in EXACT:
            assert torch.equal(single.images[0], batch.images[index])
        else:  # 5e-4 is an eighth of an 8-bit grey level
            assert torch.allclose(single.images[0], batch.images[index], atol=5e-4)


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

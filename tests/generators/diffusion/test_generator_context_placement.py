"""``DiffusionAnomalyGenerator(context_placement=True)``: each type's masks are centred on its shots' surface."""

import json
from pathlib import Path

import pytest
import torch
from two_surfaces import share_on_left, shots, two_surfaces

from anomaly_synth_aug.errors import NotFittedError
from anomaly_synth_aug.generators.base import AnomalyGenerator
from anomaly_synth_aug.generators.diffusion import DiffusionAnomalyGenerator


@pytest.fixture(scope="module")
def fitted() -> DiffusionAnomalyGenerator:
    from diffusion_helpers import TINY

    generator = DiffusionAnomalyGenerator(
        category="two_surfaces", guidance_scale=1.0, max_retries=0, quality_filter=False, context_placement=True,
        **{**TINY, "max_steps": 2, "batch_size": 4, "num_inference_steps": 2, "progress": False},
    )  # fmt: skip
    normals = [two_surfaces(100 + i) for i in range(3)]
    return generator.fit(normals, shots(), generator=torch.Generator().manual_seed(0))


def test_the_generator_places_each_type_on_its_surface(fitted: DiffusionAnomalyGenerator, tmp_path: Path) -> None:
    targets = [two_surfaces(200 + i) for i in range(12)]
    for name, on_left in (("left_dent", True), ("right_dent", False)):
        batch = fitted.generate(targets, defect_types=[name] * len(targets), generator=1)
        on_its_side = sum((share_on_left(mask.bool()) > 0.5) == on_left for mask in batch.masks)
        assert on_its_side >= 11, name  # placed anywhere: 6 of 12 on average, >= 11 with chance 0.3 %
    restored = AnomalyGenerator.load(fitted.save(tmp_path / "gen"))
    again = restored.generate(targets[:2], defect_types=["right_dent"] * 2, generator=1)
    first = fitted.generate(targets[:2], defect_types=["right_dent"] * 2, generator=1)
    assert all(torch.equal(a, b) for a, b in zip(again.masks, first.masks, strict=True))


def test_a_fit_without_the_shots_surroundings_says_to_refit(fitted: DiffusionAnomalyGenerator, tmp_path: Path) -> None:
    folder = fitted.save(tmp_path / "gen")
    (folder / "context_placement.safetensors").unlink()  # as saved before fit version 5
    manifest = json.loads((folder / "generator.json").read_text())
    del manifest["checksums"]["context_placement.safetensors"]
    (folder / "generator.json").write_text(json.dumps(manifest))
    old = AnomalyGenerator.load(folder)
    with pytest.raises(NotFittedError, match="fit the generator again"):
        old.generate([two_surfaces(1)], defect_types=["left_dent"], generator=0)
    off = AnomalyGenerator.load(folder, context_placement=False)
    assert len(off.generate([two_surfaces(1)], defect_types=["left_dent"], generator=0).masks) == 1

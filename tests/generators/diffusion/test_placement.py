"""``ContextPlacement``: each defect type is placed on the kind of surface its shots sit on."""

import json
from pathlib import Path

import pytest
import torch

from anomaly_synth_aug.data.sample import AnomalySample
from anomaly_synth_aug.errors import InvalidInputError, NotFittedError
from anomaly_synth_aug.generators.base import AnomalyGenerator
from anomaly_synth_aug.generators.diffusion import DiffusionAnomalyGenerator
from anomaly_synth_aug.generators.diffusion.placement import ContextPlacement

SIZE = (96, 192)  # the left half one surface, the right half another


def two_surfaces(seed: int) -> torch.Tensor:
    """Vertical stripes on the left half, a fine checker on the right half (one channel, slightly noisy)."""
    rows = torch.arange(SIZE[0], dtype=torch.float32)[:, None]
    cols = torch.arange(SIZE[1], dtype=torch.float32)[None, :]
    stripes = 0.5 + 0.2 * torch.sin(cols * 1.1)
    checker = 0.5 + 0.2 * torch.sign(torch.sin(rows * 0.8) * torch.sin(cols * 0.8))
    image = torch.where(cols < SIZE[1] // 2, stripes, checker)
    noise = 0.02 * torch.randn(SIZE, generator=torch.Generator().manual_seed(seed))
    return (image + noise).clamp(0, 1)[None]


def shot_on(side: str, seed: int) -> AnomalySample:
    """A dark dent on the ``side`` half, away from the seam, at a position that varies with ``seed``."""
    image = two_surfaces(seed)
    mask = torch.zeros(SIZE, dtype=torch.bool)
    top = 20 + (13 * seed) % 50
    left = (10 if side == "left" else 134) + (17 * seed) % 50
    mask[top : top + 8, left : left + 8] = True
    image[:, mask] = 0.05
    return AnomalySample(image=image, mask=mask, label=1, defect_type=f"{side}_dent")


def shots() -> list[AnomalySample]:
    return [shot_on(side, seed) for seed in range(4) for side in ("left", "right")]


def share_on_left(region: torch.Tensor) -> float:
    return float(region[:, : SIZE[1] // 2].sum()) / float(region.sum())


@pytest.fixture(scope="module")
def placement() -> ContextPlacement:
    return ContextPlacement().fit(shots())


def test_each_type_is_admitted_on_the_surface_its_shots_sit_on(placement: ContextPlacement) -> None:
    target = two_surfaces(seed=99)
    left, right = placement.region(target, "left_dent"), placement.region(target, "right_dent")
    assert left is not None and right is not None
    assert left.shape == right.shape == SIZE
    assert share_on_left(left) > 0.8 and share_on_left(right) < 0.2  # anywhere: 0.5 each (the window blurs the seam)


def test_every_shot_would_have_been_admitted_where_it_was(placement: ContextPlacement) -> None:
    """The floor is the least typical shot's own similarity to the others: no shot's position is excluded."""
    for seed in range(4):
        for side in ("left", "right"):
            shot = shot_on(side, seed)
            region = placement.region(two_surfaces(seed), shot.defect_type)  # its surface without the dent
            assert region is not None
            assert bool((region & shot.mask).any()), (side, seed)


def test_a_type_with_one_shot_or_an_unknown_type_is_placed_anywhere() -> None:
    placement = ContextPlacement().fit([shot_on("left", 0), shot_on("right", 0), shot_on("right", 1)])
    assert placement.region(two_surfaces(5), "left_dent") is None
    assert placement.region(two_surfaces(5), "no_such_type") is None
    assert placement.region(two_surfaces(5), "right_dent") is not None


def test_state_round_trips(placement: ContextPlacement) -> None:
    restored = ContextPlacement().load_tensors(placement.state_tensors())
    assert restored.floors == pytest.approx(placement.floors)
    target = two_surfaces(seed=7)
    assert torch.equal(restored.region(target, "left_dent"), placement.region(target, "left_dent"))


def test_a_window_outside_the_image_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="window_fraction"):
        ContextPlacement(window_fraction=0.0)


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

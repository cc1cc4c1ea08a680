"""``ContextPlacement``: each defect type is placed on the kind of surface its shots sit on (diffusion and pasted shots)."""

from pathlib import Path

import pytest
import torch
from two_surfaces import SIZE, share_on_left, shot_on, shots, two_surfaces

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators import RealShotPasteGenerator
from anomaly_synth_aug.generators.base import AnomalyGenerator
from anomaly_synth_aug.generators.context_placement import ContextPlacement


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


def test_pasted_shots_follow_their_type_s_surface_too(tmp_path: Path) -> None:
    """``RealShotPasteGenerator(context_placement=True)`` uses the same rule, so the baseline compares fairly."""
    options = {"rotation": 0.0, "scale_range": (1.0, 1.0), "color_jitter": 0.0}
    placed = RealShotPasteGenerator(context_placement=True, **options).fit([], shots())
    anywhere = RealShotPasteGenerator(**options).fit([], shots())
    targets = [two_surfaces(300 + i) for i in range(12)]
    for name, on_left in (("left_dent", True), ("right_dent", False)):
        for generator, least, most in ((placed, 11, 12), (anywhere, 1, 11)):
            batch = generator.generate(targets, defect_types=[name] * len(targets), generator=2)
            on_its_side = sum((share_on_left(mask.bool()) > 0.5) == on_left for mask in batch.masks)
            assert least <= on_its_side <= most, (name, generator.context_placement)  # anywhere: 6 of 12 on average
    restored = AnomalyGenerator.load(placed.save(tmp_path / "paste"))
    first = placed.generate(targets[:3], defect_types=["right_dent"] * 3, generator=4)
    again = restored.generate(targets[:3], defect_types=["right_dent"] * 3, generator=4)
    assert all(torch.equal(a, b) for a, b in zip(again.masks, first.masks, strict=True))
    assert placed.state_fingerprint() != anywhere.state_fingerprint()

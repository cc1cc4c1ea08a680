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


class _FixedPlacement:
    """Stands in for a fitted ``ContextPlacement``: admits a fixed region."""

    def __init__(self, region: torch.Tensor) -> None:
        self.fixed = region

    def region(self, image: torch.Tensor, defect_type: str) -> torch.Tensor:
        return self.fixed


def _columns(start: int, stop: int) -> torch.Tensor:
    region = torch.zeros(SIZE, dtype=torch.bool)
    region[:, start:stop] = True
    return region


def test_on_an_object_pasted_shots_go_where_object_and_surface_meet_or_on_the_object(monkeypatch) -> None:
    import anomaly_synth_aug.generators.real_paste as real_paste

    monkeypatch.setattr(real_paste, "foreground_region", lambda image, **_: _columns(0, 128))  # the object
    generator = RealShotPasteGenerator(context_placement=True).fit([], shots())
    generator.object_category = True
    generator._placement = _FixedPlacement(_columns(64, 192))  # type: ignore[assignment]
    image = two_surfaces(0)
    assert torch.equal(generator._placement_for(image, "left_dent"), _columns(64, 128))  # both
    generator._placement = _FixedPlacement(_columns(160, 192))  # type: ignore[assignment]
    assert torch.equal(generator._placement_for(image, "left_dent"), _columns(0, 128))  # they do not meet: the object


def test_pasted_shots_saved_before_context_placement_existed_keep_their_fit_and_fingerprint(tmp_path: Path) -> None:
    """``context_placement=False`` is how the generator behaved before: fits and caches saved then stay valid."""
    import json

    from anomaly_synth_aug.generators.fit_store import training_fingerprint

    plain = RealShotPasteGenerator().fit([], shots())
    folder = plain.save(tmp_path / "old")
    manifest = json.loads((folder / "generator.json").read_text())
    del manifest["config"]["context_placement"]  # as the older code wrote it
    (folder / "generator.json").write_text(json.dumps(manifest))
    fresh = RealShotPasteGenerator()
    assert fresh.load_state(folder).fingerprint() == plain.fingerprint() == manifest["fingerprint"]
    assert "context_placement" not in fresh.fingerprint_config()  # so the FitStore key is the older one too
    assert training_fingerprint(fresh) == training_fingerprint(plain)
    placed = RealShotPasteGenerator(context_placement=True)
    assert placed.fingerprint() != RealShotPasteGenerator().fingerprint()


def test_a_plain_generator_saved_over_a_placed_one_leaves_no_placement_behind(tmp_path: Path) -> None:
    folder = tmp_path / "reused"
    RealShotPasteGenerator(context_placement=True).fit([], shots()).save(folder)
    assert (folder / "context_placement.safetensors").is_file()
    plain = RealShotPasteGenerator().fit([], shots())
    plain.save(folder)
    assert not (folder / "context_placement.safetensors").exists()
    assert AnomalyGenerator.load(folder).fingerprint() == plain.fingerprint()


def test_redraws_of_one_image_reuse_its_placement(monkeypatch) -> None:
    """The placement costs a feature pass: an image's redraws (nothing visible changed) must not repeat it."""
    import anomaly_synth_aug.generators.classic as classic

    calls = {"region": 0, "judged": 0}
    generator = RealShotPasteGenerator(context_placement=True).fit([], shots())
    fitted_region = generator._placement.region  # type: ignore[union-attr]

    def counted_region(image: torch.Tensor, defect_type: str) -> torch.Tensor | None:
        calls["region"] += 1
        return fitted_region(image, defect_type)

    real_judge = classic.keep_visible_change

    def invisible_twice(image: torch.Tensor, candidate: torch.Tensor, region: torch.Tensor):
        calls["judged"] += 1
        result, mask = real_judge(image, candidate, region)
        return (result, mask & False) if calls["judged"] <= 2 else (result, mask)

    monkeypatch.setattr(generator._placement, "region", counted_region)
    monkeypatch.setattr(classic, "keep_visible_change", invisible_twice)
    batch = generator.generate([two_surfaces(1), two_surfaces(2)], defect_types=["left_dent"] * 2, generator=0)
    assert calls["judged"] == 4 and len(batch.masks) == 2  # two redraws of the first image
    assert calls["region"] == 2  # one placement per image

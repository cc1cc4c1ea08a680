"""RealShotPasteGenerator: pastes the real shots themselves, by type, and works after load without the data."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from classic_helpers import blob_shot, shots, surface

from anomaly_synth_aug.data.sample import AnomalySample
from anomaly_synth_aug.errors import CorruptFileError, InvalidInputError, NotFittedError, UnknownDefectTypeError
from anomaly_synth_aug.generators import AnomalyGenerator, RealShotPasteGenerator
from anomaly_synth_aug.generators.real_paste import SHOTS_FILE


def _seed(value: int) -> torch.Generator:
    return torch.Generator().manual_seed(value)


def _verbatim() -> RealShotPasteGenerator:
    """No rotation, rescaling, jitter or feathering: only the (unavoidable) random flips remain."""
    return RealShotPasteGenerator(rotation=0.0, scale_range=(1.0, 1.0), color_jitter=0.0, feather_sigma=0.0)


def test_needs_shots_and_a_fit() -> None:
    with pytest.raises(NotFittedError):
        RealShotPasteGenerator().generate([surface(40, 56, seed=0)])
    with pytest.raises(InvalidInputError, match="got no defect shots"):
        RealShotPasteGenerator().fit([], [])


def test_defect_types_are_the_shots_types() -> None:
    generator = RealShotPasteGenerator().fit([], shots())
    assert generator.defect_types == ["bright", "dark"]
    with pytest.raises(UnknownDefectTypeError):
        generator.generate([surface(40, 56, seed=0)], defect_types=["crack"])


def test_pasted_pixels_are_the_shot_defect_pixels() -> None:
    blob = blob_shot(40, 56, seed=1, radius=4.0)
    textured = torch.where(blob.mask, 0.3 * surface(40, 56, seed=9), blob.image)  # every defect pixel its own value
    shot = AnomalySample(image=textured, mask=blob.mask, defect_type="blob")
    generator = _verbatim().fit([], [shot])
    for seed in range(4):
        batch = generator.generate([surface(30, 36, seed=seed)], generator=_seed(seed))
        pasted = batch.images[0][:, batch.masks[0]]
        assert torch.equal(pasted.sort().values, shot.image[:, shot.mask].sort().values)


def test_requested_type_picks_a_shot_of_that_type() -> None:
    generator = RealShotPasteGenerator().fit([], shots())
    image = surface(40, 56, seed=2)
    for defect_type, sign in (("bright", 1), ("dark", -1)):
        batch = generator.generate([image] * 3, defect_types=defect_type, generator=_seed(3))
        for out, mask in zip(batch.images, batch.masks, strict=True):
            assert sign * float((out - image)[:, mask].mean()) > 0.1


def test_defect_larger_than_the_target_is_scaled_down() -> None:
    big = blob_shot(64, 64, seed=3, radius=30.0)
    batch = _verbatim().fit([], [big]).generate([surface(20, 24, seed=4)], generator=_seed(4))
    assert batch.masks[0].shape == (20, 24) and bool(batch.masks[0].any())


def test_a_thin_scratch_scaled_down_to_a_small_target_is_still_feathered() -> None:
    """A 1 px scratch shrunk to fit a 128 px image is 2 px high: the feathering blur's reflect padding failed."""
    image = surface(64, 512, seed=1)
    mask = torch.zeros(64, 512, dtype=torch.bool)
    mask[30, 16:496] = True
    scratch = AnomalySample(image=torch.where(mask, torch.zeros_like(image), image), mask=mask, defect_type="scratch")
    generator = RealShotPasteGenerator(rotation=0.0).fit([], [scratch])
    for seed in range(8):
        batch = generator.generate([surface(128, 128, seed=seed)], generator=_seed(seed))
        assert bool(batch.masks[0].any())


def test_poisson_blend_stays_near_the_defect() -> None:
    shot = blob_shot(40, 56, seed=5, radius=4.0)
    generator = RealShotPasteGenerator(blend="poisson", rotation=0.0, scale_range=(1.0, 1.0)).fit([], [shot])
    mask = generator.generate([surface(40, 56, seed=6)], generator=_seed(6)).masks[0]
    assert 0 < int(mask.sum()) <= int(torch.nn.functional.max_pool2d(shot.mask[None].float(), 5, 1, 2).sum())


def test_poisson_blend_of_a_thin_scratch_that_rescaling_drops_draws_again() -> None:
    """Nearest-neighbour rescaling can drop a 1 px scratch; cloning its empty region raised a bare ValueError."""
    image = surface(64, 64, seed=1)
    mask = torch.zeros(64, 64, dtype=torch.bool)
    mask[30, 20:40] = True
    scratch = AnomalySample(image=torch.where(mask, torch.zeros_like(image), image), mask=mask, defect_type="scratch")
    generator = RealShotPasteGenerator(blend="poisson", rotation=0.0).fit([], [scratch])
    for seed in range(40):
        batch = generator.generate([surface(64, 64, seed=seed)], generator=_seed(seed))
        assert bool(batch.masks[0].any())


def test_saved_shots_make_the_dataset_unnecessary(tmp_path: Path) -> None:
    original = RealShotPasteGenerator().fit([], shots())
    folder = original.save(tmp_path / "paste")
    loaded = AnomalyGenerator.load(folder)
    assert loaded.defect_types == original.defect_types and loaded.fingerprint() == original.fingerprint()
    (folder / SHOTS_FILE).write_bytes(b"not a safetensors file")
    with pytest.raises(CorruptFileError, match=f"{SHOTS_FILE}: the file.s checksum differs"):
        AnomalyGenerator.load(folder)


def test_fingerprint_follows_the_shots() -> None:
    first = RealShotPasteGenerator().fit([], shots()[:2])
    second = RealShotPasteGenerator().fit([], shots()[2:])
    assert first.fingerprint() != second.fingerprint()


def test_a_shot_typed_good_is_refused() -> None:
    untyped = AnomalySample(image=surface(8, 8, seed=7), mask=torch.ones(8, 8, dtype=torch.bool))
    with pytest.raises(InvalidInputError, match="defect type 'good'"):
        RealShotPasteGenerator().fit([], [untyped])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"blend": "multiply"}, "unknown blend 'multiply'"),
        ({"margin": -1}, "margin and feather_sigma must be >= 0"),
        ({"scale_range": (2.0, 1.0)}, "scale_range must be a \\(min, max\\) pair"),
    ],
)
def test_bad_settings_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        RealShotPasteGenerator(**kwargs)


# ------------------------------------------------------------ object categories
def _object_scene(center_col: int, seed: int, defect_at: tuple[int, int] | None = None) -> AnomalySample:
    """A dark disk (the object) on a bright table; with ``defect_at``, a bright dent on the object."""
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(96), indexing="ij")
    obj = (yy - 32) ** 2 + (xx - center_col) ** 2 <= 15**2
    noise = torch.rand(64, 96, generator=_seed(seed)) * 0.05
    image = torch.where(obj, 0.2, 0.85) + noise
    mask = torch.zeros(64, 96, dtype=torch.bool)
    if defect_at is not None:
        mask = ((yy - defect_at[0]) ** 2 + (xx - defect_at[1]) ** 2 <= 3**2) & obj
        image = torch.where(mask, 0.95, image)
    return AnomalySample(image=image.clamp(0, 1).expand(3, -1, -1).clone(), mask=mask, defect_type="dent")


def _centres_on_object(generator: RealShotPasteGenerator) -> list[bool]:
    target = _object_scene(center_col=70, seed=50)
    obj = target.image[0] < 0.5
    batch = generator.generate([target.image] * 12, generator=_seed(7))
    centres = [torch.nonzero(mask).float().mean(0).round().long() for mask in batch.masks]
    return [bool(obj[int(r), int(c)]) for r, c in centres]


def test_in_an_object_category_defects_are_pasted_on_the_object() -> None:
    """Pasted shots landed on the table around MVTec's screw, as no real screw defect does."""
    shots = [_object_scene(28, seed, defect_at=(26 + 2 * seed, 24 + 2 * seed)) for seed in range(4)]
    on_object = RealShotPasteGenerator().fit([], shots)
    assert on_object.object_category
    assert all(_centres_on_object(on_object))
    anywhere = RealShotPasteGenerator(restrict_to_foreground=False).fit([], shots)
    assert not anywhere.object_category and not all(_centres_on_object(anywhere))


def test_a_texture_category_is_pasted_exactly_as_before() -> None:
    """The option changes nothing where the shots show no object: same draws, same pixels."""
    image = surface(40, 56, seed=4)
    texture_shots = [blob_shot(40, 56, seed=200 + i, radius=3.0) for i in range(3)]
    restricted = RealShotPasteGenerator().fit([], texture_shots)
    free = RealShotPasteGenerator(restrict_to_foreground=False).fit([], texture_shots)
    assert not restricted.object_category
    first, second = (g.generate([image] * 3, generator=_seed(5)) for g in (restricted, free))
    assert all(torch.equal(a, b) for a, b in zip(first.images, second.images, strict=True))


def test_the_object_category_is_saved_with_the_shots(tmp_path: Path) -> None:
    shots = [_object_scene(28, seed, defect_at=(26 + 2 * seed, 24 + 2 * seed)) for seed in range(4)]
    RealShotPasteGenerator().fit([], shots).save(tmp_path / "paste")
    assert AnomalyGenerator.load(tmp_path / "paste").object_category


def test_a_folder_saved_before_placements_followed_the_object_pastes_anywhere_as_then(tmp_path: Path) -> None:
    from anomaly_synth_aug.generators._tensor_store import load_tensor_lists

    shots = [_object_scene(28, seed, defect_at=(26 + 2 * seed, 24 + 2 * seed)) for seed in range(4)]
    generator = RealShotPasteGenerator().fit([], shots)
    old = tmp_path / "old"
    lists, metadata = generator._state()
    del metadata["object_category"]  # what the generator saved before it had the option
    generator._state = lambda: (lists, metadata)  # type: ignore[method-assign]
    generator.save(old)
    assert "object_category" not in load_tensor_lists(next(old.rglob(SHOTS_FILE)))[1]
    loaded = AnomalyGenerator.load(old)
    assert not loaded.object_category and loaded.get_config()["restrict_to_foreground"] is False

"""DiffusionAnomalyGenerator end to end on tiny data: contract, mechanisms wired in, persistence, bad input."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
import torch
from diffusion_helpers import TINY, defect_shot, normals, shots, surface

from anomaly_synth_aug.data.sample import AnomalySample
from anomaly_synth_aug.errors import CheckpointMismatchError, InvalidInputError, UnknownDefectTypeError
from anomaly_synth_aug.generators.base import AnomalyGenerator
from anomaly_synth_aug.generators.diffusion import DiffusionAnomalyGenerator
from anomaly_synth_aug.generators.diffusion import synthesis as synthesis_module
from anomaly_synth_aug.generators.diffusion.training_checkpoint import TRAINING_IDENTITY_FILE
from anomaly_synth_aug.generators.fit_store import training_fingerprint

FAST = {**TINY, "max_steps": 4, "max_minutes": None, "batch_size": 4, "num_inference_steps": 3, "progress": False}


def _seed(value: int) -> torch.Generator:
    return torch.Generator().manual_seed(value)


def _placement(size: tuple[int, int] = (40, 48)) -> torch.Tensor:
    mask = torch.zeros(size, dtype=torch.bool)
    mask[15:22, 18:26] = True
    return mask


@pytest.fixture(scope="module")
def fitted() -> DiffusionAnomalyGenerator:
    generator = DiffusionAnomalyGenerator(category="tiles", **FAST)
    return generator.fit(normals(), shots(), generator=_seed(0))


def _assert_contract(inputs: list[torch.Tensor], batch) -> None:
    for image, out, mask in zip(inputs, batch.images, batch.masks, strict=True):
        assert out.shape == image.shape and mask.shape == image.shape[-2:] and mask.dtype == torch.bool
        assert bool(mask.any())
        changed = (out != image).any(0)
        assert not bool((changed & ~mask).any()), "pixels outside the returned mask changed"


def test_fit_records_types_and_grey_model(fitted: DiffusionAnomalyGenerator) -> None:
    assert fitted.is_fitted and fitted.defect_types == ["dent", "streak"]
    assert fitted.denoiser.config.image_channels == 1  # grey data is modelled in one channel
    assert fitted.training_report is not None and fitted.training_report.steps == 4


def test_generation_stats_count_attempts_and_rejections(fitted: DiffusionAnomalyGenerator) -> None:
    """The shared contract (``tests/generators/test_contract.py``) covers outputs; these are the filter's counts."""
    inputs = [surface(1), surface(2, (36, 60)), surface(3, (52, 44))]
    batch = fitted.generate(inputs, generator=_seed(1))
    assert {"attempts", "rejected", "reasons", "exhausted"} <= set(batch.stats)
    assert batch.stats["attempts"] >= len(inputs) and batch.stats["exhausted"] <= batch.stats["rejected"]


def test_a_given_mask_is_filled_by_inversion_alone_unless_noise_is_asked_for(
    fitted: DiffusionAnomalyGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Pure DDIM inversion (the default) starts from the target's own inverted noise: on a mask the caller
    fixes, the seed has nothing left to vary in a first draw (a retry of a rejected draw adds fresh noise).
    ``inversion_noise`` and RePaint give variants again."""
    inputs, placements, types = [surface(1)], [_placement()], ["dent"]
    monkeypatch.setattr(fitted, "quality_filter", False)  # first draws only: no retries
    pure = [fitted.generate(inputs, placements, types, generator=_seed(s)).images[0] for s in (5, 6)]
    assert fitted.mode == "inversion" and torch.equal(*pure)
    for name, value in (("inversion_noise", 0.5), ("mode", "repaint")):
        with monkeypatch.context() as patch:  # the fixture is shared by the module: undone after
            patch.setattr(fitted, name, value)
            varied = [fitted.generate(inputs, placements, types, generator=_seed(s)).images[0] for s in (5, 6)]
        assert not torch.equal(*varied), name


def test_given_mask_bounds_the_change(fitted: DiffusionAnomalyGenerator) -> None:
    placement = _placement()
    batch = fitted.generate([surface(4)], [placement], ["dent"], generator=_seed(2))
    dilated = torch.nn.functional.max_pool2d(placement[None, None].float(), 7, 1, 3)[0, 0] > 0
    assert not bool((batch.masks[0] & ~dilated).any())  # refinement stays within the dilated placement


def test_unknown_type_is_rejected(fitted: DiffusionAnomalyGenerator) -> None:
    with pytest.raises(UnknownDefectTypeError, match="scratch"):
        fitted.generate([surface(1)], defect_types=["scratch"])
    with pytest.raises(UnknownDefectTypeError):
        fitted.generate_mixed([surface(1)], ("dent", "scratch", 0.5))


def test_mixed_tokens_make_a_third_appearance(fitted: DiffusionAnomalyGenerator, monkeypatch) -> None:
    monkeypatch.setattr(fitted, "realism_filter", False)  # mixed types have no shots to be judged against
    image, placement = [surface(7)], [_placement()]
    mixed = fitted.generate_mixed(image, ("dent", "streak", 0.5), placement, generator=_seed(3))
    assert mixed.defect_types == ["dent+streak"]
    _assert_contract(image, mixed)
    pure = fitted.generate_mixed(image, ("dent", "streak", 1.0), placement, generator=_seed(3))
    dent = fitted.generate(image, placement, ["dent"], generator=_seed(3))
    assert torch.equal(pure.images[0], dent.images[0])  # weight 1 is exactly the dent token
    assert not torch.equal(mixed.images[0], dent.images[0])


def test_generate_normal_uses_the_normal_token(fitted: DiffusionAnomalyGenerator) -> None:
    image = [surface(8)]
    normal = fitted.generate_normal(image, [_placement()], generator=_seed(4))
    assert normal.defect_types == ["good"]
    _assert_contract(image, normal)
    same = fitted.generate_normal(image, [_placement()], generator=4)  # an int seed works as everywhere else
    assert torch.equal(same.images[0], normal.images[0])


def test_mixed_and_normal_generation_take_one_seed_per_image_as_generate_does(
    fitted: DiffusionAnomalyGenerator,
) -> None:
    """``generator=[seed_a, seed_b]`` raised a raw TypeError from torch.randint in both."""
    images, placements = [surface(8), surface(9)], [_placement(), _placement()]
    both = fitted.generate_normal(images, placements, generator=[4, 5])
    alone = fitted.generate_normal(images[1:], placements[1:], generator=5)
    assert torch.allclose(both.images[1], alone.images[0], atol=5e-4)  # batched networks round differently
    mixed = fitted.generate_mixed(images, ("dent", "streak", 0.5), placements, generator=[_seed(3), _seed(6)])
    mixed_alone = fitted.generate_mixed(images[:1], ("dent", "streak", 0.5), placements[:1], generator=_seed(3))
    assert torch.allclose(mixed.images[0], mixed_alone.images[0], atol=5e-4)
    with pytest.raises(InvalidInputError, match="got 1 seed sources for 2 images"):
        fitted.generate_normal(images, placements, generator=[4])


def test_a_fit_with_foreground_restriction_off_can_turn_it_on_when_sampling() -> None:
    """``restrict_to_foreground`` is a sampling option, but a fit made with it off recorded no object category, so
    turning it on afterwards placed defects on the background all the same."""
    yy, xx = torch.meshgrid(torch.arange(64), torch.arange(96), indexing="ij")
    disk = (yy - 32) ** 2 + (xx - 40) ** 2 <= 15**2

    def scene(seed: int) -> AnomalySample:
        image = torch.where(disk, 0.2, 0.85) + torch.rand(64, 96, generator=_seed(seed)) * 0.05
        mask = ((yy - 26 - 2 * seed) ** 2 + (xx - 34 - 2 * seed) ** 2 <= 9) & disk
        return AnomalySample(image=torch.where(mask, 0.95, image).clamp(0, 1).expand(3, -1, -1).clone(), mask=mask,
                             defect_type="dent")  # fmt: skip

    generator = DiffusionAnomalyGenerator(**{**FAST, "restrict_to_foreground": False})
    generator.fit([scene(9).image, scene(10).image], [scene(seed) for seed in range(4)], generator=_seed(0))
    assert generator.object_category
    generator.restrict_to_foreground = True  # a sampling option, changed on the fitted generator
    near_disk = (yy - 32) ** 2 + (xx - 40) ** 2 <= 18**2  # refinement may grow a mask by 3 px
    for mask in generator.generate([scene(11).image] * 6, generator=_seed(2)).masks:
        assert bool(mask.any()) and not bool((mask & ~near_disk).any())


def test_quality_filter_retries_then_keeps_and_counts() -> None:
    strict = DiffusionAnomalyGenerator(**FAST, min_inside_change=1.0, max_retries=2)
    strict.fit(normals(), shots(), generator=_seed(0))
    batch = strict.generate([surface(1), surface(2)], generator=_seed(1))
    assert batch.stats["attempts"] == 6 and batch.stats["rejected"] == 6 and batch.stats["exhausted"] == 2
    assert sum(batch.stats["reasons"].values()) == 6
    _assert_contract([surface(1), surface(2)], batch)


def test_quality_thresholds_changed_on_a_live_generator_are_used(
    fitted: DiffusionAnomalyGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The filter was built once in ``__init__``: a live change showed in the config and the fingerprint only."""
    monkeypatch.setattr(fitted, "min_inside_change", 1.0)
    monkeypatch.setattr(fitted, "max_retries", 1)
    batch = fitted.generate([surface(1), surface(2)], generator=_seed(1))
    assert batch.stats["rejected"] == 4 and batch.stats["exhausted"] == 2


def test_quality_filter_off_does_one_attempt_per_image() -> None:
    lenient = DiffusionAnomalyGenerator(**FAST, quality_filter=False)
    lenient.fit(normals(), shots(), generator=_seed(0))
    batch = lenient.generate([surface(1), surface(2)], generator=_seed(1))
    assert batch.stats["attempts"] == 2 and batch.stats["rejected"] == 0


def test_output_mask_is_the_refined_mask(fitted: DiffusionAnomalyGenerator, monkeypatch: pytest.MonkeyPatch) -> None:
    """Mask alignment: the returned mask is where refine_mask says the image changed, not the placement."""

    def first_row_only(before: torch.Tensor, after: torch.Tensor, mask: torch.Tensor, dilation: int) -> torch.Tensor:
        rows = torch.nonzero(mask.any(1)).flatten()
        refined = torch.zeros_like(mask)
        refined[rows[0]] = mask[rows[0]]
        return refined

    monkeypatch.setattr(synthesis_module, "refine_mask", first_row_only)
    monkeypatch.setattr(fitted, "refine_masks", True)
    placement = _placement()
    batch = fitted.generate([surface(9)], [placement], ["dent"], generator=_seed(2))
    expected = torch.zeros_like(placement)
    expected[15, 18:26] = True
    assert torch.equal(batch.masks[0], expected)
    _assert_contract([surface(9)], batch)


def test_without_refinement_the_output_mask_is_the_placement(fitted: DiffusionAnomalyGenerator) -> None:
    assert not fitted.refine_masks  # the default
    placement = _placement()
    batch = fitted.generate([surface(9)], [placement], ["dent"], generator=_seed(2))
    assert torch.equal(batch.masks[0], placement)


def test_sampled_masks_stay_on_the_foreground(fitted: DiffusionAnomalyGenerator, monkeypatch: pytest.MonkeyPatch) -> None:
    region = torch.zeros(40, 48, dtype=torch.bool)
    region[:, :24] = True
    monkeypatch.setattr(fitted, "object_category", True)  # what fit decides from shots of an object category
    monkeypatch.setattr(synthesis_module, "foreground_region", lambda image, **thresholds: region)
    batch = fitted.generate([surface(i) for i in range(4)], generator=_seed(3))
    for mask in batch.masks:
        assert not bool(mask[:, 27:].any())  # left half only (refinement may grow 3 px)


def test_mask_prior_source_is_fitted_and_used() -> None:
    prior_based = DiffusionAnomalyGenerator(**FAST, mask_source="prior", mask_prior_steps=2)
    prior_based.fit(normals(), shots(), generator=_seed(0))
    calls: list[int] = []
    sample = prior_based._mask_prior.sample

    def counting(index: int, generator: torch.Generator | None = None) -> torch.Tensor:
        calls.append(index)
        return sample(index, generator)

    prior_based._mask_prior.sample = counting  # type: ignore[method-assign]
    batch = prior_based.generate([surface(1), surface(2)], defect_types=["streak", "dent"], generator=_seed(1))
    assert calls == [1, 0]
    _assert_contract([surface(1), surface(2)], batch)


def test_the_fingerprint_covers_the_fits_choices_and_version_not_only_the_weights(
    fitted: DiffusionAnomalyGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Cached pools are keyed by the fingerprint: a refit with equal weights but other calibrated guidance or
    strength (a new fit version) kept drawing its pool from the old fit's defects."""
    before = fitted.fingerprint()
    original = dict(fitted.defect_strength)
    monkeypatch.setattr(fitted, "defect_strength", {name: 0.5 * value for name, value in original.items()} or {"x": 1})
    assert fitted.fingerprint() != before
    monkeypatch.setattr(fitted, "defect_strength", original)
    assert fitted.fingerprint() == before
    monkeypatch.setattr(type(fitted), "fit_version", type(fitted).fit_version + 1)
    assert fitted.fingerprint() != before


def test_save_load_round_trip_and_compatibility(fitted: DiffusionAnomalyGenerator, tmp_path: Path) -> None:
    fitted.save(tmp_path)
    loaded = DiffusionAnomalyGenerator.load(tmp_path, category="tiles", defect_types=["streak", "dent"])
    assert isinstance(AnomalyGenerator.load(tmp_path), DiffusionAnomalyGenerator)
    assert loaded.fingerprint() == fitted.fingerprint()
    assert loaded.training_report == fitted.training_report and loaded.training_report.steps == FAST["max_steps"]
    inputs = [surface(1), surface(2)]
    expected = fitted.generate(inputs, generator=_seed(7))
    actual = loaded.generate(inputs, generator=_seed(7))
    assert all(torch.equal(a, b) for a, b in zip(expected.images, actual.images, strict=True))
    with pytest.raises(CheckpointMismatchError, match="category 'tiles'.*Fix"):
        DiffusionAnomalyGenerator.load(tmp_path, category="bottle")
    with pytest.raises(CheckpointMismatchError, match="defect types"):
        loaded.check_compatible(defect_types=["dent"])
    with pytest.raises(CheckpointMismatchError, match="patch size"):
        loaded.check_compatible(patch_size=64)


def test_window_scale_paints_a_long_defect_window_by_window(monkeypatch: pytest.MonkeyPatch) -> None:
    """Patch scale follows the defect: a 40 px streak is drawn in 16 px windows, not one downscaled box."""
    windowed = DiffusionAnomalyGenerator(category="tiles", window_scale=1.0, max_windows=8, **FAST)
    windowed.fit(normals(), shots(), generator=_seed(0))
    rounds: list[int] = []
    sample_patches = windowed._sample_patches

    def counting(sampler, jobs, indices, known, masks):
        rounds.append(len(indices))
        assert known.shape[-1] == 16
        return sample_patches(sampler, jobs, indices, known, masks)

    monkeypatch.setattr(windowed, "_sample_patches", counting)
    placement = torch.zeros(40, 48, dtype=torch.bool)
    placement[20:22, 4:44] = True
    image = surface(1)
    batch = windowed.generate([image], masks=[placement], defect_types=["streak"], generator=_seed(3))
    assert len(rounds) >= 3  # one UNet pass per window, in order
    assert torch.equal(batch.masks[0], placement)  # every pixel painted, once
    assert torch.equal(batch.images[0][:, ~placement], image[:, ~placement])  # nothing else touched
    assert float((batch.images[0][:, placement] - image[:, placement]).abs().mean()) > 0
    again = DiffusionAnomalyGenerator(category="tiles", window_scale=1.0, max_windows=8, **FAST)
    again.fit(normals(), shots(), generator=_seed(0))
    repeat = again.generate([image], masks=[placement], defect_types=["streak"], generator=_seed(3))
    assert torch.equal(repeat.images[0], batch.images[0])  # deterministic, window order included
    assert training_fingerprint(again) != training_fingerprint(DiffusionAnomalyGenerator(category="tiles", **FAST))


def test_folder_saved_before_an_option_existed_keeps_its_fingerprint(
    fitted: DiffusionAnomalyGenerator, tmp_path: Path
) -> None:
    """Sample caches are keyed by the fingerprint: adding ``strength_jitter`` (neutral at 0) must not stale them."""
    original_get_config = fitted.get_config

    def config_of_older_code() -> dict:
        return {k: v for k, v in original_get_config().items() if k != "strength_jitter"}

    fitted.get_config = config_of_older_code  # type: ignore[method-assign]
    try:
        fitted.save(tmp_path)
        saved_fingerprint = fitted.fingerprint()
        saved_training = training_fingerprint(fitted)
    finally:
        del fitted.get_config
    meta = json.loads((tmp_path / "generator.json").read_text())
    assert "strength_jitter" not in meta["config"]
    loaded = DiffusionAnomalyGenerator.load(tmp_path)
    assert loaded.strength_jitter == 0.0
    assert loaded.fingerprint() == saved_fingerprint == meta["fingerprint"]
    assert training_fingerprint(loaded) == saved_training
    jittered = DiffusionAnomalyGenerator.load(tmp_path, strength_jitter=1.0)
    assert jittered.fingerprint() != saved_fingerprint  # a non-neutral value is a different generator


def test_fit_resumes_from_checkpoint_dir_and_refuses_another_category(tmp_path: Path) -> None:
    first = DiffusionAnomalyGenerator(category="tiles", checkpoint_dir=tmp_path, **FAST)
    first.fit(normals(), shots(), generator=_seed(0))
    again = DiffusionAnomalyGenerator(category="tiles", checkpoint_dir=tmp_path, **FAST)
    again.fit(normals(), shots(), generator=_seed(0))
    assert again.training_report.resumed_from_step == 4  # nothing retrained
    assert again.fingerprint() == first.fingerprint()
    other = DiffusionAnomalyGenerator(category="bottle", checkpoint_dir=tmp_path, **FAST)
    with pytest.raises(CheckpointMismatchError, match="category"):
        other.fit(normals(), shots(), generator=_seed(0))


def _assert_a_checkpoint_without_it_still_resumes(checkpoint_dir: Path, key: str) -> None:
    """A checkpoint whose identity predates ``key`` resumes (a finished one: from its last step, 4)."""
    identity_file = checkpoint_dir / TRAINING_IDENTITY_FILE
    identity = json.loads(identity_file.read_text())
    del identity[key]
    identity_file.write_text(json.dumps(identity))
    again = DiffusionAnomalyGenerator(category="tiles", checkpoint_dir=checkpoint_dir, **FAST)
    again.fit(normals(), shots(), generator=_seed(0))
    assert again.training_report.resumed_from_step == 4


def test_a_finished_checkpoint_of_other_shots_is_refused_not_returned(tmp_path: Path) -> None:
    """The identity left the data out: a fit on new shots got the finished fit of the old ones, with 0 steps."""
    DiffusionAnomalyGenerator(category="tiles", checkpoint_dir=tmp_path, **FAST).fit(
        normals(), shots(), generator=_seed(0)
    )
    other_shots = [defect_shot(index + 20, name) for index in range(3) for name in ("dent", "streak")]
    with pytest.raises(CheckpointMismatchError, match="training_data"):
        DiffusionAnomalyGenerator(category="tiles", checkpoint_dir=tmp_path, **FAST).fit(
            normals(), other_shots, generator=_seed(0)
        )
    _assert_a_checkpoint_without_it_still_resumes(tmp_path, "training_data")  # one from before the digest


@pytest.mark.parametrize(
    "change", [{"learning_rate": 0.05}, {"batch_size": 2}, {"background_disentangle": False}, {"normal_fraction": 0.0}]
)
def test_a_checkpoint_trained_with_other_settings_is_refused_not_resumed(tmp_path: Path, change: dict) -> None:
    """The identity left the training options out: a fit with another learning rate, batch or loss got the old
    fit's finished weights (or resumed its optimiser), silently."""
    DiffusionAnomalyGenerator(category="tiles", checkpoint_dir=tmp_path, **FAST).fit(
        normals(), shots(), generator=_seed(0)
    )
    with pytest.raises(CheckpointMismatchError, match=f"training: checkpoint has .*{next(iter(change))}"):
        DiffusionAnomalyGenerator(category="tiles", checkpoint_dir=tmp_path, **{**FAST, **change}).fit(
            normals(), shots(), generator=_seed(0)
        )
    _assert_a_checkpoint_without_it_still_resumes(tmp_path, "training")  # one from before the options


def test_bad_training_input_is_explained(caplog: pytest.LogCaptureFixture) -> None:
    generator = DiffusionAnomalyGenerator(**FAST)
    with pytest.raises(InvalidInputError, match="no defect shots"):
        generator.fit(normals(), [])
    good = AnomalySample(image=surface(0), mask=_placement(), label=1, defect_type="good")
    with pytest.raises(InvalidInputError, match="reserved"):
        generator.fit(normals(), [good])
    with pytest.raises(InvalidInputError, match="normal images"):
        generator.fit([], shots())
    with caplog.at_level(logging.WARNING):
        DiffusionAnomalyGenerator(**{**FAST, "max_steps": 1}).fit(normals(), [defect_shot(0, "dent")])
    assert "only 1 shot" in caplog.text


def test_bad_configuration_is_explained() -> None:
    with pytest.raises(InvalidInputError, match="mode"):
        DiffusionAnomalyGenerator(mode="dreaming")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="mask_source"):
        DiffusionAnomalyGenerator(mask_source="anywhere")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="masked_loss"):
        DiffusionAnomalyGenerator(masked_loss=False, background_disentangle=True)
    with pytest.raises(InvalidInputError, match="guidance_scale"):
        DiffusionAnomalyGenerator(guidance_scale=0.0)


def test_auto_guidance_with_only_whole_image_shots_is_refused_before_training(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The whole fit ran, then failed with "the shots' contrast is measured in fit(): fit() or load() first"."""
    import anomaly_synth_aug.generators.diffusion.fitting as fitting

    whole = [
        AnomalySample(image=surface(i), mask=torch.ones(40, 48, dtype=torch.bool), label=1, defect_type="stain")
        for i in range(3)
    ]
    monkeypatch.setattr(fitting, "train_denoiser", lambda *args, **kwargs: pytest.fail("trained first"))
    with pytest.raises(InvalidInputError, match="every shot's mask covers its whole image.*fixed guidance_scale"):
        DiffusionAnomalyGenerator(category="tiles", **FAST).fit(normals(), whole, generator=_seed(0))


@pytest.mark.parametrize(
    "option", [{"batch_size": 0}, {"generation_batch_size": 0}, {"generation_batch_size": -1},
               {"num_inference_steps": 0}, {"num_threads": 0}, {"batch_size": 2.5}],
)  # fmt: skip
def test_counts_are_checked_at_construction_by_name(option: dict) -> None:
    """Each failed late without its name: generation_batch_size=0 as "range() arg 3 must not be zero" after the
    whole training, batch_size=0 as "stack expects a non-empty TensorList"."""
    (name, value), = option.items()
    with pytest.raises(InvalidInputError, match=f"{name} must be a whole number >= 1, got {value}"):
        DiffusionAnomalyGenerator(**option)


def test_inversion_retries_draw_a_different_patch(monkeypatch: pytest.MonkeyPatch) -> None:
    """Pure inversion is deterministic, so a retry must add fresh noise or it repeats the rejected patch."""
    strict = DiffusionAnomalyGenerator(**FAST, mode="inversion", min_inside_change=1.0, max_retries=2)
    strict.fit(normals(), shots(), generator=_seed(0))
    drawn: list[tuple[float, torch.Tensor]] = []
    original = synthesis_module.PatchSampler.sample

    def recording(self, known, masks, tokens, generators, guidance=None):  # noqa: ANN001, ANN202
        out = original(self, known, masks, tokens, generators, guidance)
        drawn.append((self.inversion_noise, out.clone()))
        return out

    monkeypatch.setattr(synthesis_module.PatchSampler, "sample", recording)
    strict.generate([surface(1)], [_placement()], ["dent"], generator=_seed(1))
    assert [noise for noise, _ in drawn] == [0.0, 0.5, 1.0]
    assert not torch.equal(drawn[0][1], drawn[1][1]) and not torch.equal(drawn[1][1], drawn[2][1])


def test_guidance_scale_reaches_the_sampler_and_survives_save_load(
    fitted: DiffusionAnomalyGenerator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    guided = DiffusionAnomalyGenerator(category="tiles", **{**FAST, "guidance_scale": 3.0})
    guided.fit(normals(), shots(), generator=_seed(0))
    guided.save(tmp_path)
    loaded = AnomalyGenerator.load(tmp_path)
    scales: list[float] = []
    original = synthesis_module.PatchSampler.sample

    def recording(self, known, masks, tokens, generators, guidance=None):  # noqa: ANN001, ANN202
        scales.extend(guidance.tolist())
        return original(self, known, masks, tokens, generators, guidance)

    monkeypatch.setattr(synthesis_module.PatchSampler, "sample", recording)
    inputs = [surface(1), surface(2)]
    batch = loaded.generate(inputs, generator=_seed(1))
    _assert_contract(inputs, batch)
    assert scales and set(scales) == {3.0}
    scales.clear()
    loaded.generate_normal(inputs, generator=_seed(1))  # guiding the normal token away from itself is a no-op
    assert scales == [1.0, 1.0]

"""Guidance calibration: per defect type, the scale whose defects are as visible as the shots, in their direction."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusion_helpers import TINY, defect_shot, normals, shots, surface

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators.base import AnomalyGenerator
from anomaly_synth_aug.generators.diffusion import DiffusionAnomalyGenerator
from anomaly_synth_aug.generators.diffusion.calibration import (
    attenuation,
    calibrate_guidance,
    contrast_by_type,
    lowest_reaching_scale,
    signed_contrast,
)

FAST = {**TINY, "max_steps": 4, "batch_size": 4, "num_inference_steps": 3, "progress": False}


def test_signed_contrast_says_darker_or_brighter() -> None:
    dent, streak = defect_shot(1, "dent"), defect_shot(2, "streak")  # a dark square, a bright bar
    assert signed_contrast(dent.image, dent.mask) < -0.3 and signed_contrast(streak.image, streak.mask) > 0.3
    whole = torch.ones(40, 48, dtype=torch.bool)
    assert signed_contrast(dent.image, whole) != signed_contrast(dent.image, whole)  # no band: NaN
    by_type = contrast_by_type([dent.image, streak.image], [dent.mask, streak.mask], ["dent", "streak"])
    assert by_type["dent"] < 0 < by_type["streak"]


def test_calibration_picks_per_type_the_scale_that_matches_the_shots() -> None:
    dent, streak = defect_shot(1, "dent"), defect_shot(2, "streak")
    reference = {"dent": signed_contrast(dent.image, dent.mask), "streak": signed_contrast(streak.image, streak.mask)}

    def drawn(shot, level: float) -> torch.Tensor:
        image = surface(9).clone()
        image[:, shot.mask] = level
        return image

    def sample(scale: float) -> tuple[list[torch.Tensor], list[torch.Tensor], list[str]]:
        dents = drawn(dent, {1.0: 0.45, 2.0: 0.1, 5.0: 0.9}[scale])  # faint at 1, right at 2, bright at 5
        streaks = drawn(streak, {1.0: 0.55, 2.0: 0.7, 5.0: 0.95}[scale])  # strongest at 5, like the shots
        return [dents, streaks], [dent.mask, streak.mask], ["dent", "streak"]

    best, gaps, contrast = calibrate_guidance(sample, reference, [1.0, 2.0, 5.0])
    assert best == {"dent": 2.0, "streak": 5.0}
    assert set(gaps["dent"]) == {1.0, 2.0, 5.0} and gaps["dent"][2.0] < gaps["dent"][1.0] < gaps["dent"][5.0]
    assert contrast["dent"][5.0] > 0 > contrast["dent"][2.0]  # drawn bright at 5, dark (like the shot) at 2
    assert abs(contrast["streak"][5.0] - reference["streak"]) == gaps["streak"][5.0]


def test_with_strength_matching_the_least_guidance_that_reaches_the_shots_is_enough() -> None:
    assert lowest_reaching_scale({1.0: -0.02, 3.0: -0.08, 5.0: -0.2}, reference=-0.05) == 3.0
    assert lowest_reaching_scale({1.0: 0.12, 3.0: 0.3}, reference=0.03) == 1.0  # already too strong at 1
    assert lowest_reaching_scale({1.0: 0.01, 3.0: 0.02}, reference=0.05) == 3.0  # none reaches: the closest
    assert lowest_reaching_scale({1.0: 0.04, 3.0: -0.2}, reference=-0.05) == 3.0  # the shots' direction counts


def test_attenuation_only_weakens_a_type_drawn_more_visibly_than_its_shots() -> None:
    assert attenuation(0.05, 0.10) == 0.5 and attenuation(-0.1, -0.4) == 0.25  # brighter / darker, too strong
    assert attenuation(0.10, 0.05) == 1.0  # too faint: not amplified
    assert attenuation(-0.10, 0.20) == 1.0  # the wrong way: scaling does not fix it
    assert attenuation(0.0, 0.3) == 1.0


def test_auto_guidance_is_chosen_at_fit_and_saved(tmp_path: Path) -> None:
    generator = DiffusionAnomalyGenerator(
        category="tiles", guidance_candidates=(1.0, 3.0), calibration_samples=2, **FAST
    )
    generator.fit(normals(), shots(), generator=torch.Generator().manual_seed(0))
    assert generator.guidance_scale == "auto"
    assert set(generator.calibrated_guidance) == {"dent", "streak"}
    assert set(generator.calibrated_guidance.values()) <= {1.0, 3.0}
    assert set(generator.guidance_calibration["dent"]) == {1.0, 3.0}
    assert generator.shot_contrast["dent"] < 0 < generator.shot_contrast["streak"]
    assert generator.guidance_for("dent") == generator.matched_guidance["dent"]  # match_contrast, the default
    generator.match_contrast = False
    assert generator.guidance_for("dent") == generator.calibrated_guidance["dent"]
    mixed = (generator.calibrated_guidance["dent"] + generator.calibrated_guidance["streak"]) / 2
    assert generator.guidance_for("dent+streak") == mixed and generator.guidance_for("good") == 1.0
    generator.match_contrast = True
    loaded = AnomalyGenerator.load(generator.save(tmp_path / "gen"))
    assert loaded.matched_guidance == generator.matched_guidance
    assert loaded.calibrated_guidance == generator.calibrated_guidance
    assert loaded.guidance_calibration == generator.guidance_calibration
    assert loaded.shot_contrast == generator.shot_contrast
    assert set(generator.defect_strength) == {"dent", "streak"}
    assert all(0.0 < value <= 1.0 for value in generator.defect_strength.values())
    assert loaded.defect_strength == generator.defect_strength
    loaded.defect_strength = {"dent": 0.5, "streak": 1.0}
    assert loaded.strength_for("dent") == 0.5 and loaded.strength_for("dent+streak") == 0.75
    assert AnomalyGenerator.load(tmp_path / "gen", match_contrast=False).strength_for("dent") == 1.0
    assert AnomalyGenerator.load(tmp_path / "gen", guidance_scale=2.0).guidance_for("dent") == 2.0
    fixed = DiffusionAnomalyGenerator(category="tiles", guidance_scale=2.0, **FAST)
    fixed.fit(normals(), shots(), generator=torch.Generator().manual_seed(0))
    assert not fixed.calibrated_guidance and not fixed.guidance_calibration  # a fixed scale is not searched
    fixed.defect_strength = {"dent": 0.5}
    assert fixed.strength_for("dent") == 1.0  # a scale the user fixed means the defects drawn at that scale


def test_auto_guidance_on_a_fit_made_with_a_fixed_scale_is_refused(tmp_path: Path) -> None:
    """It drew every type at the fallback scale 5, which no fit chose, with a warning that blamed an old save."""
    fixed = DiffusionAnomalyGenerator(category="tiles", guidance_scale=2.0, **FAST)
    folder = fixed.fit(normals(), shots(), generator=torch.Generator().manual_seed(0)).save(tmp_path / "gen")
    for load in (DiffusionAnomalyGenerator.load, AnomalyGenerator.load):
        with pytest.raises(InvalidInputError, match="fixed guidance scale.*calibrate_guidance"):
            load(folder, guidance_scale="auto")
    holder = DiffusionAnomalyGenerator(category="tiles", **FAST)  # loading in place, as FitStore does
    with pytest.raises(InvalidInputError, match="fixed guidance scale"):
        holder.load_state(folder)
    assert not holder.is_fitted and not holder.shot_contrast and holder.defect_types == []  # nothing half-loaded
    loaded = AnomalyGenerator.load(folder)
    assert loaded.guidance_for("dent") == 2.0
    loaded.calibrate_guidance(normals())  # the way to 'auto' the error names
    loaded.guidance_scale = "auto"
    assert loaded.guidance_for("dent") in fixed.guidance_candidates


def test_strength_keeps_that_share_of_the_generated_change(tmp_path: Path) -> None:
    """A faint type whose defects came out stronger than its shots even at the lowest scale is scaled down."""
    generator = DiffusionAnomalyGenerator(category="tiles", guidance_candidates=(1.0,), calibration_samples=1, **FAST)
    generator.fit(normals(), shots(), generator=torch.Generator().manual_seed(0))
    generator.quality_filter = False  # a retry would draw another defect: compare one draw with itself
    masks = [torch.zeros(40, 48, dtype=torch.bool) for _ in range(2)]
    for mask in masks:
        mask[10:30, 10:30] = True
    generator.defect_strength = {"dent": 1.0, "streak": 1.0}
    full = generator.generate(normals(2), masks=masks, defect_types="dent", generator=3)
    generator.defect_strength = {"dent": 0.5, "streak": 1.0}
    half = generator.generate(normals(2), masks=masks, defect_types="dent", generator=3)
    for image, whole, halved, mask in zip(normals(2), full.images, half.images, masks, strict=True):
        unclipped = mask & (whole > 0.001).all(0) & (whole < 0.999).all(0)  # a full change clipped at 0 or 1 is not
        assert unclipped.sum() > 0.9 * mask.sum()
        change, kept = (whole - image)[:, unclipped], (halved - image)[:, unclipped]
        assert change.abs().mean() > 0.01  # the defect changed the surface
        assert torch.allclose(kept, 0.5 * change, atol=1e-4)  # half of it
        assert torch.equal(halved[:, ~mask], image[:, ~mask])  # the background is still the input


def test_strength_jitter_spreads_each_defects_strength_and_is_off_by_default(tmp_path: Path) -> None:
    import pytest

    from anomaly_synth_aug.errors import InvalidInputError

    generator = DiffusionAnomalyGenerator(category="tiles", guidance_candidates=(1.0,), calibration_samples=1, **FAST)
    generator.fit(normals(), shots(), generator=torch.Generator().manual_seed(0))
    generator.defect_strength = {"dent": 0.5, "streak": 1.0}
    token = generator.denoiser.token(1)[0]
    image = normals()[0]

    def strengths(label: str) -> list[float]:
        streams = [torch.Generator().manual_seed(i) for i in range(40)]
        return [generator._job(image, None, "dent", token, label, rng, False).strength for rng in streams]

    assert set(strengths("dent")) == {0.5}  # off: the calibrated strength, nothing drawn
    generator.strength_jitter = 1.0
    jittered = strengths("dent")
    assert all(0.25 - 1e-9 <= value <= 1.0 + 1e-9 for value in jittered)  # 0.5 x [1/2, 2]
    assert min(jittered) < 0.4 and max(jittered) > 0.7  # spread over the range
    assert set(strengths("good")) == {1.0}  # normal variations are never jittered
    loaded = AnomalyGenerator.load(generator.save(tmp_path / "gen"), strength_jitter=0.5)  # a sampling option
    assert loaded.strength_jitter == 0.5
    with pytest.raises(InvalidInputError, match="strength_jitter"):
        DiffusionAnomalyGenerator(strength_jitter=-1.0)

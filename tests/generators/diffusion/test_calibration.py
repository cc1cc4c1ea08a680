"""Guidance calibration: per defect type, the scale whose defects are as visible as the shots, in their direction."""

from __future__ import annotations

from pathlib import Path

import torch
from diffusion_helpers import TINY, defect_shot, normals, shots, surface

from anomaly_synth_aug.generators.base import AnomalyGenerator
from anomaly_synth_aug.generators.diffusion import DiffusionAnomalyGenerator
from anomaly_synth_aug.generators.diffusion.calibration import (
    calibrate_guidance,
    contrast_by_type,
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

    best, gaps = calibrate_guidance(sample, reference, [1.0, 2.0, 5.0])
    assert best == {"dent": 2.0, "streak": 5.0}
    assert set(gaps["dent"]) == {1.0, 2.0, 5.0} and gaps["dent"][2.0] < gaps["dent"][1.0] < gaps["dent"][5.0]


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
    assert generator.guidance_for("dent") == generator.calibrated_guidance["dent"]
    mixed = (generator.calibrated_guidance["dent"] + generator.calibrated_guidance["streak"]) / 2
    assert generator.guidance_for("dent+streak") == mixed and generator.guidance_for("good") == 1.0
    loaded = AnomalyGenerator.load(generator.save(tmp_path / "gen"))
    assert loaded.calibrated_guidance == generator.calibrated_guidance
    assert loaded.guidance_calibration == generator.guidance_calibration
    assert loaded.shot_contrast == generator.shot_contrast
    assert AnomalyGenerator.load(tmp_path / "gen", guidance_scale=2.0).guidance_for("dent") == 2.0
    fixed = DiffusionAnomalyGenerator(category="tiles", guidance_scale=2.0, **FAST)
    fixed.fit(normals(), shots(), generator=torch.Generator().manual_seed(0))
    assert not fixed.calibrated_guidance and not fixed.guidance_calibration  # a fixed scale is not searched

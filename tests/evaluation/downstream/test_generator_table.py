"""The benchmark's table of sources: a variant picked on held-back shots and its recipes on top of the shots."""

from __future__ import annotations

import pytest

from anomaly_synth_aug.evaluation.downstream import (
    GENERATORS,
    PRESETS,
    pool_source,
    training_options,
    variant_counterparts,
)


def test_a_chosen_variant_has_a_counterpart_for_each_other_recipe_of_the_default_generator() -> None:
    assert variant_counterparts("diffusion_with_shots", "diffusion_no_inversion_with_shots") == {
        "diffusion": "diffusion_no_inversion",
        "shots_plus_diffusion": "shots_plus_diffusion_no_inversion",
    }
    assert variant_counterparts("diffusion_with_shots", "diffusion_with_shots") == {}  # the default kept
    assert variant_counterparts("diffusion_with_shots", "diffusion_context_with_shots")["shots_plus_diffusion"] == (
        "shots_plus_diffusion_context"
    )


def test_a_variant_on_top_of_the_shots_trains_like_shots_plus_diffusion_on_the_variant_s_pool() -> None:
    name = "shots_plus_diffusion_no_inversion"
    assert name in GENERATORS and pool_source(name) == "diffusion_no_inversion"
    assert training_options(name, PRESETS["full"]) == pytest.approx(training_options("shots_plus_diffusion", "full"))

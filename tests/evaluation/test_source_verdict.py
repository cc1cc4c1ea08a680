"""``verdict_markdown``: each source family's best 3-seed recipe, and whether diffusion beats them all."""

from __future__ import annotations

from typing import Any

import pytest

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.evaluation.source_verdict import FAMILIES, OPTIONAL, verdict_markdown, with_variant

DETECTOR = "segmenter_prior"
ANCHOR = ("padim_native", "real_paste")


def _runs(generator: str, image: float, pixel: float, seeds: int = 3, detector: str = DETECTOR) -> list[dict[str, Any]]:
    return [
        {
            "detector": detector,
            "generator": generator,
            "seed": seed,
            "metrics": {"image_AUROC": image + 0.001 * (seed - 1), "pixel_AUPR": pixel - 0.001 * (seed - 1)},
        }
        for seed in range(seeds)
    ]


def _everyone_but_diffusion() -> list[dict[str, Any]]:
    return [
        *_runs("shots_only", 0.90, 0.60),
        *_runs("perlin_with_shots", 0.92, 0.50),
        *_runs("cutpaste_with_shots", 0.91, 0.55),
        *_runs("poisson_with_shots", 0.91, 0.45),
        *_runs("real_paste_with_shots", 0.93, 0.58),
        *_runs("shots_plus_real_paste", 0.90, 0.61),
        *_runs("real_paste", 0.95, 0.20, detector="padim_native"),
    ]


def test_diffusion_wins_when_one_recipe_clears_every_family_and_the_anchor() -> None:
    runs = [
        *_everyone_but_diffusion(),
        *_runs("diffusion_with_shots", 0.94, 0.50),
        *_runs("shots_plus_diffusion", 0.96, 0.65),
    ]
    text = verdict_markdown(runs, DETECTOR, anchors=[ANCHOR])
    assert "| real_paste | `shots_plus_real_paste` | 3 | 0.900 | 0.610 |" in text  # best by pixel AP, not by image
    assert "| diffusion | `shots_plus_diffusion` | 3 |" in text
    assert "**Diffusion beats every other source: met**" in text
    assert "short by" not in text


def test_a_miss_names_the_shortfall_and_the_source_that_holds_the_line() -> None:
    runs = [*_everyone_but_diffusion(), *_runs("shots_plus_diffusion", 0.96, 0.62)]  # 0.62 < 0.61 + 0.03
    text = verdict_markdown(runs, DETECTOR, anchors=[ANCHOR])
    assert "**Diffusion beats every other source: missed**" in text
    assert "against 0.610 + 0.03 (`shots_plus_real_paste`), short by 0.020" in text
    assert "image AUROC 0.960 against 0.930 (`real_paste_with_shots`)" in text
    assert "against `padim_native` +0.010 image AUROC" in text


def test_the_image_verdict_and_the_anchor_must_hold_too() -> None:
    behind_on_image = [*_everyone_but_diffusion(), *_runs("shots_plus_diffusion", 0.92, 0.70)]
    assert "missed**" in verdict_markdown(behind_on_image, DETECTOR, anchors=[ANCHOR])
    behind_the_anchor = [*_everyone_but_diffusion(), *_runs("shots_plus_diffusion", 0.94, 0.70)]
    assert "missed**" in verdict_markdown(behind_the_anchor, DETECTOR, anchors=[ANCHOR])  # PaDiM's image AUROC 0.95
    met = "**Diffusion beats every other source: met**"
    assert met in verdict_markdown(behind_the_anchor, DETECTOR)  # no anchor measured: the sources alone


def test_rows_with_fewer_seeds_and_optional_settings_do_not_decide() -> None:
    runs = [
        *_everyone_but_diffusion(),
        *_runs("diffusion_with_shots", 0.92, 0.40),
        *_runs("shots_plus_diffusion", 0.99, 0.90, seeds=2),  # not yet on 3 seeds
        *_runs("diffusion_context_with_shots", 0.99, 0.90),  # an optional setting
    ]
    text = verdict_markdown(runs, DETECTOR, anchors=[ANCHOR])
    assert "| diffusion | `diffusion_with_shots` | 3 | 0.920 | 0.400 |" in text
    assert "| diffusion, not judged | `diffusion_context_with_shots` | 3 |" in text
    assert "**Diffusion beats every other source: missed**" in text
    # the header's seed rule is the judged rows' rule: unjudged rows below it may have fewer seeds
    assert "best recipe on `segmenter_prior` (judged rows: >= 3 seeds) |" in text.splitlines()[0]


def test_missing_families_make_the_verdict_provisional_and_nothing_measured_gives_no_table() -> None:
    runs = [*_runs("shots_only", 0.90, 0.60), *_runs("shots_plus_diffusion", 0.95, 0.70)]
    text = verdict_markdown(runs, DETECTOR)
    assert "| perlin | not measured on 3 seeds yet | | | |" in text
    assert "met so far" in text and "Families without 3-seed rows yet: perlin, cutpaste, poisson, real_paste." in text
    assert "not yet judged" in verdict_markdown(_runs("shots_only", 0.9, 0.6), DETECTOR)
    assert verdict_markdown(_runs("perlin", 0.9, 0.6, seeds=2), DETECTOR) == ""


def test_a_variant_chosen_without_test_data_is_judged_in_place_of_its_default() -> None:
    families, unjudged = with_variant(FAMILIES, OPTIONAL, "diffusion_with_shots", "diffusion_no_inversion_with_shots")
    assert families["diffusion"] == ("diffusion", "diffusion_no_inversion_with_shots", "shots_plus_diffusion")
    assert unjudged["diffusion"][0] == "diffusion_with_shots"  # still shown, never judged
    assert families["real_paste"] == FAMILIES["real_paste"] and FAMILIES["diffusion"][1] == "diffusion_with_shots"
    runs = [
        *_everyone_but_diffusion(),
        *_runs("diffusion_with_shots", 0.99, 0.90),  # better on test, but not the one chosen: no say
        *_runs("diffusion_no_inversion_with_shots", 0.94, 0.50),
    ]
    assert "**Diffusion beats every other source: met**" in verdict_markdown(runs, DETECTOR)
    text = verdict_markdown(runs, DETECTOR, families=families, unjudged=unjudged)
    assert "| diffusion | `diffusion_no_inversion_with_shots` | 3 |" in text
    assert "| diffusion, not judged | `diffusion_with_shots` | 3 |" in text
    assert "**Diffusion beats every other source: missed**" in text


def test_a_chosen_generator_replaces_every_recipe_of_the_default_one_in_its_family() -> None:
    """The pick chose the generator: on top of the shots it is judged on the chosen one's defects as well."""
    counterparts = {"shots_plus_diffusion": "shots_plus_diffusion_no_inversion"}
    families, unjudged = with_variant(
        FAMILIES, OPTIONAL, "diffusion_with_shots", "diffusion_no_inversion_with_shots", counterparts
    )
    assert families["diffusion"] == (
        "diffusion", "diffusion_no_inversion_with_shots", "shots_plus_diffusion_no_inversion"
    )  # fmt: skip
    assert unjudged["diffusion"][:2] == ("diffusion_with_shots", "shots_plus_diffusion")
    runs = [
        *_everyone_but_diffusion(),
        *_runs("shots_plus_diffusion", 0.99, 0.90),  # the default generator on top of the shots: no say any more
        *_runs("shots_plus_diffusion_no_inversion", 0.94, 0.50),
    ]
    only_weighed = with_variant(FAMILIES, OPTIONAL, "diffusion_with_shots", "diffusion_no_inversion_with_shots")
    assert "beats every other source: met" in verdict_markdown(
        runs, DETECTOR, families=only_weighed[0], unjudged=only_weighed[1]
    )  # the old rule: the default generator would still have won on top of the shots
    text = verdict_markdown(runs, DETECTOR, families=families, unjudged=unjudged)
    assert "| diffusion | `shots_plus_diffusion_no_inversion` | 3 |" in text
    assert "| diffusion, not judged | `shots_plus_diffusion` | 3 |" in text
    assert "beats every other source: missed" in text
    with pytest.raises(InvalidInputError, match="'real_paste_with_shots' is not a recipe of the 'diffusion' family"):
        with_variant(FAMILIES, OPTIONAL, "diffusion_with_shots", "diffusion_no_inversion_with_shots",
                     {"real_paste_with_shots": "shots_plus_diffusion_no_inversion"})  # fmt: skip


def test_a_kept_default_changes_nothing_and_an_unjudged_default_is_refused() -> None:
    families, unjudged = with_variant(FAMILIES, OPTIONAL, "diffusion_with_shots", "diffusion_with_shots")
    assert families == {name: tuple(names) for name, names in FAMILIES.items()}
    assert unjudged == {name: tuple(names) for name, names in OPTIONAL.items()}
    families, unjudged = with_variant(FAMILIES, OPTIONAL, "diffusion_with_shots", "diffusion_context_with_shots")
    assert "diffusion_context_with_shots" not in unjudged["diffusion"]  # judged now: not listed twice
    with pytest.raises(InvalidInputError, match="'diffusion_visible_with_shots' is not a judged recipe"):
        with_variant(FAMILIES, OPTIONAL, "diffusion_visible_with_shots", "diffusion_with_shots")
    for judged_already in ("shots_plus_diffusion", "real_paste_with_shots"):  # would count twice, or in two families
        with pytest.raises(InvalidInputError, match=f"'{judged_already}' is judged already"):
            with_variant(FAMILIES, OPTIONAL, "diffusion_with_shots", judged_already)

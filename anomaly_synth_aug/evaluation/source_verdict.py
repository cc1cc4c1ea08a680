"""Does the diffusion generator beat every other source of defects? The product's claim, checked from the results.

A *family* is one source of defects with every recipe that trains on it: alone, next to the shots
(``<source>_with_shots``), on top of the shots (``shots_plus_<source>``). For each family the table
shows its best recipe (highest mean pixel AP) among those measured on at least ``min_seeds`` seeds,
on one detector. Diffusion wins when one of its recipes has a mean pixel AP of at least every other
family's best + ``margin`` and a mean image AUROC not below any other family's recipe, and when
it also reaches the best one-class anchor on image AUROC and pixel AP. Recipes with optional settings
(a filter, a placement rule switched on) are listed apart and do not enter the verdict: they were
added after the first results were seen. The one way in for a variant is a choice made without test
data (``with_variant``: picked on held-back shots, it takes the place of the recipe it was weighed
against, and the same recipes on the chosen generator take the places of the family's other ones). Rows
with fewer seeds are left out, never extrapolated.

Example:
    >>> print(verdict_markdown(runs, "segmenter_prior", anchors=[("padim_native", "real_paste")]))
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.evaluation.reporting import per_seed

#: Family -> its recipes with the generators' default settings.
FAMILIES: dict[str, tuple[str, ...]] = {
    "shots_only": ("shots_only",),
    "perlin": ("perlin", "perlin_with_shots"),
    "cutpaste": ("cutpaste", "cutpaste_with_shots"),
    "poisson": ("poisson", "poisson_with_shots"),
    "real_paste": ("real_paste", "real_paste_with_shots", "shots_plus_real_paste"),
    "diffusion": ("diffusion", "diffusion_with_shots", "shots_plus_diffusion"),
}
#: Family -> recipes with an optional setting switched on (shown, not judged).
OPTIONAL: dict[str, tuple[str, ...]] = {
    "real_paste": ("real_paste_context", "real_paste_context_with_shots"),
    "diffusion": (
        "diffusion_visible",
        "diffusion_visible_with_shots",
        "diffusion_context",
        "diffusion_context_with_shots",
        "diffusion_refined_with_shots",
        "diffusion_windows_with_shots",
    ),
}
CLAIMANT = "diffusion"
MARGIN = 0.03


def with_variant(
    families: Mapping[str, Sequence[str]],
    unjudged: Mapping[str, Sequence[str]],
    default: str,
    chosen: str,
    counterparts: Mapping[str, str] | None = None,
) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]]]:
    """``families`` with ``chosen`` judged in place of ``default``, and each of ``counterparts``' recipes in
    place of its key; ``unjudged`` (the recipes shown, not judged) with the replaced ones added and their
    replacements taken out.

    For a variant picked without test data (``benchmarks/shot_validation.py``): judging both would let the
    test set choose between the two after all. ``counterparts``: the family's other recipes on the default
    generator -> the same recipes on the chosen one (``variant_counterparts``), since the pick chose the
    generator; recipes of other sources stay.

    Example:
        >>> families, unjudged = with_variant(
        ...     FAMILIES, OPTIONAL, "diffusion_with_shots", "diffusion_context_with_shots",
        ...     {"shots_plus_diffusion": "shots_plus_diffusion_context"},
        ... )
    """
    owners = [family for family, names in families.items() if default in names]
    if not owners:
        raise InvalidInputError(
            f"{default!r} is not a judged recipe of any source family, so no variant can stand in for it",
            fix=f"validate variants of one of {sorted(n for names in families.values() for n in names)}",
        )
    replaced = {default: chosen, **(counterparts or {})}
    for old, new in replaced.items():
        if old not in families[owners[0]]:
            raise InvalidInputError(
                f"{old!r} is not a recipe of the {owners[0]!r} family, so {new!r} cannot stand in for it",
                fix=f"pass counterparts among {list(families[owners[0]])}",
            )
        if new != old and any(new in names for names in families.values()):
            raise InvalidInputError(
                f"{new!r} is judged already; it cannot also stand in for {old!r}",
                fix="validate a variant that is not one of the verdict's recipes",
            )
    replaced = {old: new for old, new in replaced.items() if new != old}
    judged = {family: tuple(replaced.get(n, n) for n in names) for family, names in families.items()}
    shown = {family: tuple(n for n in names if n not in replaced.values()) for family, names in unjudged.items()}
    if replaced:
        shown[owners[0]] = (*replaced, *shown.get(owners[0], ()))
    return judged, shown


@dataclass(frozen=True)
class Recipe:
    """One (detector, recipe) over its seeds."""

    name: str
    seeds: int
    image_auroc: float
    pixel_ap: float


def measured(runs: Sequence[dict[str, Any]], detector: str, name: str) -> Recipe | None:
    """Means over the seeds on which both metrics were measured; None without any."""
    image, pixel = per_seed(runs, detector, name, "image_AUROC"), per_seed(runs, detector, name, "pixel_AUPR")
    seeds = sorted(image.keys() & pixel.keys())
    if not seeds:
        return None
    mean = statistics.fmean
    return Recipe(name, len(seeds), mean(image[s] for s in seeds), mean(pixel[s] for s in seeds))


def judged_recipes(
    runs: Sequence[dict[str, Any]], detector: str, names: Sequence[str], min_seeds: int
) -> list[Recipe]:
    """The recipes among ``names`` measured on at least ``min_seeds`` seeds (the ones a verdict may use)."""
    found = (measured(runs, detector, name) for name in names)
    return [recipe for recipe in found if recipe is not None and recipe.seeds >= min_seeds]


def verdict_markdown(
    runs: Sequence[dict[str, Any]],
    detector: str,
    *,
    anchors: Sequence[tuple[str, str]] = (),
    min_seeds: int = 3,
    margin: float = MARGIN,
    families: Mapping[str, Sequence[str]] = FAMILIES,
    unjudged: Mapping[str, Sequence[str]] = OPTIONAL,
) -> str:
    """The family table and the verdict on ``detector`` ("" when no family has ``min_seeds`` seeds).

    ``unjudged``: recipes listed apart, without a say (by default the optional settings).
    """
    judged = {family: judged_recipes(runs, detector, names, min_seeds) for family, names in families.items()}
    best = {family: max(recipes, key=lambda r: r.pixel_ap, default=None) for family, recipes in judged.items()}
    if not any(best.values()):
        return ""
    lines = [
        f"| source of defects | best recipe on `{detector}` (judged rows: >= {min_seeds} seeds) "
        "| seeds | image AUROC | pixel AP |",
        "|---|---|---|---|---|",
    ]
    for family, recipe in best.items():
        if recipe is not None:
            lines.append(f"| {family} | `{recipe.name}` | {_numbers(recipe)} |")
        else:
            lines.append(f"| {family} | not measured on {min_seeds} seeds yet | | | |")
    for family, names in unjudged.items():
        for name in names:
            if (recipe := measured(runs, detector, name)) is not None:
                lines.append(f"| {family}, not judged | `{name}` | {_numbers(recipe)} |")
    anchor = best_anchor(runs, anchors, min_seeds)
    if anchor is not None:
        lines.append(f"| one-class anchor | `{anchor.name}` | {_numbers(anchor)} |")
    lines += ["", _verdict(judged, best, anchor, min_seeds, margin)]
    return "\n".join(lines) + "\n"


def _numbers(recipe: Recipe) -> str:
    return f"{recipe.seeds} | {recipe.image_auroc:.3f} | {recipe.pixel_ap:.3f}"


def best_anchor(runs: Sequence[dict[str, Any]], anchors: Sequence[tuple[str, str]], min_seeds: int) -> Recipe | None:
    """The one-class anchor (``(detector, generator)`` pairs) with the highest mean image AUROC over ``min_seeds``
    seeds or more, named by its detector.
    """
    found = [
        Recipe(detector, recipe.seeds, recipe.image_auroc, recipe.pixel_ap)
        for detector, generator in anchors
        for recipe in judged_recipes(runs, detector, [generator], min_seeds)
    ]
    return max(found, key=lambda r: r.image_auroc, default=None)


def _verdict(
    judged: Mapping[str, list[Recipe]],
    best: Mapping[str, Recipe | None],
    anchor: Recipe | None,
    min_seeds: int,
    margin: float,
) -> str:
    others = {family: recipe for family, recipe in best.items() if family != CLAIMANT and recipe is not None}
    missing = [family for family, recipe in best.items() if recipe is None]
    if best.get(CLAIMANT) is None or not others:
        return f"**Verdict: not yet judged** (no {min_seeds}-seed rows for: {', '.join(missing)})."
    top_ap = max(others.values(), key=lambda r: r.pixel_ap)
    top_image = max((r for family in others for r in judged[family]), key=lambda r: r.image_auroc)  # any recipe
    recipes = judged[CLAIMANT]
    winners = [
        r
        for r in recipes
        if r.pixel_ap >= top_ap.pixel_ap + margin
        and r.image_auroc >= top_image.image_auroc
        and (anchor is None or (r.image_auroc >= anchor.image_auroc and r.pixel_ap >= anchor.pixel_ap))
    ]
    claimant = max(winners or recipes, key=lambda r: r.pixel_ap)
    shortfall = top_ap.pixel_ap + margin - claimant.pixel_ap
    parts = [
        f"pixel AP {claimant.pixel_ap:.3f} (`{claimant.name}`) against {top_ap.pixel_ap:.3f} + {margin:.2f} "
        f"(`{top_ap.name}`)" + ("" if shortfall <= 0 else f", short by {shortfall:.3f}"),
        f"image AUROC {claimant.image_auroc:.3f} against {top_image.image_auroc:.3f} (`{top_image.name}`)",
    ]
    if anchor is not None:
        parts.append(
            f"against `{anchor.name}` {claimant.image_auroc - anchor.image_auroc:+.3f} image AUROC and "
            f"{claimant.pixel_ap - anchor.pixel_ap:+.3f} pixel AP"
        )
    status = ("met" if winners else "missed") + (" so far" if missing else "")
    pending = f" Families without {min_seeds}-seed rows yet: {', '.join(missing)}." if missing else ""
    return f"**Diffusion beats every other source: {status}** — " + "; ".join(parts) + "." + pending


__all__ = [
    "FAMILIES",
    "MARGIN",
    "OPTIONAL",
    "Recipe",
    "best_anchor",
    "judged_recipes",
    "measured",
    "verdict_markdown",
    "with_variant",
]

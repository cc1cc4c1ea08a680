"""The source chart: every recipe of the verdict's sources on one detector, each seed a dot, the anchor a line.

The verdict table (``source_verdict``) keeps one recipe per source and only means; this picture shows
every recipe of its families (and those shown but not judged: optional settings, a default replaced by
a pick made on held-back shots) with their seeds, so a reader sees at a glance whether a lead is larger
than the spread between seeds, and which rows still lack seeds (drawn pale). Recipes not judged are
hatched, as the verdict lists them apart (ablations are not drawn: they have their own table). Kept
apart from the tables because it needs matplotlib.

Example:
    >>> from anomaly_synth_aug.evaluation.source_chart import plot_sources
    >>> plot_sources(runs, "results/downstream_full_sources.png", "segmenter_prior",
    ...              anchors=[("padim_native", "real_paste")])  # doctest: +SKIP
"""

from __future__ import annotations

import statistics
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anomaly_synth_aug.evaluation.reporting import per_seed
from anomaly_synth_aug.evaluation.source_verdict import FAMILIES, OPTIONAL, best_anchor
from anomaly_synth_aug.visualization.figures import save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The two panels: (metric key, axis label).
PANELS: tuple[tuple[str, str], ...] = (("pixel_AUPR", "pixel AP"), ("image_AUROC", "image AUROC"))


def source_recipes(
    runs: Sequence[dict[str, Any]],
    detector: str,
    families: Mapping[str, Sequence[str]] = FAMILIES,
    unjudged: Mapping[str, Sequence[str]] = OPTIONAL,
) -> list[tuple[str, str, bool]]:
    """``(family, recipe, not judged)`` of every recipe measured on ``detector``, family by family."""
    measured = {r["generator"] for r in runs if r["detector"] == detector}
    return [
        (family, name, name in unjudged.get(family, ()))
        for family in families
        for name in (*families[family], *unjudged.get(family, ()))
        if name in measured
    ]


def sources_figure(
    runs: Sequence[dict[str, Any]],
    detector: str,
    *,
    anchors: Sequence[tuple[str, str]] = (),
    min_seeds: int = 3,
    families: Mapping[str, Sequence[str]] = FAMILIES,
    unjudged: Mapping[str, Sequence[str]] = OPTIONAL,
) -> Figure | None:
    """Pixel AP and image AUROC of each recipe on ``detector``: bar = mean over seeds, dots = seeds.

    Bars are coloured by source family; recipes with fewer than ``min_seeds`` seeds are pale, those in
    ``unjudged`` (shown, not judged) hatched. The best one-class anchor (by image AUROC, as in the verdict)
    is a dashed line.
    Returns None when ``detector`` has no recipe of any family.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    recipes = source_recipes(runs, detector, families, unjudged)
    if not recipes:
        return None
    colours = {family: f"C{index}" for index, family in enumerate(families)}
    anchor = best_anchor(runs, anchors, min_seeds)
    figure, axes = plt.subplots(1, len(PANELS), figsize=(2.0 + 0.55 * len(recipes) * len(PANELS), 4.8), squeeze=False)
    for axis, (metric, label) in zip(axes[0], PANELS, strict=True):
        for x, (family, name, not_judged) in enumerate(recipes):
            values = per_seed(runs, detector, name, metric)
            if not values:
                continue
            enough = len(values) >= min_seeds
            face = to_rgba(colours[family], 0.85 if enough else 0.35)  # the face alone: an alpha= would fade the hatch
            axis.bar(
                x,
                statistics.fmean(values.values()),
                0.7,
                facecolor=face,
                hatch="//" if not_judged else None,
                edgecolor=("white" if enough else "dimgray") if not_judged else None,
            )
            axis.scatter([x] * len(values), list(values.values()), s=14, color="black", zorder=3)
        if anchor is not None:
            level = anchor.pixel_ap if metric == "pixel_AUPR" else anchor.image_auroc
            legend = f"{anchor.name} ({anchor.seeds} seeds)"
            axis.axhline(level, color="black", linestyle="--", linewidth=1.0, label=legend)
            axis.legend(fontsize="small", loc="lower right")
        names = [name for _, name, _ in recipes]
        axis.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize="small")
        axis.set_ylabel(label)
        axis.grid(axis="y", alpha=0.3)
        values = [v for _, name, _ in recipes for v in per_seed(runs, detector, name, metric).values()]
        if metric == "image_AUROC" and values:  # zoom in: image AUROCs differ in the second decimal
            low = min([*values, anchor.image_auroc] if anchor is not None else values)
            axis.set_ylim(max(0.0, low - 0.05), 1.0)
    figure.suptitle(f"{detector}: every recipe by source (dots: seeds; pale: < {min_seeds} seeds; hatched: not judged)")
    figure.tight_layout()
    return figure


def plot_sources(
    runs: Sequence[dict[str, Any]],
    path: str | Path,
    detector: str,
    *,
    anchors: Sequence[tuple[str, str]] = (),
    min_seeds: int = 3,
    families: Mapping[str, Sequence[str]] = FAMILIES,
    unjudged: Mapping[str, Sequence[str]] = OPTIONAL,
) -> Path | None:
    """Write ``sources_figure`` to ``path`` (PNG); None (nothing written) when the detector has no recipe."""
    figure = sources_figure(runs, detector, anchors=anchors, min_seeds=min_seeds, families=families, unjudged=unjudged)
    return None if figure is None else save_figure(figure, path, dpi=110)


__all__ = ["PANELS", "plot_sources", "source_recipes", "sources_figure"]

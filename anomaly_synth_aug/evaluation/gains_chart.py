"""The gain chart of a benchmark: paired gains of each source of defects over ``none``, per detector.

Kept apart from the tables because it is the one summary that needs matplotlib.

Example:
    >>> from anomaly_synth_aug.evaluation.gains_chart import plot_gains
    >>> plot_gains(store.runs, "results/downstream_gains.png")  # doctest: +SKIP
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anomaly_synth_aug.evaluation.reporting import (
    BASELINE,
    DETECTION_COLUMNS,
    GAIN_METRICS,
    ordered,
    paired_gain,
    per_seed,
)
from anomaly_synth_aug.visualization.figures import save_figure

if TYPE_CHECKING:
    from matplotlib.figure import Figure

def gains_figure(
    runs: Sequence[dict[str, Any]],
    *,
    metrics: Sequence[str] = GAIN_METRICS,
    generator_order: Sequence[str] = (),
    detector_order: Sequence[str] = (),
) -> Figure | None:
    """Bar chart of the paired gains vs ``none``: one panel per detector, titled with its seed count.

    Panels share the y axis, so a detector whose gains are tiny looks tiny, and bars have the same
    width in every panel. Sources without a seed in common with the baseline are left out. Error bars
    (std over seeds) are drawn only where two or more seeds are paired.
    Returns None when no generator has a seed in common with the baseline.
    """
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    detectors = [
        d
        for d in ordered({r["detector"] for r in runs}, detector_order)
        if any(r["detector"] == d and r["generator"] == BASELINE for r in runs)
    ]
    panels = []
    for detector in detectors:
        measured = {r["generator"] for r in runs if r["detector"] == detector}
        generators = [  # a source with no seed paired with the baseline has no gain: no bars, not zero ones
            g for g in ordered(measured, generator_order)
            if g != BASELINE and any(paired_gain(runs, detector, g, metric)[2] for metric in metrics)
        ]
        if generators:
            panels.append((detector, generators))
    if not panels:
        return None
    slots = [max(len(generators), 2) for _, generators in panels]
    figure, axes = plt.subplots(
        1,
        len(panels),
        figsize=(2.5 + 0.9 * sum(slots), 4.5),
        squeeze=False,
        sharey=True,
        gridspec_kw={"width_ratios": slots},
    )
    width = 0.8 / len(metrics)
    for axis, (detector, generators) in zip(axes[0], panels, strict=True):
        baseline_seeds = per_seed(runs, detector, BASELINE, metrics[0]).keys()
        seeds = {s for g in generators for s in per_seed(runs, detector, g, metrics[0]).keys() & baseline_seeds}
        for index, metric in enumerate(metrics):
            gains = [paired_gain(runs, detector, g, metric) for g in generators]
            spread = any(count >= 2 for _, _, count in gains)  # one seed has no std to draw
            axis.bar(
                [x + (index - (len(metrics) - 1) / 2) * width for x in range(len(generators))],
                [mean if mean is not None else 0.0 for mean, _, _ in gains],
                width,
                yerr=[std if std is not None and count >= 2 else 0.0 for _, std, count in gains] if spread else None,
                capsize=3,
                color=f"C{index}",
                label=DETECTION_COLUMNS.get(metric, metric),
            )
        axis.axhline(0.0, color="black", linewidth=0.8)
        axis.set_xticks(range(len(generators)), generators, rotation=30, ha="right")
        axis.set_xlim(-0.6, max(len(generators), 2) - 0.4)
        axis.set_title(f"{detector} ({len(seeds)} seed{'s' if len(seeds) != 1 else ''})")
        axis.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("gain vs no synthetic anomalies (paired by seed)")
    axes[0][0].legend(fontsize="small")
    figure.tight_layout()
    return figure


def plot_gains(
    runs: Sequence[dict[str, Any]],
    path: str | Path,
    *,
    metrics: Sequence[str] = GAIN_METRICS,
    generator_order: Sequence[str] = (),
    detector_order: Sequence[str] = (),
) -> Path | None:
    """Write ``gains_figure`` to ``path`` (PNG); None (nothing written) when there is nothing to compare."""
    figure = gains_figure(runs, metrics=metrics, generator_order=generator_order, detector_order=detector_order)
    return None if figure is None else save_figure(figure, path)


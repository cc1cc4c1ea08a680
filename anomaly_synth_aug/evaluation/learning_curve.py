"""The diffusion generator's learning curve: downstream quality against the step budget of its fit.

Is the generator held back by its training budget or by its design? Each budget is one benchmark
preset variant (``full_diffusion<N>steps``) whose only change is the fit's ``max_steps``; its runs
live in their own results file, so the curve resumes like the downstream benchmark. This module
turns those runs into a table and a figure, with the other sources of defects of the main results
file drawn as horizontal references (the budget at which diffusion would cross them, if any).

Example:
    >>> points = curve_points({250: runs_250, 500: runs_500}, "segmenter", "diffusion")
    >>> print(learning_curve_markdown(points, references={"real_paste": {"pixel_AUPR": 0.32}}))
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from anomaly_synth_aug.evaluation.downstream.presets import Preset
from anomaly_synth_aug.evaluation.reporting import DETECTION_COLUMNS, format_cell, mean_std

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Metrics of the curve: the verdict per image, the outline per pixel, and the per-region overlap.
CURVE_METRICS: tuple[str, ...] = ("image_AUROC", "pixel_AUPR", "pixel_AUPRO")


def budget_preset(base: Preset, steps: int, default_steps: int) -> Preset:
    """The preset whose diffusion fit trains ``steps`` steps: ``base`` itself at the generator's default budget."""
    if steps == base.diffusion.get("max_steps", default_steps):
        return base
    return replace(base, name=f"{base.name}_diffusion{steps}steps", diffusion={**base.diffusion, "max_steps": steps})


@dataclass(frozen=True)
class CurvePoint:
    """One budget: the mean and std over seeds of each metric, and what the fits cost."""

    steps: int
    seeds: int
    metrics: dict[str, tuple[float | None, float | None]]
    fit_seconds: float | None


def curve_points(
    runs_by_steps: Mapping[int, Sequence[dict[str, Any]]], detector: str, generator: str
) -> list[CurvePoint]:
    """One point per budget that has runs of (``detector``, ``generator``), in order of steps."""
    points = []
    for steps in sorted(runs_by_steps):
        mine = [r for r in runs_by_steps[steps] if r["detector"] == detector and r["generator"] == generator]
        if not mine:
            continue
        metrics = {
            metric: mean_std([r["metrics"][metric] for r in mine if r["metrics"].get(metric) is not None])
            for metric in CURVE_METRICS
        }
        fitted = [r["timings"]["generator_fit_s"] for r in mine if not r["timings"].get("generator_loaded")]
        points.append(CurvePoint(steps, len(mine), metrics, max(fitted) if fitted else None))
    return points


def reference_values(
    runs: Sequence[dict[str, Any]], detector: str, generators: Sequence[str]
) -> dict[str, dict[str, float]]:
    """Mean over seeds of each curve metric for the other sources (the lines the curve is read against)."""
    references: dict[str, dict[str, float]] = {}
    for generator in generators:
        mine = [r for r in runs if r["detector"] == detector and r["generator"] == generator]
        values = {}
        for metric in CURVE_METRICS:
            mean, _ = mean_std([r["metrics"][metric] for r in mine if r["metrics"].get(metric) is not None])
            if mean is not None:
                values[metric] = mean
        if values:
            references[generator] = values
    return references


def learning_curve_markdown(points: Sequence[CurvePoint], references: Mapping[str, Mapping[str, float]]) -> str:
    """The curve as a table (one row per budget), then the reference sources at their own budgets."""
    headers = ["fit steps", "seeds", *(DETECTION_COLUMNS[m] for m in CURVE_METRICS), "fit seconds"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for point in points:
        fit = f"{point.fit_seconds:.0f}" if point.fit_seconds is not None else "reused"
        cells = [str(point.steps), str(point.seeds), *(format_cell(*point.metrics[m]) for m in CURVE_METRICS), fit]
        lines.append("| " + " | ".join(cells) + " |")
    for generator, values in references.items():
        cells = [f"({generator})", "", *(format_cell(values.get(m), None) for m in CURVE_METRICS), ""]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def learning_curve_figure(
    points: Sequence[CurvePoint], references: Mapping[str, Mapping[str, float]], title: str
) -> Figure | None:
    """One panel per metric: the curve against fit steps (log scale), references as dashed lines."""
    if not points:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(1, len(CURVE_METRICS), figsize=(4.2 * len(CURVE_METRICS), 3.8), squeeze=False)
    steps = [p.steps for p in points]
    for axis, metric in zip(axes[0], CURVE_METRICS, strict=True):
        means = [p.metrics[metric][0] for p in points]
        errors = [p.metrics[metric][1] or 0.0 for p in points]
        axis.errorbar(steps, means, yerr=errors, marker="o", capsize=3, color="C0", label="diffusion")
        for index, (generator, values) in enumerate(references.items()):
            if metric in values:
                axis.axhline(values[metric], linestyle="--", color=f"C{index + 1}", linewidth=1, label=generator)
        axis.set_xscale("log", base=2)
        axis.set_xticks(steps, [str(s) for s in steps])
        axis.set_xlabel("diffusion fit steps")
        axis.set_title(DETECTION_COLUMNS[metric])
        axis.grid(alpha=0.3)
    axes[0][0].legend(fontsize="small")
    figure.suptitle(title)
    figure.tight_layout()
    return figure

"""Every recipe of one detector seed by seed, each paired with a reference recipe on the seeds both have.

A mean over three seeds hides how far one seed moves a row, and a row with one seed reads like one with
three. This table shows pixel AP per seed beside the means, and the gain over the reference (by default the
real shots alone, what a user with a few labelled defects runs first) paired by seed: ``+0.038 (-0.004,
+0.064, +0.054)`` is the mean of the per-seed differences, then each difference in seed order. One-class
anchors, which train on no defect, follow without a gain.

Example:
    >>> print(by_seed_markdown(store.runs, "segmenter_prior", anchors=[("padim_native", "real_paste")]))
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence
from typing import Any

from anomaly_synth_aug.evaluation.reporting import ordered, paired_differences, per_seed

#: The recipe every other one is paired with, unless the caller names another.
REFERENCE = "shots_only"
#: Metrics shown as means over a row's seeds, with their column names.
MEAN_COLUMNS: dict[str, str] = {"image_AUROC": "image AUROC", "pixel_AUROC": "pixel AUROC"}
PER_SEED_METRIC = "pixel_AUPR"
MISSING = "–"


def by_seed_markdown(
    runs: Sequence[dict[str, Any]],
    detector: str,
    *,
    reference: str = REFERENCE,
    anchors: Sequence[tuple[str, str]] = (),
    generator_order: Sequence[str] = (),
) -> str:
    """The table for ``detector``'s recipes (in ``generator_order``, others after, sorted), then ``anchors``
    ((detector, generator) of one-class rows); "" when ``detector`` has no run.

    Rows without ``reference`` seeds in common get no gain; a gain names every paired seed's difference, so a
    row paired on fewer seeds than it has shows it.
    """
    generators = ordered({r["generator"] for r in runs if r["detector"] == detector}, generator_order)
    if not generators:
        return ""
    rows = [(detector, g, f"`{g}`") for g in generators]
    rows += [(d, g, f"`{d}` (no defects)") for d, g in anchors if per_seed(runs, d, g, "image_AUROC")]
    seeds = sorted({int(r["seed"]) for r in runs if (r["detector"], r["generator"]) in {row[:2] for row in rows}})
    headers = [
        "training defects",
        "seeds",
        *MEAN_COLUMNS.values(),
        f"pixel AP per seed ({' / '.join(map(str, seeds))})",
        "pixel AP",
        "AUPRO",
        f"Δ pixel AP vs `{reference}`, paired (per seed)",
        "Δ image AUROC, paired",
    ]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for row_detector, generator, label in rows:
        metrics = (*MEAN_COLUMNS, PER_SEED_METRIC, "pixel_AUPRO")
        values = {m: per_seed(runs, row_detector, generator, m) for m in metrics}
        ap = values[PER_SEED_METRIC]
        cells = [label, str(len(values["image_AUROC"]))]
        cells += [_mean(values[m]) for m in MEAN_COLUMNS]
        cells.append(" / ".join(f"{ap[s]:.3f}" if s in ap else MISSING for s in seeds))
        cells += [_mean(ap), _mean(values["pixel_AUPRO"])]
        paired = row_detector == detector and generator != reference
        cells += [_paired(runs, detector, generator, reference, m, each=m == PER_SEED_METRIC) if paired else ""
                  for m in (PER_SEED_METRIC, "image_AUROC")]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _mean(by_seed: dict[int, float]) -> str:
    return f"{statistics.fmean(by_seed.values()):.3f}" if by_seed else MISSING


def _paired(
    runs: Sequence[dict[str, Any]], detector: str, generator: str, reference: str, metric: str, *, each: bool
) -> str:
    """Mean of ``generator - reference`` over their common seeds, and with ``each`` every difference."""
    differences = paired_differences(
        per_seed(runs, detector, generator, metric), per_seed(runs, detector, reference, metric)
    )
    if not differences:
        return ""
    text = f"{statistics.fmean(differences):+.3f}"
    return text + (f" ({', '.join(f'{d:+.3f}' for d in differences)})" if each else "")


__all__ = ["REFERENCE", "by_seed_markdown"]

"""The reports of a downstream results file: the headline table, the verdict on the diffusion generator, every
recipe seed by seed and the ablations, as markdown for ``downstream_<preset>.md`` and for a README's marked blocks.

``benchmarks/downstream.py`` writes them after every run and with ``--report-only``.

Example:
    >>> tables = write_reports(ResultsStore(path), out, "full", judged_for(store))
    >>> print(tables["seeds"])
"""

from __future__ import annotations

import sys
from pathlib import Path

from anomaly_synth_aug.evaluation.downstream import (
    ABLATIONS,
    SHOTS_PLUS,
    JudgedSources,
    fit_costs,
    write_report_files,
)
from anomaly_synth_aug.evaluation.reporting import ResultsStore, ablation_markdown, headline_markdown
from anomaly_synth_aug.evaluation.seed_table import by_seed_markdown
from anomaly_synth_aug.evaluation.source_chart import plot_sources
from anomaly_synth_aug.evaluation.source_verdict import verdict_markdown

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling downstream_matrix.py, however it is loaded
from downstream_matrix import ANCHOR_PAIRS, SOURCES  # noqa: E402

#: Rows of the headline table: (detector, source, label).
HEADLINE_ROWS: list[tuple[str, str, str]] = [
    ("patchcore", "real_paste", "none (one-class; thresholds on pasted shots)"),
    ("padim", "real_paste", "none (one-class; thresholds on pasted shots)"),
    ("patchcore_native", "real_paste", "none (one-class, native scale; thresholds on pasted shots)"),
    ("padim_native", "real_paste", "none (one-class, native scale; thresholds on pasted shots)"),
    *(("segmenter", source, source) for source in SOURCES),
    *(("segmenter_prior", source, source) for source in (*SOURCES, *SHOTS_PLUS)),  # a lever of this detector's
]
#: The detector the verdict on the diffusion generator is read on: the strongest supervised one.
VERDICT_DETECTOR = "segmenter_prior"
VERDICT_NOTE = (
    "Per source of defects, its best recipe (alone, next to the shots, on top of the shots) by mean pixel AP, "
    "among rows with 3 seeds; diffusion must beat every other source's pixel AP by 0.03, not fall below the "
    "image AUROC of any of their 3-seed recipes, and reach the best one-class anchor on both "
    "(`anomaly_synth_aug/evaluation/source_verdict.py`)."
)
SEEDS_NOTE = (
    "Means over each row's seeds; Δ is paired by seed with `shots_only` on the seeds both rows have "
    "(the mean, then each seed's difference), so a row with fewer seeds shows how far one seed moves it."
)


def readme_block(block: str, data: Path, store: ResultsStore) -> str:
    """The README marker name of one of ``store``'s tables: ``headline:magnetic_tile``, and for results with capped
    shots (as their file records, whatever the command line says) ``headline:magnetic_tile:shots5``, so that a
    capped run never overwrites the main tables and the reverse."""
    cap = (store.meta.get("preset") or {}).get("max_shots_per_type")
    return f"{block}:{data.name}" + ("" if cap is None else f":shots{cap}")


def headline_rows(judged: JudgedSources | None = None) -> list[tuple[str, str, str]]:
    """``HEADLINE_ROWS`` with the variant chosen on held-back shots (``judged``), if any, under the recipe it
    replaces in the verdict."""
    rows = list(HEADLINE_ROWS)
    if judged is not None and judged.replaced is not None:
        for default, chosen in (judged.replaced, *judged.counterparts.items()):
            here = (VERDICT_DETECTOR, default, default)
            at = rows.index(here) + 1 if here in rows else len(rows)
            rows.insert(at, (VERDICT_DETECTOR, chosen, f"{chosen} (chosen on held-back shots)"))
    return rows


def headline_table(store: ResultsStore, preset: str, judged: JudgedSources | None = None) -> str:
    """The headline table of one dataset's results file (every recorded run of ``preset``)."""
    runs = store.preset_runs(preset)
    return headline_markdown(runs, headline_rows(judged), anchors=ANCHOR_PAIRS, fit_seconds=fit_costs(store))


def seed_table(store: ResultsStore, preset: str, judged: JudgedSources | None = None) -> str:
    """Every ``VERDICT_DETECTOR`` recipe and one-class anchor seed by seed, paired with the shots alone."""
    order = [generator for detector, generator, _ in headline_rows(judged) if detector == VERDICT_DETECTOR]
    runs = store.preset_runs(preset)
    return by_seed_markdown(runs, VERDICT_DETECTOR, anchors=ANCHOR_PAIRS, generator_order=order)


def verdict_table(store: ResultsStore, preset: str, judged: JudgedSources | None = None) -> str:
    """Each source family's best recipe on ``VERDICT_DETECTOR`` and whether diffusion beats them all ("" if none),
    headed by ``judged``'s note on a pick made on held-back shots."""
    judged = judged or JudgedSources()
    table = verdict_markdown(
        store.preset_runs(preset),
        VERDICT_DETECTOR,
        anchors=ANCHOR_PAIRS,
        families=judged.families,
        unjudged=judged.unjudged,
    )
    return f"{judged.note}\n\n{table}" if table and judged.note else table


def ablation_table(store: ResultsStore, preset: str) -> str:
    """The ablations on ``VERDICT_DETECTOR``, each paired with the recipe it changes ("" when none has run)."""
    runs = [r for r in store.preset_runs(preset) if r["detector"] == VERDICT_DETECTOR]
    return ablation_markdown(runs, ABLATIONS, headings=False)


def write_reports(store: ResultsStore, out: Path, preset: str, judged: JudgedSources) -> dict[str, str]:
    """``downstream_<preset>.md`` and its charts from everything in the store, headed by the headline table, the
    verdict on the diffusion generator (judging ``judged``, from ``judged_for``) and the chart of every recipe
    behind it, then every recipe seed by seed. Returns those three tables by README block name, for ``--readme``."""
    tables = {
        "headline": headline_table(store, preset, judged),
        "verdict": verdict_table(store, preset, judged),
        "seeds": seed_table(store, preset, judged),
    }
    headline = tables["headline"]
    if verdict := tables["verdict"]:
        headline += f"\n### Does the diffusion generator beat every other source?\n\n{VERDICT_NOTE}\n\n{verdict}\n"
    path = out / f"downstream_{preset}_sources.png"
    chart = plot_sources(
        store.preset_runs(preset),
        path,
        VERDICT_DETECTOR,
        anchors=ANCHOR_PAIRS,
        families=judged.families,
        unjudged=judged.unjudged,
    )
    if chart:
        headline += f"\n![every recipe by source]({chart.name})\n"  # drawn before any row has 3 seeds too
    else:
        path.unlink(missing_ok=True)  # no recipe on the verdict's detector: no chart of an older state
    if seeds := tables["seeds"]:
        headline += f"\n### Every `{VERDICT_DETECTOR}` recipe by seed\n\n{SEEDS_NOTE}\n\n{seeds}"
    write_report_files(store, out, preset, headline)
    return tables

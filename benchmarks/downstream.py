"""Downstream benchmark: train detectors on each generator's defects, test on held-out real defects.

For every seed, generator and detector this runs ``anomaly_synth_aug.evaluation.downstream.run_experiment``
(protocol in benchmarks/README.md) and, once per generator and seed, the generation-quality
measures. After every run it rewrites, under ``--out``:

* ``downstream_<preset>.json`` — every run and quality record (the resume point: runs already
  in it are skipped, so an interrupted benchmark continues where it stopped);
* ``downstream_<preset>.md`` — mean ± std over seeds per generator and detector, paired gains vs ``none``;
* ``downstream_<preset>_gains.png`` — the gains as a bar chart;
* ``samples/<preset>/<generator>.png`` — generated samples next to their mask overlays.

    python benchmarks/downstream.py --quick                       # classic generators, segmenter, 3 seeds
    python benchmarks/downstream.py --data path/to/category       # full preset, core matrix (~2 h 50 min)
    python benchmarks/downstream.py --matrix all                  # + ablations, DRÆM, SuperSimpleNet (~11 h)
    python benchmarks/downstream.py --quick --generators none real_paste diffusion --seeds 0
"""

from __future__ import annotations

import argparse
import logging
import os
import platform
import sys
import time
from datetime import UTC, datetime
from importlib.metadata import version
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for remote weights

import torch  # noqa: E402

from anomaly_synth_aug.errors import InvalidInputError  # noqa: E402
from anomaly_synth_aug.evaluation.downstream import (  # noqa: E402
    ABLATIONS,
    DETECTORS,
    GENERATORS,
    Preset,
    fit_name,
    measure_generation_quality,
    preset_record,
    resolve_preset,
    run_experiment,
    same_preset,
)
from anomaly_synth_aug.evaluation.metrics import LABELS_AT_THRESHOLD  # noqa: E402
from anomaly_synth_aug.evaluation.reporting import (  # noqa: E402
    ResultsStore,
    ablation_markdown,
    detection_markdown,
    plot_gains,
    quality_markdown,
)
from anomaly_synth_aug.utils.imports import import_all_submodules  # noqa: E402
from anomaly_synth_aug.visualization import render_sample_grid, save_grid  # noqa: E402

logger = logging.getLogger("benchmarks.downstream")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data" / "magnetic_tile"
CLASSIC = ["none", "perlin", "cutpaste", "poisson", "real_paste"]
#: The full preset's matrices (--matrix). ``core``, the default, answers the headline question in about
#: 2 h 50 min on 2 cores: does the diffusion generator help a detector more than the classic ones? It
#: trains the segmenter on every baseline and the diffusion generator, and PaDiM on the core generators.
#: ``all`` adds the diffusion ablations (segmenter), DRÆM and SuperSimpleNet: about 11 h in total.
FULL_MATRICES: dict[str, tuple[list[str], list[str]]] = {
    "core": ([*CLASSIC, "diffusion"], ["segmenter", "padim"]),
    "all": (list(GENERATORS), list(DETECTORS)),
}
#: What the other presets run when --generators / --detectors are not given.
DEFAULT_GENERATORS = {"quick": CLASSIC, "smoke": ["none", "perlin"]}
DEFAULT_DETECTORS = {"quick": ["segmenter"], "smoke": ["segmenter"]}
#: In the full preset every generator (ablations included) trains the segmenter, but the other,
#: slower detectors only see these: the baseline, the best classic ones and the diffusion generator.
FULL_CORE_GENERATORS = ("none", "perlin", "real_paste", "diffusion")
SAMPLES_IN_GRID = 8


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MVTec-layout category folder")
    parser.add_argument("--generators", nargs="+", choices=list(GENERATORS), help="default: depends on the preset")
    parser.add_argument("--detectors", nargs="+", choices=list(DETECTORS), help="default: depends on the preset")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument(
        "--matrix",
        choices=list(FULL_MATRICES),
        help="full preset only: core (the default; about 2 h 50 min on 2 cores) or all (adds the diffusion "
        "ablations, DRÆM and SuperSimpleNet; about 11 h)",
    )
    presets = parser.add_mutually_exclusive_group()
    presets.add_argument("--quick", action="store_const", const="quick", dest="preset", help="the quick preset")
    presets.add_argument("--preset", choices=["full", "quick", "smoke"])
    # set on the parser: the default of a dest shared by two options comes from the first one (--quick: None)
    parser.set_defaults(preset="full")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results")
    parser.add_argument(
        "--work-dir",
        type=Path,
        default=PROJECT_ROOT / "runs" / "benchmark",
        help="fitted generators, reused across detectors and resumed runs (not results)",
    )
    parser.add_argument("--no-quality", action="store_true", help="skip the generation-quality measures")
    parser.add_argument(
        "--threads", type=int, default=2, help="torch intra-op threads (the budgets are for 2 cores)"
    )
    return parser.parse_args(argv)


def environment() -> dict[str, str]:
    """What the numbers were measured on."""
    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "anomalib": version("anomalib"),
        "lightning": version("lightning"),
        "cpu_count": str(os.cpu_count()),
        "torch_threads": str(torch.get_num_threads()),
        "machine": platform.machine(),
    }


def generators_for(preset: str, chosen: list[str] | None, matrix: str = "core") -> list[str]:
    """The generators to run: ``--generators`` if given, else the preset's (for ``full``: the matrix's)."""
    if chosen:
        return chosen
    return FULL_MATRICES[matrix][0] if preset == "full" else DEFAULT_GENERATORS[preset]


def detectors_for(generator: str, preset: str, chosen: list[str] | None, matrix: str = "core") -> list[str]:
    """The detectors to run ``generator`` with: ``--detectors`` if given, else the preset's matrix."""
    if chosen:
        return chosen
    if preset != "full":
        return DEFAULT_DETECTORS[preset]
    detectors = FULL_MATRICES[matrix][1]
    return detectors if generator in FULL_CORE_GENERATORS else [d for d in detectors if d == "segmenter"]


def check_resumable(store: ResultsStore, data: Path, preset: Preset) -> None:
    """Refuse to mix runs of another dataset or of changed preset values into one results file."""
    if not store.runs and not store.quality:
        return
    if store.meta.get("data") != str(data) or not same_preset(store.meta.get("preset") or {}, preset):
        raise InvalidInputError(
            "the results file holds runs of another dataset or preset values "
            f"({store.meta.get('data')}, {store.meta.get('preset')})",
            path=store.path,
            fix="pass another --out, or move the file aside to start over",
        )


def write_reports(store: ResultsStore, out: Path, preset: str) -> None:
    """Markdown tables and the gain chart from everything in the store (so far), in the canonical order.

    Not just what this invocation ran: a run limited to ``--generators perlin`` must not drop or reorder
    the rows (and the ``none`` baseline) recorded by earlier invocations.
    """
    generators, detectors = list(GENERATORS), list(DETECTORS)
    runs = [r for r in store.runs if r["preset"] == preset]
    quality = [q for q in store.quality if q["preset"] == preset]
    shown = [g for g in generators if any(q["generator"] == g for q in quality)]
    chart = plot_gains(
        runs, out / f"downstream_{preset}_gains.png", generator_order=generators, detector_order=detectors
    )
    meta = store.meta
    lines = [
        f"# Downstream benchmark — preset `{preset}`",
        "",
        f"Data: `{meta.get('data')}`. Protocol: benchmarks/README.md. Generated by `benchmarks/downstream.py`;",
        f"every run is in `downstream_{preset}.json`. Environment: {meta.get('environment')}.",
        f"Runs: {len(runs)}; summed run time {sum(_run_seconds(r) for r in runs) / 60:.1f} min.",
        "",
        "## Detection on held-out real defects",
        "",
        "AP = average precision (anomalib `AUPR`, step-wise). F1 uses the threshold picked on the synthetic",
        "validation set. It is n/a for `none`, which has no anomalies to pick it on, and for runs recorded",
        f"before labels used that threshold (no `{LABELS_AT_THRESHOLD}` in the JSON). Those runs were",
        "labelled at raw score 0.5. Δ = gain over `none`, paired by seed.",
        "",
        detection_markdown(runs, generators, detectors),
    ]
    if chart is not None:
        lines += [f"![gains]({chart.name})", ""]
    ablations = ablation_markdown(runs, ABLATIONS, detectors)
    if ablations:
        lines += [
            "## Ablations of the diffusion generator",
            "",
            "Each ablation switches one mechanism off. Δ = ablation minus the full generator, paired by seed",
            "(negative: the mechanism helped the detector).",
            "",
            ablations,
        ]
    if quality:
        lines += [
            "## Generation quality",
            "",
            "C2ST: a small CNN trained from scratch to tell held-out real defect crops from generated ones;",
            "AUROC on crops it did not train on. Diversity: mean RMS pixel distance between defect crops",
            "(outside-mask pixels zeroed) within a defect type, averaged over types.",
            "",
            quality_markdown(quality, generators),
            "Samples: " + ", ".join(f"[{g}](samples/{preset}/{g}.png)" for g in shown),
            "",
        ]
    (out / f"downstream_{preset}.md").write_text("\n".join(lines))


def _run_seconds(record: dict) -> float:
    timings = record["timings"]
    return timings["generator_fit_s"] + timings["train_s"] + timings["test_s"]


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.matrix is not None and args.preset != "full":
        raise InvalidInputError(
            f"--matrix chooses among the full preset's runs, not the {args.preset} preset's",
            fix="drop --matrix, or use --preset full",
        )
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    import_all_submodules()  # hours of runs: keep the code they started with, even if the tree is edited
    preset = resolve_preset(args.preset)
    matrix = args.matrix or "core"
    generators = generators_for(preset.name, args.generators, matrix)
    out: Path = args.out
    store = ResultsStore(out / f"downstream_{preset.name}.json")
    check_resumable(store, args.data, preset)
    store.meta = {
        "data": str(args.data),
        "preset": preset_record(preset),
        "environment": environment(),
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    failures: list[str] = []
    started = time.perf_counter()
    for seed in args.seeds:
        for generator in generators:
            generator_dir = args.work_dir / preset.name / "generators" / f"{fit_name(generator)}-seed{seed}"
            if generator != "none" and not args.no_quality and not store.has_quality(preset.name, generator, seed):
                logger.info("quality: %s seed %d", generator, seed)
                try:
                    record, samples = measure_generation_quality(
                        args.data, generator, seed, preset, generator_dir=generator_dir
                    )
                except Exception as exc:  # one broken generator must not stop the benchmark
                    logger.exception("quality %s seed %d failed", generator, seed)
                    failures.append(f"quality {generator} seed {seed}: {exc}")
                else:
                    store.add_quality(record)
                    if seed == args.seeds[0]:
                        shown = samples.batch
                        grid = render_sample_grid(shown.images[:SAMPLES_IN_GRID], shown.masks[:SAMPLES_IN_GRID])
                        save_grid(grid, out / "samples" / preset.name / f"{generator}.png")
            for detector in detectors_for(generator, preset.name, args.detectors, matrix):
                if store.has_run(preset.name, generator, detector, seed):
                    logger.info("skip %s / %s / seed %d: already in %s", generator, detector, seed, store.path)
                    continue
                logger.info("run %s / %s / seed %d", generator, detector, seed)
                try:
                    record = run_experiment(
                        args.data,
                        generator,
                        detector,
                        seed,
                        preset,
                        generator_dir=generator_dir,
                        cache_dir=args.work_dir / preset.name / "cache" / f"{generator}-seed{seed}",
                    )
                except Exception as exc:  # recorded as failed, retried on the next invocation
                    logger.exception("%s / %s / seed %d failed", generator, detector, seed)
                    failures.append(f"{generator} / {detector} / seed {seed}: {exc}")
                    continue
                store.add_run(record)
                write_reports(store, out, preset.name)
                logger.info("%s / %s / seed %d: %s", generator, detector, seed, record["metrics"])
    store.meta["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
    store.save()
    write_reports(store, out, preset.name)
    logger.info("done in %.1f min; results in %s", (time.perf_counter() - started) / 60, out)
    for failure in failures:
        logger.error("FAILED %s", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

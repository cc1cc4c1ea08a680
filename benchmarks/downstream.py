"""Downstream benchmark: which source of defects makes the best detector of real defects, on each dataset?

For every dataset, seed and (source, detector) pair of the matrix this runs
``anomaly_synth_aug.evaluation.downstream.run_experiment`` (protocol in benchmarks/README.md) and,
once per generator and seed, the generation-quality measures. After every run it rewrites, under
``--out/<dataset>/``:

* ``downstream_<preset>.json``: every run and quality record (the resume point: runs already
  in it are skipped, so an interrupted benchmark continues where it stopped);
* ``downstream_<preset>.md``: the headline table (pretrained PatchCore and PaDiM, then the segmenter
  and the segmenter with the normal prior for every source), the verdict on the diffusion generator, every
  recipe of the verdict's detector seed by seed (``downstream_reports.py``), then per-detector tables with gains
  paired by seed;
* ``downstream_<preset>_gains.png``: the gains over ``none`` as a bar chart;
* ``downstream_<preset>_sources.png``: every recipe of the verdict's sources on its detector, seeds as dots;
* ``samples/<preset>/<generator>.png``: generated samples next to their mask overlays.

    python benchmarks/downstream.py                                   # full preset, core matrix, both datasets
    python benchmarks/downstream.py --matrix segmenter                # the plain segmenter on the core's sources
    python benchmarks/downstream.py --matrix prior_sources            # segmenter_prior on every source of defects
    python benchmarks/downstream.py --matrix prior_ablations          # the ablations on segmenter_prior
    python benchmarks/downstream.py --matrix sources                  # + none, perlin, cutpaste, poisson, ...
    python benchmarks/downstream.py --matrix all                      # + ablations, SuperSimpleNet
    python benchmarks/downstream.py --quick                           # smoke check of the whole path
    python benchmarks/downstream.py --report-only                     # tables and charts from the JSON only
    python benchmarks/downstream.py --report-only --readme README.md  # ... and the README's marked tables
    python benchmarks/downstream.py --data path/to/category --generators none perlin --detectors segmenter
"""

from __future__ import annotations

import argparse
import dataclasses
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

from anomaly_synth_aug.data.fewshot import DEFAULT_SHOT_FRACTION  # noqa: E402
from anomaly_synth_aug.data.mvtec_folder import scan_mvtec_folder  # noqa: E402
from anomaly_synth_aug.errors import InvalidInputError  # noqa: E402
from anomaly_synth_aug.evaluation.downstream import (  # noqa: E402
    DETECTORS,
    GENERATORS,
    JudgedSources,
    Preset,
    generates,
    judged_sources,
    measure_generation_quality,
    pool_source,
    preset_record,
    resolve_preset,
    run_experiment,
    same_preset,
)
from anomaly_synth_aug.evaluation.readme_tables import sync_readme  # noqa: E402
from anomaly_synth_aug.evaluation.reporting import ResultsStore  # noqa: E402
from anomaly_synth_aug.generators.fit_store import FitStore  # noqa: E402
from anomaly_synth_aug.utils.imports import import_all_submodules  # noqa: E402
from anomaly_synth_aug.visualization import render_sample_grid, save_grid  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its siblings downstream_*.py, however it is loaded
from downstream_matrix import (  # noqa: E402
    DEFAULT_SEEDS,
    FULL_MATRICES,
    Pair,
    matrix_pairs,
)
from downstream_reports import (  # noqa: E402
    VERDICT_DETECTOR,
    ablation_table,
    readme_block,
    write_reports,
)

logger = logging.getLogger("benchmarks.downstream")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"
DEFAULT_DATASETS = [SHARED_DATA / "magnetic_tile", SHARED_DATA / "mvtec_screw"]
SAMPLES_IN_GRID = 8
#: Where ``benchmarks/shot_validation.py`` records its picks (``<dir>/<dataset>/choice.json``).
CHOICES_DIR = PROJECT_ROOT / "benchmarks" / "results" / "shot_validation"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", type=Path, nargs="+", help="MVTec-layout category folders (default: magnetic_tile and mvtec_screw)"
    )
    parser.add_argument("--generators", nargs="+", choices=list(GENERATORS), help="default: the preset's matrix")
    parser.add_argument("--detectors", nargs="+", choices=list(DETECTORS), help="default: the preset's matrix")
    parser.add_argument("--seeds", nargs="+", type=int, help="default: 0 1 2 (full), 0 (quick, smoke)")
    parser.add_argument(
        "--matrix",
        choices=list(FULL_MATRICES),
        help="full preset only: core (the default: the anchors; segmenter_prior on the shots, and on pasted shots "
        "and on diffusion defects next to the shots), prior (the core without its anchors), segmenter (the plain "
        "segmenter on the core's sources), sources (core + segmenter + pasted shots and diffusion alone, none, "
        "Perlin, CutPaste and Poisson, alone and next to the shots, and the diffusion/Perlin mixture, on the plain "
        "segmenter), prior_sources (core + segmenter_prior on every other source), prior_ablations (the ablations "
        "next to the shots on segmenter_prior) or all (sources, every ablation, the detector ablations and "
        "SuperSimpleNet)",
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
        help="fitted generators and cached pools, reused across detectors and resumed runs (not results)",
    )
    parser.add_argument(
        "--shot-fraction",
        type=float,
        help="share of each defect type given as shots (default: the preset's, 1/3); the rest is evaluated on",
    )
    parser.add_argument(
        "--max-shots-per-type",
        type=int,
        help="keep only the first N shots of each defect type (default: all of the shot fraction); the test set "
        "stays the same. Recorded with the preset: pass another --out than the uncapped results'",
    )
    parser.add_argument("--no-quality", action="store_true", help="skip the generation-quality measures")
    parser.add_argument(
        "--choices",
        type=Path,
        default=CHOICES_DIR,
        help="picks made on held-back shots (<dir>/<dataset>/choice.json, by benchmarks/shot_validation.py): the "
        "verdict judges a dataset's chosen variant in place of the recipe it was weighed against",
    )
    parser.add_argument(
        "--report-only", action="store_true", help="rewrite the tables and charts from the results files; run nothing"
    )
    parser.add_argument(
        "--readme",
        type=Path,
        help="with --report-only: also copy each dataset's headline table, verdict and ablations on the verdict's "
        "detector into this README, between its <!-- headline:<dataset> -->, <!-- verdict:<dataset> --> and "
        "<!-- ablations:<dataset> --> markers",
    )
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


def default_datasets() -> list[Path]:
    """The datasets beside the project, or a clear error when none is there."""
    present = [path for path in DEFAULT_DATASETS if path.is_dir()]
    if not present:
        raise InvalidInputError(
            f"none of the default datasets is present ({', '.join(str(p) for p in DEFAULT_DATASETS)})",
            fix="pass --data path/to/category (an MVTec-layout folder)",
        )
    missing = [path for path in DEFAULT_DATASETS if not path.is_dir()]
    for path in missing:
        logger.warning("dataset %s is absent: skipped", path)
    return present


def check_resumable(store: ResultsStore, data: Path, preset: Preset, digest: str | None = None) -> None:
    """Refuse to mix runs of another dataset, of another version of it (``digest``: which files it holds) or of
    changed preset values into one results file. A file written before digests were recorded passes on its path."""
    if not store.runs and not store.quality:
        return
    recorded = store.meta.get("data")
    same_data = recorded is not None and Path(recorded).resolve() == data.resolve()  # "../x" and "/abs/x" alike
    if not same_data or not same_preset(store.meta.get("preset") or {}, preset):
        raise InvalidInputError(
            "the results file holds runs of another dataset or preset values "
            f"({store.meta.get('data')}, {store.meta.get('preset')})",
            path=store.path,
            fix="pass another --out, or move the file aside to start over",
        )
    if digest is not None and store.meta.get("data_digest") not in (None, digest):
        raise InvalidInputError(
            f"the results file holds runs of another version of {data}: images or masks were added, removed or "
            "changed since, so its runs would be skipped as done and compared with new ones",
            path=store.path,
            fix="pass another --out, or move the file aside to start over",
        )


def judged_for(store: ResultsStore, choices: Path | None = CHOICES_DIR) -> JudgedSources:
    """What the verdict judges on the store's dataset: the default families, or a pick made on its held-back shots."""
    shot_fraction = (store.meta.get("preset") or {}).get("shot_fraction", DEFAULT_SHOT_FRACTION)
    data = store.meta.get("data")
    return judged_sources(data, choices, VERDICT_DETECTOR, shot_fraction=shot_fraction, root=PROJECT_ROOT)


def preset_work_dir(work_dir: Path, data: Path, preset: Preset) -> Path:
    """Where one dataset's fits and pools live: per preset, and apart for other shots (a cap or another share).

    Runs with other shots must not share pools: each would find the other's pool stale and move it aside.
    """
    capped = "" if preset.max_shots_per_type is None else f"-shots{preset.max_shots_per_type}"
    share = "" if preset.shot_fraction == DEFAULT_SHOT_FRACTION else f"-fraction{preset.shot_fraction:.4g}"
    return work_dir / data.name / f"{preset.name}{capped}{share}"


def pool_dir(work: Path, generator: str, seed: int) -> Path:
    """The cached pool of ``generator`` and ``seed``: a ``_with_shots`` row trains from its source's."""
    return work / "cache" / f"{pool_source(generator)}-seed{seed}"


def run_dataset(
    data: Path,
    preset: Preset,
    pairs: list[Pair],
    seeds: list[int],
    args: argparse.Namespace,
    *,
    grid_seed: int,
    choices: Path | None = CHOICES_DIR,
) -> list[str]:
    """Every (pair, seed) of one dataset that is not recorded yet; returns the failures.

    ``choices``: where the reports look for picks made on held-back shots (``--choices``).

    Sample grids are drawn from ``grid_seed``'s quality samples.
    """
    out: Path = args.out / data.name
    work = preset_work_dir(args.work_dir, data, preset)
    store = ResultsStore(out / f"downstream_{preset.name}.json")
    digest = scan_mvtec_folder(data, decode=False).digest()
    check_resumable(store, data, preset, digest)
    store.meta = {
        "data": str(data.resolve()),
        "data_digest": digest,
        "preset": preset_record(preset),
        "environment": environment(),
        "updated": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    judged = judged_for(store, choices)  # read once: a pick does not change while the runs go on
    failures: list[str] = []
    fits = FitStore(work / "generators")
    for seed in seeds:
        for generator, detector in pairs:
            if generates(generator) and not args.no_quality and not store.has_quality(preset.name, generator, seed):
                logger.info("%s quality: %s seed %d", data.name, generator, seed)
                try:
                    record, samples = measure_generation_quality(
                        data, generator, seed, preset, fit_store=fits
                    )
                except Exception as exc:  # one broken generator must not stop the benchmark
                    logger.exception("quality %s seed %d failed", generator, seed)
                    failures.append(f"{data.name}: quality {generator} seed {seed}: {exc}")
                else:
                    store.add_quality(record)
                    if seed == grid_seed:
                        shown = samples.batch
                        grid = render_sample_grid(shown.images[:SAMPLES_IN_GRID], shown.masks[:SAMPLES_IN_GRID])
                        save_grid(grid, out / "samples" / preset.name / f"{generator}.png")
            if store.has_run(preset.name, generator, detector, seed):
                logger.info("skip %s / %s / %s / seed %d: already in %s", data.name, generator, detector, seed, store.path)
                continue
            logger.info("run %s / %s / %s / seed %d", data.name, generator, detector, seed)
            try:
                record = run_experiment(
                    data,
                    generator,
                    detector,
                    seed,
                    preset,
                    fit_store=fits,
                    cache_dir=pool_dir(work, generator, seed),
                    memory_store=work / "normal_memory",
                )
            except Exception as exc:  # recorded as failed, retried on the next invocation
                logger.exception("%s / %s / seed %d failed", generator, detector, seed)
                failures.append(f"{data.name}: {generator} / {detector} / seed {seed}: {exc}")
                continue
            store.add_run(record)
            write_reports(store, out, preset.name, judged)
            logger.info("%s / %s / %s / seed %d: %s", data.name, generator, detector, seed, record["metrics"])
    store.meta["updated"] = datetime.now(UTC).isoformat(timespec="seconds")
    store.save()
    write_reports(store, out, preset.name, judged)
    return failures


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
    if args.shot_fraction is not None:
        preset = dataclasses.replace(preset, shot_fraction=args.shot_fraction)  # recorded: never mixed with others
    if args.max_shots_per_type is not None:
        preset = dataclasses.replace(preset, max_shots_per_type=args.max_shots_per_type)  # checked, recorded
    if args.report_only:
        for data in args.data if args.data else default_datasets():
            store = ResultsStore(args.out / data.name / f"downstream_{preset.name}.json")
            if store.runs:
                judged = judged_for(store, args.choices)
                tables = write_reports(store, args.out / data.name, preset.name, judged)
                logger.info("rewrote the reports of %s", store.path)
                if args.readme is None:
                    continue
                blocks = {**tables, "ablations": ablation_table(store, preset.name)}
                for block, table in blocks.items():
                    if sync_readme(args.readme, name := readme_block(block, data, store), table):
                        logger.info("rewrote the block %s in %s", name, args.readme)
        return 0
    pairs = matrix_pairs(preset.name, args.generators, args.detectors, args.matrix or "core")
    seeds = args.seeds if args.seeds else DEFAULT_SEEDS[preset.name]
    datasets = args.data if args.data else default_datasets()
    failures: list[str] = []
    started = time.perf_counter()
    for seed in seeds:  # seed by seed, so an interrupted benchmark has covered every dataset evenly
        for data in datasets:
            failures += run_dataset(data, preset, pairs, [seed], args, grid_seed=seeds[0], choices=args.choices)
    logger.info("done in %.1f min; results in %s", (time.perf_counter() - started) / 60, args.out)
    for failure in failures:
        logger.error("FAILED %s", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

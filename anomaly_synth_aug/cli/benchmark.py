"""``anomaly-synth-aug benchmark``: the downstream benchmark (generators x detectors x seeds) on one category.

Each finished run is appended to ``results.jsonl`` and fsynced at once, and a rerun with the same
arguments skips the runs already there: a benchmark killed after hours loses at most the run it
was in. (``benchmarks/downstream.py`` is the full harness with reports; this is its one-category CLI.)

Example::

    anomaly-synth-aug benchmark --data ../shared/data/magnetic_tile --generators '[none, real_paste]' --seeds '[0, 1]'
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from anomaly_synth_aug.cache.atomic import append_lines_durably
from anomaly_synth_aug.cache.manifest import drop_torn_tail

logger = logging.getLogger(__name__)

RunKey = tuple[str, str, str, int, str]


def finished_runs(results: Path) -> set[RunKey]:
    """(data folder, generator, detector, seed, preset) of every readable record; a torn last line (a kill while
    writing) is skipped with a warning, so its run is done again (``benchmark`` then cuts it off)."""
    if not results.exists():
        return set()
    done: set[RunKey] = set()
    for number, line in enumerate(results.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            key = (record.get("data_root", ""), record["generator"], record["detector"], int(record["seed"]))
            done.add((*key, record["preset"]))
        except (json.JSONDecodeError, KeyError, TypeError, ValueError):
            logger.warning("%s:%d is not a complete run record (a kill while writing?): run again.", results, number)
    return done


def benchmark(
    data: Path,
    generators: list[str] = ["none", "real_paste", "diffusion"],  # noqa: B006 -- jsonargparse shows it as the default
    detectors: list[str] = ["segmenter"],  # noqa: B006
    seeds: list[int] = [0],  # noqa: B006
    preset: str = "quick",
    output: Path = Path("results/benchmark"),
) -> int:
    """Train each detector on each generator's defects and test it on held-out real defects; write JSON.

    Args:
        data: MVTec-layout category folder.
        generators: sources of training defects (none, shots_only, perlin, cutpaste, poisson, real_paste,
            diffusion, diffusion ablations).
        detectors: segmenter (pretrained U-Net), segmenter_scratch, supersimplenet, draem, padim, patchcore.
        seeds: one run per seed.
        preset: sizes and budgets: smoke, quick or full.
        output: results.jsonl and fitted generators go here; runs already in results.jsonl are skipped.
    """
    from anomaly_synth_aug.evaluation.downstream import preset_record, run_experiment  # heavy
    from anomaly_synth_aug.utils.imports import import_all_submodules

    import_all_submodules()  # runs take hours: keep the code they started with, even if the tree is edited

    output.mkdir(parents=True, exist_ok=True)
    results = output / "results.jsonl"
    done = finished_runs(results)
    drop_torn_tail(results)  # the sample cache's own repair: the next record starts on a line of its own
    data_root = str(Path(data).resolve())
    appended = 0
    for seed in seeds:
        for generator in generators:
            for detector in detectors:
                if (data_root, generator, detector, seed, preset) in done:
                    print(generator, detector, seed, f"already in {results}: skipped")
                    continue
                record = run_experiment(data, generator, detector, seed, preset, fit_store=output / "generators")
                record["preset_values"] = preset_record(preset)
                record["data_root"] = data_root
                append_lines_durably(results, [json.dumps(record)])
                appended += 1
                print(generator, detector, seed, {k: v for k, v in record["metrics"].items() if "AUROC" in k})
    print(f"{appended} run(s) appended to {results}")
    return 0

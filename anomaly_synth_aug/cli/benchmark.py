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
    """(data folder, generator, detector, seed, preset) of every readable record; a torn line (a kill while
    writing) is skipped with a warning, so its run is done again (``benchmark`` cuts a torn last line off first)."""
    if not results.exists():
        return set()
    done: set[RunKey] = set()
    for number, line in enumerate(results.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        key = _run_key(line)
        if key is None:
            logger.warning("%s:%d is not a complete run record (a kill while writing?): run again.", results, number)
        else:
            done.add(key)
    return done


def _run_key(line: str) -> RunKey | None:
    """The run a record line holds, or None when the line is not a whole record."""
    try:
        record = json.loads(line)
        data_root = record.get("data_root", "")
        return (data_root, record["generator"], record["detector"], int(record["seed"]), record["preset"])
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError):
        return None


def repair_last_line(results: Path) -> None:
    """Make the file end at a whole line before anything is appended.

    A last line with no newline is either a whole record whose newline a kill cut off (it gets its
    newline: the run is finished and stays so) or a torn one (cut off, with a warning: its run is done again).
    """
    if not results.is_file():
        return
    data = results.read_bytes()
    if not data or data.endswith(b"\n"):
        return
    last = data[data.rfind(b"\n") + 1 :].decode("utf-8", errors="replace")
    if _run_key(last) is not None:
        append_lines_durably(results, [""])  # the record's missing newline
        return
    number = data.count(b"\n") + 1
    logger.warning("%s:%d is not a complete run record (a kill while writing?): run again.", results, number)
    drop_torn_tail(results)


def check_run_names(generators: list[str], detectors: list[str], preset: str) -> None:
    """Every name known before the first run: a typo late in a long list must not stop the benchmark hours in."""
    from anomaly_synth_aug.evaluation.downstream import check_generator_name, detector_spec, resolve_preset  # heavy

    resolve_preset(preset)
    for detector in detectors:
        detector_spec(detector)
    for generator in generators:
        check_generator_name(generator)


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

    check_run_names(generators, detectors, preset)
    output.mkdir(parents=True, exist_ok=True)
    results = output / "results.jsonl"
    repair_last_line(results)  # before reading: the next record starts on a line of its own
    done = finished_runs(results)
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
                done.add((data_root, generator, detector, seed, preset))  # a name given twice runs once
                appended += 1
                print(generator, detector, seed, {k: v for k, v in record["metrics"].items() if "AUROC" in k})
    print(f"{appended} run(s) appended to {results}")
    return 0

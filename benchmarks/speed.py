"""Speed benchmark, side by side in one run on one machine: generation, fine-tuning, training overhead, memory.

Measures, on an MVTec-layout category:

1. **fine-tune time** of each learned generator (the diffusion model trains from scratch on the
   train normals and the few-shot shots, through ``SyntheticAnomalyDataModule.prepare_generator``);
2. **generation throughput** (images/s) of every generator at the images' native resolution;
3. **training epoch time** of a ``DefectSegmenter`` on the plain ``Folder`` datamodule vs through
   the wrapper with online generation and with the sample cache (the cache is filled first, timed
   separately), as ratios to the plain epoch — all three on the same train normals;
4. **peak RSS** after each stage (this process; DataLoader workers separately).

Targets reported against: fine-tune <= 10 min, diffusion >= 5 images/s on 2 cores, cached
epoch <= 1.05x the plain one. Writes ``speed_<preset>.json`` and ``speed_<preset>.md`` to ``--out``.

    python benchmarks/speed.py --quick          # ~10 min: short diffusion fit budget (1 min), fewer images
    python benchmarks/speed.py                  # the generator's own fit budget (9 min)
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import shutil
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for remote weights

import torch  # noqa: E402

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule  # noqa: E402
from anomaly_synth_aug.data.io import load_image  # noqa: E402
from anomaly_synth_aug.errors import InvalidInputError  # noqa: E402
from anomaly_synth_aug.evaluation.downstream import (  # noqa: E402
    GENERATORS,
    Preset,
    build_generator,
    fit_generator,
    folder_datamodule,
    resolve_preset,
)
from anomaly_synth_aug.evaluation.reporting import json_safe  # noqa: E402
from anomaly_synth_aug.evaluation.speed import (  # noqa: E402
    generation_throughput,
    load_average,
    peak_rss_mb,
    train_epoch_seconds,
)
from anomaly_synth_aug.generators.fit_store import FitStore  # noqa: E402
from anomaly_synth_aug.models.segmenter import DefectSegmenter  # noqa: E402
from anomaly_synth_aug.utils.imports import import_all_submodules  # noqa: E402

logger = logging.getLogger("benchmarks.speed")

PROJECT_ROOT = Path(__file__).resolve().parents[1]
DEFAULT_DATA = PROJECT_ROOT.parent / "shared" / "data" / "magnetic_tile"
TARGETS = {"fine_tune_max_s": 600.0, "diffusion_min_images_per_s": 5.0, "cached_max_epoch_ratio": 1.05}
#: Per preset: diffusion fit budget (minutes), throughput images, epochs, batches per epoch, cached samples per type.
SETTINGS: dict[str, dict[str, Any]] = {
    "full": {"fit_steps": None, "images": 64, "epochs": 3, "batches": 1.0, "samples_per_type": 64},
    "quick": {"fit_steps": 60, "images": 24, "epochs": 3, "batches": 10, "samples_per_type": 16},
    "smoke": {"fit_steps": 2, "images": 4, "epochs": 2, "batches": 2, "samples_per_type": 2},
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MVTec-layout category folder")
    parser.add_argument("--generators", nargs="+", choices=[g for g in GENERATORS if g != "none"],
                        default=["perlin", "cutpaste", "diffusion", "diffusion_7_steps"])
    parser.add_argument("--epoch-generator", choices=[g for g in GENERATORS if g != "none"],
                        help="generator of the epoch-time comparison (default: diffusion if measured, else the first)")
    presets = parser.add_mutually_exclusive_group()
    presets.add_argument("--quick", action="store_const", const="quick", dest="preset", help="the quick settings")
    presets.add_argument("--preset", choices=list(SETTINGS))
    # set on the parser: the default of a dest shared by two options comes from the first one (--quick: None)
    parser.set_defaults(preset="full")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the targets are for 2 cores)")
    parser.add_argument("--num-workers", type=int, default=2, help="DataLoader workers in the epoch timings")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results")
    parser.add_argument("--work-dir", type=Path, default=PROJECT_ROOT / "runs" / "speed", help="sample cache")
    return parser.parse_args(argv)


def measure_generators(args: argparse.Namespace, preset: Preset, settings: dict[str, Any]) -> tuple[dict, dict]:
    """Fit (timed) and generation throughput per generator; returns (records, fitted generators)."""
    records: dict[str, dict[str, Any]] = {}
    fitted = {}
    store = FitStore(args.work_dir / "fits")
    for name in args.generators:
        logger.info("generator %s: fit and throughput", name)
        generator = build_generator(name, preset, args.data.name)
        datamodule = SyntheticAnomalyDataModule(
            folder_datamodule(args.data, preset), generator=generator, val_split="none", seed=0
        )
        # a sampling variant (e.g. fewer steps) loads the fit it shares from the store: no second fit
        fit_seconds, reused = fit_generator(datamodule, store)
        shared = reused and generator.requires_fit
        generator = datamodule.generator
        paths = datamodule.train_normal_paths()
        order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(0))[: settings["images"]]
        normals = [load_image(paths[i]) for i in order.tolist()]
        throughput = generation_throughput(generator, normals, batch_size=preset.train_batch_size)
        records[name] = {
            "fit_s": fit_seconds if generator.requires_fit and not shared else None,
            "fit_reused": shared,
            "images_per_s": throughput.images_per_s,
            "images": throughput.count,
            "mean_pixels_per_image": throughput.pixels_per_image,
            "config": generator.get_config(),
            "peak_rss_mb": peak_rss_mb(),
            "load_average": load_average(),
        }
        fitted[name] = generator
        logger.info("%s: %s", name, records[name])
    return records, fitted


def measure_epochs(args: argparse.Namespace, preset: Preset, settings: dict[str, Any], generator: Any) -> dict:
    """Epoch time of the same model on the plain datamodule, the online wrapper and the cached wrapper."""
    size = (preset.image_size, preset.image_size)
    batches = settings["batches"]

    def timed(datamodule: Any) -> dict[str, Any]:
        model = DefectSegmenter(
            base_width=preset.segmenter_width,
            pre_processor=DefectSegmenter.configure_pre_processor(size),
            evaluator=False,
            visualizer=False,
        )
        result = train_epoch_seconds(model, datamodule, epochs=settings["epochs"], limit_train_batches=batches)
        return {**result, "peak_rss_mb": peak_rss_mb(), "load_average": load_average()}

    workers = {"num_workers": args.num_workers}
    results: dict[str, Any] = {"generator": type(generator).__name__, "model": "DefectSegmenter", "image_size": size}
    logger.info("epoch time: plain Folder")
    results["plain"] = timed(folder_datamodule(args.data, dataclasses.replace(preset, **workers)))

    def wrapper(**kwargs: Any) -> SyntheticAnomalyDataModule:
        # val_split="none": the wrapper trains on all train normals, exactly the plain datamodule's
        return SyntheticAnomalyDataModule(
            folder_datamodule(args.data, dataclasses.replace(preset, **workers)),
            generator=generator,
            anomaly_ratio=preset.anomaly_ratio,
            val_split="none",
            seed=0,
            **kwargs,
        )

    logger.info("epoch time: wrapper, online generation")
    results["online"] = timed(wrapper(mode="online"))
    cache_dir = args.work_dir / "cache"
    shutil.rmtree(cache_dir, ignore_errors=True)  # time a fresh fill, not a reuse
    logger.info("epoch time: wrapper, cached (filling the cache first)")
    try:
        cached = wrapper(
            mode="cached",
            cache_dir=cache_dir,
            samples_per_type=settings["samples_per_type"],
            cache_trainer_kwargs={"accelerator": "cpu", "enable_progress_bar": False},
        )
        start = time.perf_counter()
        cached.setup()
        results["cache_fill_s"] = time.perf_counter() - start
        results["cache_samples"] = settings["samples_per_type"] * len(generator.defect_types)
        results["cached"] = timed(cached)
    except (TypeError, NotImplementedError, InvalidInputError) as exc:  # a datamodule without the cached mode
        logger.warning("cached mode not available: %s", exc)
        results["cached"] = {"available": False, "error": str(exc)}
    plain = results["plain"]["median_epoch_s"]
    for mode in ("online", "cached"):
        median = results[mode].get("median_epoch_s")
        results[f"{mode}_ratio"] = median / plain if median is not None else None
    return results


def targets_report(
    generators: dict[str, dict], epochs: dict | None, fit_steps: int | None = None
) -> dict[str, dict[str, Any]]:
    """Each target with the measured value and whether it is met (None when not measured).

    A fit cut short by the preset's budget (``fit_steps`` instead of the generator's own default)
    says nothing about the full fine-tune, so that target is then reported as not judged rather than met.
    """
    diffusion = generators.get("diffusion", {})
    fit = diffusion.get("fit_s")
    speed = diffusion.get("images_per_s")
    ratio = epochs.get("cached_ratio") if epochs else None
    capped = fit_steps is not None
    fit_met = None if fit is None or capped else fit <= TARGETS["fine_tune_max_s"]
    return {
        "diffusion fine-tune <= 10 min": {"value_s": fit, "met": fit_met, "capped_at_steps": fit_steps if capped else None},
        "diffusion >= 5 images/s": {
            "value": speed,
            "met": None if speed is None else speed >= TARGETS["diffusion_min_images_per_s"],
        },
        "cached epoch <= 1.05x plain": {
            "value": ratio,
            "met": None if ratio is None else ratio <= TARGETS["cached_max_epoch_ratio"],
        },
    }


def markdown(report: dict[str, Any]) -> str:
    def number(value: Any, fmt: str = "{:.2f}") -> str:
        return "n/a" if value is None else fmt.format(value)

    def fit_cell(record: dict[str, Any]) -> str:
        if record.get("fit_reused"):
            return "a shared fit"
        shared = record.get("fit_shared_with")  # records written before the fit store
        return f"{shared}'s fit" if shared else number(record["fit_s"], "{:.1f}")

    lines = [
        f"# Speed benchmark — preset `{report['preset']}`",
        "",
        f"Data: `{report['data']}`; torch threads: {report['threads']}; CPUs: {os.cpu_count()}; "
        f"load average at start: {number(report['load_average_start'])} (other processes slow every number).",
        f"Settings: {report['settings']}. Wall time of this benchmark: {report['wall_s'] / 60:.1f} min.",
        "",
        "## Targets",
        "",
        "| target | measured | met |",
        "|---|---|---|",
    ]
    for name, target in report["targets"].items():
        value = target.get("value_s", target.get("value"))
        met = {True: "yes", False: "**no**", None: "not measured"}[target["met"]]
        if target.get("capped_at_steps") is not None:
            met = f"not judged: this preset caps the fit at {target['capped_at_steps']} steps (see diffusion_generator.py)"
        lines.append(f"| {name} | {number(value)} | {met} |")
    lines += [
        "",
        "## Generators (native resolution)",
        "",
        "| generator | fit (s) | images/s | mean pixels/image | peak RSS (MiB) |",
        "|---|---|---|---|---|",
    ]
    for name, record in report["generators"].items():
        lines.append(
            f"| {name} | {fit_cell(record)} | {number(record['images_per_s'])} | "
            f"{record['mean_pixels_per_image']:.0f} | {record['peak_rss_mb']['self']:.0f} |"
        )
    epochs = report.get("epochs")
    lines += ["", "## Training epoch time (DefectSegmenter)", ""]
    if epochs is None:
        lines.append("Not measured.")
    else:
        lines += [
            f"Generator: {epochs['generator']}; input {epochs['image_size']}; median of the epochs after the first.",
        ]
        if "cache_fill_s" in epochs:
            lines.append(f"Cache fill: {epochs['cache_samples']} samples in {epochs['cache_fill_s']:.1f} s (one-off).")
        lines += [
            "",
            "| datamodule | median epoch (s) | ratio to plain | epochs (s) | peak RSS self / workers (MiB) |",
            "|---|---|---|---|---|",
        ]
        for mode in ("plain", "online", "cached"):
            record = epochs[mode]
            if "median_epoch_s" not in record:
                lines.append(f"| {mode} | not available: {record.get('error', '')} | | | |")
                continue
            ratio = 1.0 if mode == "plain" else epochs[f"{mode}_ratio"]
            rss = record["peak_rss_mb"]
            lines.append(
                f"| {mode} | {record['median_epoch_s']:.2f} | {ratio:.3f} | "
                f"{', '.join(f'{s:.1f}' for s in record['epochs_s'])} | {rss['self']:.0f} / {rss['children']:.0f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    import_all_submodules()  # keep the code the benchmark started with, even if the tree is edited
    settings = SETTINGS[args.preset]
    preset = resolve_preset("smoke" if args.preset == "smoke" else "quick")  # image size, batch, widths
    overrides = {} if settings["fit_steps"] is None else {"max_steps": settings["fit_steps"]}
    if args.preset == "full":
        preset = dataclasses.replace(preset, name="full", diffusion={})  # the generator's own fit budget
    else:
        preset = dataclasses.replace(preset, diffusion={**preset.diffusion, **overrides})
    started = time.perf_counter()
    load_start = load_average()
    generators, fitted = measure_generators(args, preset, settings)
    epoch_name = args.epoch_generator or ("diffusion" if "diffusion" in fitted else args.generators[0])
    if epoch_name not in fitted:
        generators_extra, extra = measure_generators(
            argparse.Namespace(**{**vars(args), "generators": [epoch_name]}), preset, settings
        )
        generators.update(generators_extra)
        fitted.update(extra)
    epochs = measure_epochs(args, preset, settings, fitted[epoch_name])
    report = {
        "preset": args.preset,
        "data": str(args.data),
        "threads": args.threads,
        "settings": {**settings, "num_workers": args.num_workers, "diffusion": preset.diffusion},
        "load_average_start": load_start,
        "generators": generators,
        "epochs": epochs,
        "targets": targets_report(generators, epochs, settings["fit_steps"]),
        "wall_s": time.perf_counter() - started,
        "measured": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / f"speed_{args.preset}.json").write_text(json.dumps(json_safe(report), indent=2, allow_nan=False) + "\n")
    (args.out / f"speed_{args.preset}.md").write_text(markdown(report))
    logger.info("targets: %s", report["targets"])
    return 0


if __name__ == "__main__":
    sys.exit(main())

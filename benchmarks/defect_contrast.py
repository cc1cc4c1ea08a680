"""How visible are generated defects compared with real ones? Contrast against a 7-px band around the mask.

For a saved generator (e.g. one the downstream benchmark fitted, under ``runs/benchmark``), this
generates every defect type on ``--images`` evenly spaced train normals and prints, per type, the mean
``defect_contrast`` of the generated defects next to that of the generator's own *shots* and of the
held-out real defects of the few-shot split. Writes the numbers as JSON when ``--out`` is given.
It does the same in the downstream detectors' feature space (``FeatureContrast``: ImageNet
EfficientNet-Lite0 features inside the mask against a ring of surface around it), and counts the
generated defects that stand out less there than the faintest shot of their type.

``--set NAME=VALUE`` changes a sampling option of the saved generator (no refit), so sampling
settings such as the guidance scale can be *calibrated on the shots*: pick the setting whose
``ratio_to_shots`` (geometric mean over types of generated / shot contrast) is closest to 1. The
held-out real defects are printed for the report only; choosing on them would tune on test data.

    python benchmarks/defect_contrast.py runs/benchmark/quick/generators/diffusion-seed0
    python benchmarks/defect_contrast.py runs/benchmark/quick/generators/diffusion-seed0 --set guidance_scale=3

``--sheet PNG`` also draws, per defect type, a row of held-out real defects over a row of generated
ones (close crops, each next to its mask outline), to look at what the numbers mean.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import os
import time
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from anomaly_synth_aug.data.fewshot import few_shot_split, load_defect_records  # noqa: E402
from anomaly_synth_aug.data.io import load_image  # noqa: E402
from anomaly_synth_aug.evaluation.generation_quality import contrast_by_type, defect_crops  # noqa: E402
from anomaly_synth_aug.generators.base import AnomalyGenerator  # noqa: E402
from anomaly_synth_aug.generators.batch import GeneratedBatch  # noqa: E402
from anomaly_synth_aug.generators.diffusion.visibility import (  # noqa: E402
    FeatureContrast,
    faintest_by_type,
    median_by_type,
)
from anomaly_synth_aug.visualization import render_sample_grid, save_grid  # noqa: E402

SHEET_CROP = 96
SHEET_CONTEXT = 1.0  # crop side = twice the defect's box

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "magnetic_tile"


def sampling_option(text: str) -> tuple[str, Any]:
    """``NAME=VALUE`` with VALUE read as JSON when it parses (``3`` -> 3, ``false`` -> False), else a string."""
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE, got {text!r}")
    try:
        return name, json.loads(value)
    except json.JSONDecodeError:
        return name, value


def ratio_to_shots(generated: dict[str, float], shots: dict[str, float]) -> float | None:
    """Geometric mean over the types of both of generated / shot contrast (1 = as visible as the shots)."""
    ratios = [generated[name] / shots[name] for name in generated.keys() & shots.keys() if shots[name] > 0]
    return math.exp(sum(math.log(r) for r in ratios) / len(ratios)) if ratios and min(ratios) > 0 else None


def feature_contrasts(
    images: list[torch.Tensor],
    masks: list[torch.Tensor],
    types: list[str],
    shots: list[Any],
    real: list[Any],
) -> dict[str, Any]:
    """Per type, the median ``FeatureContrast`` of generated defects, shots and held-out real defects, the
    share of generated defects fainter in feature space than the faintest shot of their type, and the
    geometric-mean ratio generated / shots."""
    measure = FeatureContrast()
    generated = measure(images, masks)
    shot_values = measure([s.image for s in shots], [s.mask for s in shots])
    shot_types = [s.defect_type for s in shots]
    faintest = faintest_by_type(shot_values, shot_types)
    below: dict[str, list[bool]] = {}
    for value, name in zip(generated.tolist(), types, strict=True):
        if name in faintest:
            below.setdefault(name, []).append(value < faintest[name])
    result: dict[str, Any] = {
        "generated": median_by_type(generated, types),
        "shots": median_by_type(shot_values, shot_types),
        "real": median_by_type(measure([s.image for s in real], [s.mask for s in real]), [s.defect_type for s in real]),
        "below_faintest_shot": {name: sum(flags) / len(flags) for name, flags in sorted(below.items())},
    }
    result["ratio_to_shots"] = ratio_to_shots(result["generated"], result["shots"])
    return result


def crop_sheet(
    real: list[tuple[torch.Tensor, torch.Tensor, str]],
    generated: list[tuple[torch.Tensor, torch.Tensor, str]],
    per_row: int,
) -> torch.Tensor:
    """Per defect type, up to ``per_row`` real crops over as many generated ones (uint8 ``[3, H, W]``).

    Short rows are filled with blank tiles so every row starts a new type.
    """
    blank_image = torch.ones(3, SHEET_CROP, SHEET_CROP)
    blank_mask = torch.zeros(SHEET_CROP, SHEET_CROP, dtype=torch.bool)
    images: list[torch.Tensor] = []
    masks: list[torch.Tensor] = []
    for name in sorted({t for *_, t in generated}):
        for group in (real, generated):
            chosen = [(image, mask) for image, mask, t in group if t == name][:per_row]
            if chosen:
                shown = [mask for _, mask in chosen]
                images += defect_crops([image for image, _ in chosen], shown, size=SHEET_CROP, context=SHEET_CONTEXT)
                outlines = defect_crops([m[None].float() for m in shown], shown, size=SHEET_CROP, context=SHEET_CONTEXT)
                masks += list(outlines[:, 0] > 0.5)
            images += [blank_image] * (per_row - len(chosen))
            masks += [blank_mask] * (per_row - len(chosen))
    return render_sample_grid(images, masks, pairs_per_row=per_row)


def print_table(numbers: dict[str, Any], measure: str, digits: int) -> None:
    """Per type: generated / shots / real values (and the share fainter than every shot, in the feature
    table), then the geometric-mean generated / shot ratio of ``measure``."""
    below = numbers.get("below_faintest_shot")
    for name in sorted(set(numbers["generated"]) | set(numbers["real"])):
        cells = {column: numbers[column].get(name) for column in ("generated", "shots", "real")}
        if below is not None:
            cells["fainter than every shot"] = below.get(name)
        print(f"{name:>12}: " + ", ".join(f"{k} {'-' if v is None else round(v, digits)}" for k, v in cells.items()))
    ratio = numbers["ratio_to_shots"]
    print(f"generated / shot {measure} (geometric mean): {'-' if ratio is None else round(ratio, 3)}")


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("generator_dir", type=Path, help="a folder written by AnomalyGenerator.save()")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MVTec-layout category folder")
    parser.add_argument("--images", type=int, default=10, help="train normals to generate each type on")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the numbers")
    parser.add_argument(
        "--set", type=sampling_option, action="append", default=[], metavar="NAME=VALUE",
        help="sampling option of the saved generator, e.g. guidance_scale=3 or refine_masks=false",
    )  # fmt: skip
    parser.add_argument("--sheet", type=Path, default=None, help="PNG of real vs generated defect crops")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    split = few_shot_split(args.data)
    real = load_defect_records(split.eval_anomalies, on_empty_mask="skip")
    shots = load_defect_records(split.shots, on_empty_mask="skip")
    step = max(1, len(split.train_normals) // args.images)
    normals = [load_image(path) for path in split.train_normals[::step][: args.images]]
    options = dict(args.set)
    generator = AnomalyGenerator.load(args.generator_dir, **options)
    FeatureContrast().extractor  # noqa: B018 -- load the shared backbone a filter may use outside the timing
    start = time.perf_counter()
    batch = GeneratedBatch.concat([
        generator.generate(normals, defect_types=[name] * len(normals), generator=torch.Generator().manual_seed(args.seed))
        for name in generator.defect_types
    ])  # fmt: skip
    seconds = time.perf_counter() - start
    images, masks, types = batch.images, batch.masks, batch.defect_types
    generation = {  # with the options given: e.g. the cost of a sampling filter
        "images": len(images), "seconds": round(seconds, 1), "images_per_s": round(len(images) / seconds, 2),
        "threads": args.threads, "load_average": round(os.getloadavg()[0], 2), "stats": batch.stats,
    }  # fmt: skip
    result: dict[str, Any] = {
        "generated": contrast_by_type(images, masks, types),
        "shots": contrast_by_type([s.image for s in shots], [s.mask for s in shots], [s.defect_type for s in shots]),
        "real": contrast_by_type([s.image for s in real], [s.mask for s in real], [s.defect_type for s in real]),
    }
    result["ratio_to_shots"] = ratio_to_shots(result["generated"], result["shots"])
    result["features"] = feature_contrasts(images, masks, types, shots, real)
    result["generation"] = generation
    print(f"options {options or 'as saved'}; {generation['images']} images at {generation['images_per_s']} images/s")
    print_table(result, "contrast", digits=3)
    print("feature contrast (median; share of generated defects fainter than the type's faintest shot):")
    print_table(result["features"], "feature contrast", digits=2)
    if args.sheet is not None:
        sheet = crop_sheet(
            [(s.image, s.mask, s.defect_type) for s in real], list(zip(images, masks, types, strict=True)), per_row=6
        )
        save_grid(sheet, args.sheet)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        record = {"generator_dir": str(args.generator_dir), "options": options, **result}
        args.out.write_text(json.dumps(record, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

"""Benchmark of DiffusionAnomalyGenerator on a real category: fit time/memory, generation speed, exactness, samples.

Protocol: few-shot split of the category (first third of each defect type's
images are the shots), fit from scratch on ``--threads`` CPU threads within
``--max-steps`` (default: the generator's own step budget), then generate defects into held-out normal test images at
native resolution and measure images/s, check that every pixel outside the
returned mask is bit-identical, and save a sample grid per defect type plus a
JSON of the measurements under ``--out``.

    python benchmarks/diffusion_generator.py --data ../shared/data/magnetic_tile
    python benchmarks/diffusion_generator.py --quick          # a smoke run in about a minute
    python benchmarks/diffusion_generator.py --data ../shared/data/mvtec_screw --set context_placement=true \
        --out benchmarks/results/diffusion_screw_context        # with a sampling option changed
"""

from __future__ import annotations

import argparse
import ast
import json
import os
import resource
import time
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torchvision.utils import make_grid, save_image

from anomaly_synth_aug.data.fewshot import few_shot_split
from anomaly_synth_aug.data.io import load_image
from anomaly_synth_aug.data.sample import AnomalySample
from anomaly_synth_aug.generators.base import GeneratedBatch
from anomaly_synth_aug.generators.diffusion import DiffusionAnomalyGenerator
from anomaly_synth_aug.generators.diffusion.patches import context_box, crop_image_patch, mask_bbox
from anomaly_synth_aug.generators.diffusion.sampling import SAMPLING_MODES

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "magnetic_tile"
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "diffusion"
THUMB = 96  # px per grid cell
OVERLAY = torch.tensor([1.0, 0.15, 0.15])[:, None]


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MVTec-layout category folder")
    parser.add_argument("--max-steps", type=int, default=None, help="training steps (default: the generator's own)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="folder for the grids and the JSON")
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny budget, few images")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the target is 2 cores)")
    parser.add_argument("--normals", type=int, default=200, help="normal training images to load (evenly spaced)")
    parser.add_argument("--generate", type=int, default=100, help="images to generate for the speed measurement")
    parser.add_argument("--per-type", type=int, default=8, help="samples per defect type in the grids")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--checkpoint-dir", type=Path, default=None, help="resumable training state (optional)")
    parser.add_argument("--save", type=Path, default=None, help="save the fitted generator here (for later checks)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="OPTION=VALUE",
        help="a constructor option of the generator, e.g. context_placement=true (JSON values; repeatable)",
    )
    return parser.parse_args()


def options(pairs: list[str]) -> dict[str, Any]:
    """``["context_placement=true", "mode=repaint"]`` -> ``{"context_placement": True, "mode": "repaint"}``."""
    parsed: dict[str, Any] = {}
    for pair in pairs:
        key, separator, value = pair.partition("=")
        if not separator or not key:
            raise SystemExit(f"--set {pair!r}: expected OPTION=VALUE, e.g. --set context_placement=true")
        try:
            parsed[key] = json.loads(value)
        except json.JSONDecodeError:
            try:
                parsed[key] = ast.literal_eval(value)  # Python spellings: True, None, (1, 2)
            except (ValueError, SyntaxError):
                parsed[key] = value  # a plain string
    reserved = {"category", "max_steps", "checkpoint_dir"} & set(parsed)
    if reserved:
        raise SystemExit(f"--set {', '.join(sorted(reserved))}: set by the script (use --max-steps / --checkpoint-dir)")
    return parsed


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # Linux reports KiB


def evenly_spaced(items: list[Path], count: int) -> list[Path]:
    if count >= len(items):
        return items
    step = len(items) / count
    return [items[int(i * step)] for i in range(count)]


def zoom(image: torch.Tensor, mask: torch.Tensor, overlay: bool = False) -> torch.Tensor:
    """A square crop around the mask (the mask fills about a third of it), resized to a grid cell."""
    box = context_box(mask_bbox(mask), tuple(mask.shape), patch_size=48, fill=0.35)
    cell = crop_image_patch(image, box, THUMB)
    if overlay:
        region = F.interpolate(mask[box.slices()][None, None].float(), size=(THUMB, THUMB), mode="nearest")[0, 0] > 0
        cell = cell.clone()
        cell[:, region] = 0.45 * cell[:, region] + 0.55 * OVERLAY
    return cell


def thumbnail(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The whole image letterboxed into a cell, mask outline in red (where the defect sits in the image)."""
    height, width = image.shape[-2:]
    scale = THUMB / max(height, width)
    size = (max(1, round(height * scale)), max(1, round(width * scale)))
    small = F.interpolate(image[None], size=size, mode="bilinear", antialias=True)[0]
    small_mask = F.adaptive_max_pool2d(mask[None, None].float(), size)[0, 0] > 0
    edge = small_mask & ~(-F.max_pool2d(-small_mask[None, None].float(), 3, 1, 1)[0, 0] > 0)
    small[:, edge] = OVERLAY.expand(3, int(edge.sum()))
    cell = torch.zeros(3, THUMB, THUMB)
    top, left = (THUMB - size[0]) // 2, (THUMB - size[1]) // 2
    cell[:, top : top + size[0], left : left + size[1]] = small
    return cell


def save_type_grid(
    path: Path, real: list[AnomalySample], inputs: list[torch.Tensor], batch: GeneratedBatch, columns: int
) -> None:
    """Rows: real shots (zoomed), generated samples (zoomed), generated with mask overlay, whole generated images."""
    blank = torch.ones(3, THUMB, THUMB)

    def row(cells: list[torch.Tensor]) -> list[torch.Tensor]:
        return (cells + [blank] * columns)[:columns]

    cells = row([zoom(s.image, s.mask) for s in real])
    cells += row([zoom(img, m) for img, m in zip(batch.images, batch.masks, strict=True)])
    cells += row([zoom(img, m, overlay=True) for img, m in zip(batch.images, batch.masks, strict=True)])
    cells += row([thumbnail(img, m) for img, m in zip(batch.images, batch.masks, strict=True)])
    save_image(make_grid(cells, nrow=columns, padding=2, pad_value=1.0), path)


def background_violations(inputs: list[torch.Tensor], batch: GeneratedBatch) -> int:
    """Pixels outside the returned masks that differ from the input (must be 0)."""
    return sum(
        int(((out != img).any(0) & ~mask).sum())
        for img, out, mask in zip(inputs, batch.images, batch.masks, strict=True)
    )


def timed_generation(
    generator: DiffusionAnomalyGenerator, images: list[torch.Tensor], seed: int
) -> tuple[GeneratedBatch, float]:
    start = time.perf_counter()
    batch = generator.generate(images, generator=torch.Generator().manual_seed(seed))
    return batch, time.perf_counter() - start


def speed_by_mode(
    generator: DiffusionAnomalyGenerator, targets: list[torch.Tensor], seed: int
) -> tuple[dict[str, Any], int]:
    """Images/s and quality-filter stats of both sampling modes, and background pixels they changed.

    The generator's own ``mode`` is restored afterwards, so what it generates next (the sample
    grids) shows its configured sampling, not whichever mode was timed last.
    """
    configured = generator.mode
    speed: dict[str, Any] = {}
    violations = 0
    try:
        for mode in SAMPLING_MODES:
            generator.mode = mode
            batch, seconds = timed_generation(generator, targets, seed)
            violations += background_violations(targets, batch)
            speed[mode] = {
                "images": len(batch),
                "seconds": round(seconds, 2),
                "images_per_s": round(len(batch) / seconds, 2),
                "quality": batch.stats,
            }
            print(f"{mode}: {len(batch) / seconds:.2f} images/s, stats {batch.stats}", flush=True)
    finally:
        generator.mode = configured
    return speed, violations


def main() -> None:
    args = parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.max_steps, args.normals, args.generate, args.per_type = 40, 30, 12, 4
    args.out.mkdir(parents=True, exist_ok=True)
    load_before = os.getloadavg()

    split = few_shot_split(args.data)
    shots = split.load_shots()
    normals = [load_image(p) for p in evenly_spaced(split.train_normals, args.normals)]
    targets = [load_image(p) for p in evenly_spaced(split.eval_normals, max(args.generate, args.per_type))]
    print(f"{len(shots)} shots of {split.defect_types}, {len(normals)} normal training images", flush=True)

    generator = DiffusionAnomalyGenerator(
        category=args.data.name,
        **({} if args.max_steps is None else {"max_steps": args.max_steps}),
        checkpoint_dir=args.checkpoint_dir,
        **options(args.set),
    )
    start = time.perf_counter()
    generator.fit(normals, shots, generator=torch.Generator().manual_seed(args.seed))
    fit_seconds = time.perf_counter() - start
    rss_after_fit = peak_rss_mib()
    if args.save is not None:
        generator.save(args.save)

    # warm-up, then the measured run (random types and sampled masks, native resolution)
    generator.generate(targets[:2], generator=torch.Generator().manual_seed(args.seed))
    speed, violations = speed_by_mode(generator, targets[: args.generate], args.seed + 1)

    # the grids show what the generator makes with its own settings (the default: DDIM inversion)
    grid_stats: dict[str, Any] = {}
    for index, defect_type in enumerate(generator.defect_types):
        inputs = targets[: args.per_type]
        batch = generator.generate(
            inputs, defect_types=[defect_type] * len(inputs), generator=torch.Generator().manual_seed(100 + index)
        )
        violations += background_violations(inputs, batch)
        real = [s for s in shots if s.defect_type == defect_type][: args.per_type]
        save_type_grid(args.out / f"grid_{defect_type}.png", real, inputs, batch, args.per_type)
        grid_stats[defect_type] = batch.stats
    assert violations == 0, f"{violations} background pixels changed outside the returned masks"

    report = generator.training_report
    results = {
        "dataset": str(args.data),
        "quick": args.quick,
        "threads": args.threads,
        "load_average_before": [round(v, 2) for v in load_before],
        "load_average_after": [round(v, 2) for v in os.getloadavg()],
        "shots": len(shots),
        "defect_types": generator.defect_types,
        "normal_training_images": len(normals),
        "fit_seconds": round(fit_seconds, 1),
        "training_steps": report.steps if report else None,
        "final_loss": round(report.last_loss, 4) if report else None,
        "peak_rss_mib_after_fit": round(rss_after_fit, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "denoiser_parameters": sum(p.numel() for p in generator.denoiser.parameters()),
        "patch_size": generator.patch_size,
        "image_channels": generator.denoiser.config.image_channels,
        "ddim_steps": generator.num_inference_steps,
        "guidance_scale": generator.guidance_scale,
        "calibrated_guidance": generator.calibrated_guidance,
        "matched_guidance": generator.matched_guidance,
        "defect_strength": {name: round(value, 4) for name, value in generator.defect_strength.items()},
        "guidance_calibration": {
            name: {str(scale): round(mean, 4) for scale, mean in means.items()}
            for name, means in generator.guidance_calibration.items()
        },
        "object_category": generator.object_category,
        "grid_mode": generator.mode,
        "generation": speed,
        "grid_quality": grid_stats,
        "background_pixels_changed_outside_mask": violations,
        "config": generator.get_config(),
    }
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    print(json.dumps({k: v for k, v in results.items() if k != "config"}, indent=2))


if __name__ == "__main__":
    main()

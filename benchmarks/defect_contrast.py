"""How visible are generated defects compared with real ones? Contrast against a 7-px band around the mask.

For a saved generator (e.g. one the downstream benchmark fitted, under ``runs/benchmark``), this
generates every defect type on ``--images`` evenly spaced train normals and prints, per type, the mean
``defect_contrast`` of the generated defects next to that of the held-out real defects of the few-shot
split (never the shots). Writes the numbers as JSON when ``--out`` is given.

    python benchmarks/defect_contrast.py runs/benchmark/quick/generators/diffusion-seed0
"""

from __future__ import annotations

import argparse
import json
import logging
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import torch  # noqa: E402

from anomaly_synth_aug.data.fewshot import few_shot_split, load_defect_records  # noqa: E402
from anomaly_synth_aug.data.io import load_image  # noqa: E402
from anomaly_synth_aug.evaluation.generation_quality import contrast_by_type  # noqa: E402
from anomaly_synth_aug.generators.base import AnomalyGenerator  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "magnetic_tile"


def main(argv: list[str] | None = None) -> dict[str, dict[str, float]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("generator_dir", type=Path, help="a folder written by AnomalyGenerator.save()")
    parser.add_argument("--data", type=Path, default=DEFAULT_DATA, help="MVTec-layout category folder")
    parser.add_argument("--images", type=int, default=10, help="train normals to generate each type on")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="JSON file for the numbers")
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    logging.basicConfig(level=logging.WARNING)

    split = few_shot_split(args.data)
    real = load_defect_records(split.eval_anomalies, on_empty_mask="skip")
    step = max(1, len(split.train_normals) // args.images)
    normals = [load_image(path) for path in split.train_normals[::step][: args.images]]
    generator = AnomalyGenerator.load(args.generator_dir)
    images, masks, types = [], [], []
    for defect_type in generator.defect_types:
        batch = generator.generate(
            normals, defect_types=[defect_type] * len(normals), generator=torch.Generator().manual_seed(args.seed)
        )
        images += batch.images
        masks += batch.masks
        types += batch.defect_types
    result = {
        "generated": contrast_by_type(images, masks, types),
        "real": contrast_by_type([s.image for s in real], [s.mask for s in real], [s.defect_type for s in real]),
    }
    for name in sorted(set(result["generated"]) | set(result["real"])):
        generated, real_value = result["generated"].get(name), result["real"].get(name)
        print(f"{name:>12}: generated {generated if generated is None else round(generated, 3)}, "
              f"real {real_value if real_value is None else round(real_value, 3)}")  # fmt: skip
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"generator_dir": str(args.generator_dir), **result}, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()

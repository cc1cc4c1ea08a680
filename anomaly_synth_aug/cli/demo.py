"""``anomaly-synth-aug demo``: the whole workflow on one category, offline, in minutes."""

from __future__ import annotations

import logging
from dataclasses import replace
from pathlib import Path
from typing import Literal


def demo(
    data: Path | None = None,
    output: Path = Path("results/demo"),
    texture: Literal["brick", "grass", "gravel"] = "brick",
    quick: bool = False,
    generator_steps: int | None = None,
    classic_baseline: str | None = "real_paste",
    seed: int = 0,
) -> int:
    """Fine-tune the diffusion generator on a few defects, generate, train and test a detector, print the table.

    Without --data it builds a DEMO dataset from a texture that scikit-image ships (drawn
    defects; nothing is downloaded). Every budget is a number of steps (its time on 2 CPU cores is in
    the README); a second run on the same data reuses the fine-tuned generator and the sample cache.

    Args:
        data: MVTec-layout category folder (train/good, test/<type>, ground_truth/<type>); default: the DEMO dataset.
        output: folder for the dataset, generator, cache, detector checkpoints, sample grid and results.json.
        texture: scikit-image texture of the DEMO dataset.
        quick: tiny sizes and a few steps (a smoke test of the whole pipeline, numbers meaningless).
        generator_steps: training steps of the generator's fine-tuning (default: the demo's step budget).
        classic_baseline: benchmark name of a classic generator to compare with (perlin, cutpaste, poisson,
            real_paste), or null to skip it.
        seed: fixes the dataset, the split, the generated defects and the detectors' initialisation.
    """
    from anomaly_synth_aug.demo.pipeline import DemoSettings, run_demo  # heavy: diffusers, anomalib engine

    # device banners, tips and seed messages of every Trainer (Lightning logs under both package names)
    for chatty in ("lightning", "lightning.pytorch", "lightning.fabric", "lightning_fabric", "pytorch_lightning"):
        logging.getLogger(chatty).setLevel(logging.WARNING)

    settings = DemoSettings.quick() if quick else DemoSettings()
    settings = replace(settings, classic_baseline=classic_baseline)
    if generator_steps is not None:
        settings = replace(settings, diffusion={**settings.diffusion, "max_steps": generator_steps})
    result = run_demo(output, data=data, texture=texture, settings=settings, seed=seed)
    print(f"demo finished in {result.total_seconds:.0f} s; results: {result.results_path}; samples: {result.grid_path}")
    return 0

"""Generation quality of one fitted generator: realism (C2ST), diversity, background fidelity, contrast.

Real defects are the *held-out* anomalies of the few-shot split, never the shots. The same samples
feed the benchmark's sample grids.

Example:
    >>> record, samples = measure_generation_quality(root, "diffusion", seed=0, preset="full",
    ...                                              fit_store="runs/generators")
    >>> record["c2st_auroc"]
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
from anomaly_synth_aug.data.fewshot import few_shot_split, load_defect_records
from anomaly_synth_aug.data.io import load_image
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.evaluation.downstream.datamodules import fit_generator, synthetic_datamodule
from anomaly_synth_aug.evaluation.downstream.generator_table import build_generator
from anomaly_synth_aug.evaluation.downstream.presets import Preset, resolve_preset
from anomaly_synth_aug.evaluation.downstream.runner import fit_choices, training_steps
from anomaly_synth_aug.evaluation.generation_quality import (
    background_psnr,
    classifier_two_sample_test,
    contrast_by_type,
    defect_crops,
    diversity_by_type,
)
from anomaly_synth_aug.generators.base import GeneratedBatch
from anomaly_synth_aug.generators.fit_store import FitStore
from anomaly_synth_aug.utils.random import make_generator


@dataclass
class GeneratedSamples:
    """Generated anomalies with the normals they were made from (for quality measures and grids)."""

    sources: list[torch.Tensor]
    batch: GeneratedBatch
    seconds: float


def generate_samples(datamodule: SyntheticAnomalyDataModule, count: int, seed: int) -> GeneratedSamples:
    """Put defects on ``count`` seeded train normals at native resolution, timed."""
    paths = datamodule.train_normal_paths()
    order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(seed))[:count]
    sources = [load_image(paths[i]) for i in order.tolist()]
    start = time.perf_counter()
    batch = datamodule.generator.generate(sources, generator=make_generator(seed))
    return GeneratedSamples(sources=sources, batch=batch, seconds=time.perf_counter() - start)


def measure_generation_quality(
    data_root: str | Path,
    generator_name: str,
    seed: int,
    preset: str | Preset = "quick",
    *,
    fit_store: FitStore | str | Path | None = None,
) -> tuple[dict[str, Any], GeneratedSamples]:
    """Realism (C2ST AUROC), diversity and background fidelity of one fitted generator.

    Real defects are the *held-out* anomalies of the few-shot split (never the shots). Returns a
    JSON-able record and the generated samples (for sample grids).
    """
    preset = resolve_preset(preset)
    generator = build_generator(generator_name, preset, Path(data_root).name)
    if generator is None:
        raise InvalidInputError("generator 'none' generates nothing to measure", fix="pick a real generator")
    # no injection: only the fitted generator and the split are needed, not a training set (or pool)
    datamodule = synthetic_datamodule(data_root, generator, preset, seed, inject=False)
    store = fit_store if isinstance(fit_store, FitStore) or fit_store is None else FitStore(fit_store)
    fit_seconds, loaded = fit_generator(datamodule, store)
    samples = generate_samples(datamodule, preset.quality_samples, seed)
    generated = samples.batch
    real = load_defect_records(few_shot_split(data_root, preset.shot_fraction).eval_anomalies, on_empty_mask="skip")
    shots = datamodule.load_shots()  # what a learned generator matches; the held-out defects may differ

    real_images, real_masks = [s.image for s in real], [s.mask for s in real]
    two_sample = classifier_two_sample_test(
        defect_crops(real_images, real_masks),
        defect_crops(generated.images, generated.masks),
        epochs=preset.c2st_epochs,
        seed=seed,
    )
    real_spread = diversity_by_type(
        defect_crops(real_images, real_masks, context=0.0, zero_outside=True), [s.defect_type for s in real]
    )
    generated_spread = diversity_by_type(
        defect_crops(generated.images, generated.masks, context=0.0, zero_outside=True), generated.defect_types
    )
    psnr = [
        background_psnr(source, image, mask)
        for source, image, mask in zip(samples.sources, generated.images, generated.masks, strict=True)
    ]
    mean_real = _mean(real_spread.values())
    mean_generated = _mean(generated_spread.values())
    record = {
        "generator": generator_name,
        "seed": seed,
        "preset": preset.name,
        "c2st_auroc": two_sample.auroc,
        "c2st_test_size": two_sample.test_size,
        "diversity_generated": mean_generated,
        "diversity_real": mean_real,
        "diversity_ratio": mean_generated / mean_real if mean_real else None,
        "diversity_by_type": {"generated": generated_spread, "real": real_spread},
        "contrast_by_type": {
            "generated": contrast_by_type(generated.images, generated.masks, generated.defect_types),
            "real": contrast_by_type(real_images, real_masks, [s.defect_type for s in real]),
            "shots": contrast_by_type(
                [s.image for s in shots], [s.mask for s in shots], [s.defect_type for s in shots]
            ),
        },
        "background_psnr_min_db": min(psnr),
        "background_bit_exact_share": sum(p == float("inf") for p in psnr) / len(psnr),
        "images_per_s": len(generated) / samples.seconds if samples.seconds > 0 else None,
        "generator_fit_s": fit_seconds,
        "generator_loaded": loaded,
        "generator_training_steps": training_steps(datamodule.generator),
        "generator_fit_choices": fit_choices(datamodule.generator),
        "generator_config": generator.get_config(),
    }
    return record, samples


def _mean(values: Any) -> float | None:
    values = [v for v in values if v == v]  # drop NaN
    return sum(values) / len(values) if values else None

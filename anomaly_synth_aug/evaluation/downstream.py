"""One downstream experiment: does training on a generator's defects help a detector find real ones?

``run_experiment`` builds the whole pipeline the way a user would, from anomalib parts:

1. ``Folder`` finds the files of an MVTec-layout category (``.jpg``/``.png``);
2. ``SyntheticAnomalyDataModule`` applies the few-shot protocol: the first third of each defect
   type (by file name) are the generator's *shots* and leave evaluation; a share of the
   train normals is held back and, with fixed synthetic defects, forms the validation set;
3. the generator is fitted on train normals and the shots (timed; optionally saved and reused);
4. the detector trains on normals plus generated defects (supervised detectors through the
   datamodule, DRÆM through its in-model augmenter, PaDiM on normals only);
5. ``ModelCheckpoint`` keeps the epoch with the best *validation* pixel AP and the
   ``PostProcessor`` picks its thresholds on the same synthetic validation set: test data are
   never used for any choice;
6. ``Engine.test`` scores the held-out real anomalies plus all test normals.

``"none"`` means no synthetic anomalies at all: training on normals only, no validation set,
the last checkpoint, and no thresholds (threshold metrics are reported as None).
"""

from __future__ import annotations

import importlib
import logging
import re
import tempfile
import time
from collections.abc import Callable
from dataclasses import MISSING, asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

import torch
from anomalib.callbacks import ModelCheckpoint
from anomalib.data import Folder
from anomalib.engine import Engine
from anomalib.models import AnomalibModule, Padim
from lightning.pytorch import seed_everything

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
from anomaly_synth_aug.data.fewshot import few_shot_split, load_defect_records
from anomaly_synth_aug.data.io import load_image
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.evaluation.generation_quality import (
    background_psnr,
    classifier_two_sample_test,
    contrast_by_type,
    defect_crops,
    diversity_by_type,
)
from anomaly_synth_aug.evaluation.metrics import (
    CHECKPOINT_MONITOR,
    LABELS_AT_THRESHOLD,
    THRESHOLD_METRICS,
    benchmark_evaluator,
    metric_value,
)
from anomaly_synth_aug.generators.base import CONFIG_FILE, AnomalyGenerator, GeneratedBatch
from anomaly_synth_aug.models.post_processing import RawScorePostProcessor
from anomaly_synth_aug.utils.random import make_generator

logger = logging.getLogger(__name__)

IMAGE_EXTENSIONS: tuple[str, ...] = (".jpg", ".png")
NORMAL_DIR = "good"


# --------------------------------------------------------------------------------- presets
@dataclass(frozen=True)
class Preset:
    """Every knob of a benchmark run that is not the generator, the detector or the seed.

    Args:
        name: recorded with each result (results of different presets are never mixed).
        image_size: detector input side (a multiple of 32; >= 128 for SuperSimpleNet).
        max_epochs: training epochs (PaDiM always does one).
        limit_train_batches: batches per epoch (int) or share of the training set (float).
        train_batch_size: training batch size.
        eval_batch_size: validation and test batch size.
        num_workers: DataLoader workers (they run the online generator).
        train_mode: ``"online"`` (a fresh defect every draw) or ``"cached"`` (supervised detectors train
            from a pool of ``samples_per_type`` defects per type, generated once per generator and seed).
        samples_per_type: size of the cached pool per defect type (``train_mode="cached"``).
        anomaly_ratio: share of training normals given a synthetic defect (supervised detectors).
        val_split_ratio: share of train normals held back for the synthetic validation set.
        max_fit_normals: at most this many normals are given to ``generator.fit``.
        segmenter_width: ``DefectSegmenter`` base width.
        draem_width: ``GeneratorDraem`` base width. anomalib's 128 (97 M parameters) costs ~100x a
            segmenter step on CPU; 16 (1.5 M) costs about as much as the segmenter.
        backbone: timm backbone of SuperSimpleNet and PaDiM (randomly initialised: offline).
        diffusion: overrides for ``DiffusionAnomalyGenerator`` (training budget, steps).
        quality_samples: generated images for the generation-quality measures.
        c2st_epochs: training epochs of the two-sample-test classifier.
    """

    name: str
    image_size: int = 256
    max_epochs: int = 30
    limit_train_batches: int | float = 1.0
    train_batch_size: int = 16
    eval_batch_size: int = 32
    num_workers: int = 2
    train_mode: str = "online"
    samples_per_type: int = 100
    anomaly_ratio: float = 0.5
    val_split_ratio: float = 0.2
    max_fit_normals: int = 64
    segmenter_width: int = 16
    draem_width: int = 16
    backbone: str = "resnet18"
    diffusion: dict[str, Any] = field(default_factory=dict)
    quality_samples: int = 256
    c2st_epochs: int = 30


PRESETS: dict[str, Preset] = {
    # The whole matrix took about 10 h 45 min on 2 CPU cores (measured, benchmarks/README.md): 5x the quick
    # preset's training, the 9-minute diffusion fit, and cached pools so the diffusion generator runs once per seed.
    "full": Preset(
        name="full",
        image_size=128,
        max_epochs=10,
        limit_train_batches=24,
        num_workers=0,
        train_mode="cached",
        samples_per_type=100,
        val_split_ratio=0.15,
        diffusion={"max_minutes": 9.0},
        quality_samples=128,
        c2st_epochs=15,
    ),
    # ~1 min per segmenter run on 2 CPU cores; the diffusion generator gets a 3-minute fit budget.
    "quick": Preset(
        name="quick",
        image_size=128,
        max_epochs=4,
        limit_train_batches=12,
        train_batch_size=16,
        eval_batch_size=32,
        num_workers=0,  # on 2 shared cores, worker processes cost more than they overlap
        val_split_ratio=0.15,
        segmenter_width=8,
        diffusion={"max_minutes": 3.0, "num_inference_steps": 10},
        quality_samples=96,
        c2st_epochs=15,
    ),
    # seconds, for tests on tiny datasets
    "smoke": Preset(
        name="smoke",
        image_size=64,
        max_epochs=1,
        limit_train_batches=2,
        train_batch_size=4,
        eval_batch_size=8,
        num_workers=0,
        max_fit_normals=8,
        segmenter_width=2,
        diffusion={"max_steps": 2, "max_minutes": 0.2, "num_inference_steps": 2, "batch_size": 4},
        quality_samples=8,
        c2st_epochs=1,
    ),
}


def same_preset(stored: dict[str, Any], preset: str | Preset) -> bool:
    """Whether a stored ``preset_record`` describes ``preset``.

    A field missing from the stored record (it predates the field) counts as the field's default.
    """
    current = preset_record(preset)
    defaults = {
        f.name: f.default if f.default is not MISSING else f.default_factory()  # type: ignore[misc]
        for f in fields(Preset)
        if f.default is not MISSING or f.default_factory is not MISSING
    }
    return set(stored) <= set(current) and all(stored.get(k, defaults.get(k)) == v for k, v in current.items())


def resolve_preset(preset: str | Preset) -> Preset:
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise InvalidInputError(f"unknown preset {preset!r}", fix=f"use one of {sorted(PRESETS)}")
    return PRESETS[preset]


# ------------------------------------------------------------------------------ generators
def _diffusion(**overrides: Any) -> Callable[[Preset, str], AnomalyGenerator]:
    def build(preset: Preset, category: str) -> AnomalyGenerator:
        from anomaly_synth_aug.generators.diffusion import DiffusionAnomalyGenerator  # heavy import

        options = {"progress": False, **preset.diffusion, **overrides}  # product defaults otherwise
        return DiffusionAnomalyGenerator(category=category, **options)

    return build


def _classic(module: str, class_name: str) -> Callable[[Preset, str], AnomalyGenerator]:
    def build(preset: Preset, category: str) -> AnomalyGenerator:
        return getattr(importlib.import_module(module), class_name)()

    return build


#: Generator name -> factory(preset, category). "diffusion" has every mechanism on; each
#: ablation switches exactly one off, and ``diffusion_7_steps`` measures what fewer steps cost.
GENERATORS: dict[str, Callable[[Preset, str], AnomalyGenerator] | None] = {
    "none": None,
    "perlin": _classic("anomaly_synth_aug.generators.perlin", "PerlinGenerator"),
    "cutpaste": _classic("anomaly_synth_aug.generators.cutpaste", "CutPasteGenerator"),
    "poisson": _classic("anomaly_synth_aug.generators.poisson", "PoissonBlendGenerator"),
    "real_paste": _classic("anomaly_synth_aug.generators.real_paste", "RealShotPasteGenerator"),
    "diffusion": _diffusion(),
    "diffusion_no_disentangle": _diffusion(background_disentangle=False),
    "diffusion_no_inversion": _diffusion(mode="repaint"),
    "diffusion_no_filter": _diffusion(quality_filter=False),
    "diffusion_no_guidance": _diffusion(guidance_scale=1.0),
    "diffusion_7_steps": _diffusion(num_inference_steps=7),
}
#: Ablations that switch off a sampling option only: they reuse the main generator's fitted model
#: (``fit_name``), so each differs from it in exactly that switch, not also in a second training run.
SHARES_FIT_WITH: dict[str, str] = {
    "diffusion_no_inversion": "diffusion",
    "diffusion_no_filter": "diffusion",
    "diffusion_no_guidance": "diffusion",
    "diffusion_7_steps": "diffusion",
}
#: Ablation -> (the generator it is compared with, the mechanism it switches off): the ablation table.
ABLATIONS: dict[str, tuple[str, str]] = {
    "diffusion_no_disentangle": ("diffusion", "background-disentanglement loss (fitted without it)"),
    "diffusion_no_inversion": ("diffusion", "DDIM inversion of the target (RePaint-style sampling)"),
    "diffusion_no_filter": ("diffusion", "quality filter (first draw kept)"),
    "diffusion_no_guidance": ("diffusion", "normal-token guidance (scale 1)"),
    "diffusion_7_steps": ("diffusion", "3 of the 10 DDIM steps (7: 21 UNet passes per image, not 30)"),
}
DETECTORS: tuple[str, ...] = ("segmenter", "draem", "supersimplenet", "padim")
#: Detectors that learn from the datamodule's synthetic masks (the others get clean normals).
DATAMODULE_SUPERVISED: frozenset[str] = frozenset({"segmenter", "supersimplenet"})


def fit_name(generator_name: str) -> str:
    """Whose fitted model ``generator_name`` uses (itself unless it is a sampling-only ablation)."""
    return SHARES_FIT_WITH.get(generator_name, generator_name)


def build_generator(name: str, preset: str | Preset, category: str) -> AnomalyGenerator | None:
    """A fresh (unfitted) generator by benchmark name; None for ``"none"``."""
    if name not in GENERATORS:
        raise InvalidInputError(f"unknown generator {name!r}", fix=f"use one of {list(GENERATORS)}")
    factory = GENERATORS[name]
    return None if factory is None else factory(resolve_preset(preset), category)


# ------------------------------------------------------------------------------ data module
def folder_datamodule(data_root: str | Path, preset: Preset) -> Folder:
    """anomalib ``Folder`` over an MVTec-layout category: every ``test/<type>`` is a defect type."""
    root = Path(data_root)
    test_dir = root / "test"
    if not test_dir.is_dir() or not (root / "train" / NORMAL_DIR).is_dir():
        raise InvalidInputError(
            "not an MVTec-layout category folder (needs train/good and test/<type>)",
            path=root,
            fix="point --data at a folder with train/good, test/good, test/<defect>, ground_truth/<defect>",
        )
    defect_types = sorted(p.name for p in test_dir.iterdir() if p.is_dir() and p.name != NORMAL_DIR)
    return Folder(
        name=root.name,
        root=root,
        normal_dir=f"train/{NORMAL_DIR}",
        abnormal_dir=[f"test/{t}" for t in defect_types],
        normal_test_dir=f"test/{NORMAL_DIR}",
        mask_dir=[f"ground_truth/{t}" for t in defect_types],
        extensions=IMAGE_EXTENSIONS,
        val_split_mode="none",  # validation comes from held-back train normals, never from test
        train_batch_size=preset.train_batch_size,
        eval_batch_size=preset.eval_batch_size,
        num_workers=preset.num_workers,
    )


def synthetic_datamodule(
    data_root: str | Path,
    generator: AnomalyGenerator | None,
    preset: Preset,
    seed: int,
    *,
    inject: bool,
    cache_dir: str | Path | None = None,
) -> SyntheticAnomalyDataModule:
    """The wrapped datamodule; ``inject`` puts generated defects into the training batches.

    With ``preset.train_mode == "cached"`` injected defects come from a pool in ``cache_dir``.
    """
    injecting = inject and generator is not None
    cached = injecting and preset.train_mode == "cached"
    if cached and cache_dir is None:
        raise InvalidInputError(
            f"preset {preset.name!r} trains from a cached pool but no cache_dir was given",
            fix="pass cache_dir (run_experiment uses a temporary one when work_dir is None)",
        )
    return SyntheticAnomalyDataModule(
        folder_datamodule(data_root, preset),
        generator=generator,
        anomaly_ratio=preset.anomaly_ratio if injecting else 0.0,
        mode="cached" if cached else "online",
        cache_dir=cache_dir if cached else None,
        samples_per_type=preset.samples_per_type,
        val_split="synthetic" if generator is not None else "none",
        val_split_ratio=preset.val_split_ratio,
        max_fit_normals=preset.max_fit_normals,
        seed=seed,
    )


def fit_generator(
    datamodule: SyntheticAnomalyDataModule, generator_dir: str | Path | None = None
) -> tuple[float, bool]:
    """Fit the datamodule's generator (or load it from ``generator_dir``); returns (seconds, loaded).

    The fit depends only on data, seed and preset, so a fitted generator saved in
    ``generator_dir`` is reused by every detector of the same generator and seed, with this
    run's sampling options. One fitted with other training settings is fitted again.
    """
    generator = datamodule.generator
    saved = Path(generator_dir) if generator_dir is not None else None
    if saved is not None and generator.requires_fit:
        reused = AnomalyGenerator.load_reusable(saved, generator)
        if reused is not None:
            datamodule.generator = reused
            datamodule.setup()
            return 0.0, True
        if (saved / CONFIG_FILE).is_file():
            logger.warning("%s holds a generator fitted with other settings: fitting again", saved)
    start = time.perf_counter()
    datamodule.setup()
    datamodule.prepare_generator()
    seconds = time.perf_counter() - start
    if saved is not None and generator.requires_fit:
        generator.save(saved)
    return seconds, False


# -------------------------------------------------------------------------------- detectors
def build_detector(
    name: str, preset: Preset, generator: AnomalyGenerator | None, datamodule: SyntheticAnomalyDataModule
) -> AnomalibModule:
    """The detector with the benchmark's evaluator and a post-processor that does not normalise.

    Normalisation is off for every detector: anomalib's min-max normalisation clamps test scores
    outside the validation range, and the ties it creates would distort AUROC. ``RawScorePostProcessor``
    then labels raw scores against the validation thresholds (anomalib's would use 0.5).
    """
    size = (preset.image_size, preset.image_size)
    components: dict[str, Any] = {
        "post_processor": RawScorePostProcessor(),
        "evaluator": benchmark_evaluator(),
        "visualizer": False,
    }
    if name == "segmenter":
        from anomaly_synth_aug.models.segmenter import DefectSegmenter

        return DefectSegmenter(
            base_width=preset.segmenter_width, pre_processor=DefectSegmenter.configure_pre_processor(size), **components
        )
    if name == "draem":
        from anomaly_synth_aug.models.draem import GeneratorDraem

        # "none": the augmenter never fires, so DRÆM sees no anomalies at all
        return GeneratorDraem(
            generator if generator is not None else datamodule.generator,
            probability=0.5 if generator is not None else 0.0,
            base_width=preset.draem_width,
            pre_processor=GeneratorDraem.configure_pre_processor(size),
            **components,
        )
    if name == "supersimplenet":
        from anomaly_synth_aug.models.supersimplenet import SupervisedSupersimplenet

        if preset.image_size < 128:
            raise InvalidInputError(
                f"SuperSimpleNet needs image_size >= 128, the preset has {preset.image_size}",
                fix="use the quick or full preset for supersimplenet",
            )
        return SupervisedSupersimplenet(
            backbone=preset.backbone,
            pre_trained=False,
            pre_processor=SupervisedSupersimplenet.configure_pre_processor(size),
            **components,
        )
    if name == "padim":
        return Padim(
            backbone=preset.backbone,
            pre_trained=False,
            pre_processor=Padim.configure_pre_processor(size),
            **components,
        )
    raise InvalidInputError(f"unknown detector {name!r}", fix=f"use one of {list(DETECTORS)}")


# ------------------------------------------------------------------------------- experiment
def run_experiment(
    data_root: str | Path,
    generator_name: str,
    detector_name: str,
    seed: int,
    preset: str | Preset = "quick",
    *,
    generator_dir: str | Path | None = None,
    work_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> dict[str, Any]:
    """Train ``detector_name`` on ``generator_name``'s defects and test it on held-out real ones.

    Args:
        data_root: MVTec-layout category folder (train/good, test/<type>, ground_truth/<type>).
        generator_name: a key of ``GENERATORS``.
        detector_name: one of ``DETECTORS``.
        seed: fixes the validation hold-out, the generated defects and the initialisation.
        preset: a ``PRESETS`` name or a ``Preset``.
        generator_dir: where the fitted generator is saved and reused (None: fit every time).
        work_dir: checkpoints go here (None: a temporary folder, deleted afterwards).
        cache_dir: the cached pool of a ``train_mode="cached"`` preset, reused by later runs of the
            same generator and seed (None: a temporary one).

    Returns:
        A JSON-able record: names, seed, preset, ``metrics`` (test), ``timings`` (seconds),
        ``data`` (split sizes) and the thresholds picked on validation.
    """
    preset = resolve_preset(preset)
    if detector_name not in DETECTORS:
        raise InvalidInputError(f"unknown detector {detector_name!r}", fix=f"use one of {list(DETECTORS)}")
    seed_everything(seed, workers=True)
    generator = build_generator(generator_name, preset, Path(data_root).name)
    with tempfile.TemporaryDirectory(prefix="downstream_") as scratch:
        root = Path(work_dir) if work_dir is not None else Path(scratch)
        datamodule = synthetic_datamodule(
            data_root,
            generator,
            preset,
            seed,
            inject=detector_name in DATAMODULE_SUPERVISED,
            cache_dir=cache_dir if cache_dir is not None else root / "cache",
        )
        start = time.perf_counter()
        fit_seconds, generator_loaded = fit_generator(datamodule, generator_dir) if generator else (0.0, False)
        prepare_seconds = time.perf_counter() - start  # the fit, or the load, plus any cached pool
        generator = datamodule.generator if generator else None  # the loaded one, when it was reused
        model = build_detector(detector_name, preset, generator, datamodule)
        has_validation = generator is not None
        checkpoint = ModelCheckpoint(
            dirpath=root / "checkpoints",
            filename="best-epoch{epoch}",
            auto_insert_metric_name=False,
            monitor=CHECKPOINT_MONITOR if has_validation else None,
            mode="max",
        )
        engine = Engine(
            callbacks=[checkpoint],
            max_epochs=preset.max_epochs,
            limit_train_batches=preset.limit_train_batches,
            accelerator="cpu",
            devices=1,
            default_root_dir=root,
            logger=False,
            enable_progress_bar=False,
            enable_model_summary=False,
        )
        start = time.perf_counter()
        engine.fit(model, datamodule=datamodule)
        train_seconds = time.perf_counter() - start
        best_path = checkpoint.best_model_path or None
        best_epoch = int(re.findall(r"\d+", Path(best_path).stem)[-1]) if best_path else None
        start = time.perf_counter()
        (test_results,) = engine.test(model, datamodule=datamodule, ckpt_path=best_path, verbose=False)
        test_seconds = time.perf_counter() - start

    thresholds = {
        "image": metric_value(model.post_processor.image_threshold),
        "pixel": metric_value(model.post_processor.pixel_threshold),
    }
    metrics = {name: metric_value(value) for name, value in sorted(test_results.items())}
    if thresholds["image"] is None:
        for name in THRESHOLD_METRICS:  # no validation threshold: the labels mean nothing
            metrics[name] = None
    return {
        "generator": generator_name,
        "detector": detector_name,
        "seed": seed,
        "preset": preset.name,
        "generator_config": generator.get_config() if generator is not None else None,
        "generator_training_steps": _training_steps(generator) if generator is not None else None,
        "detector_parameters": sum(p.numel() for p in model.parameters()),
        "metrics": metrics,
        "thresholds": thresholds,
        LABELS_AT_THRESHOLD: True,
        "best_epoch": best_epoch,
        "timings": {
            "generator_fit_s": fit_seconds,
            "generator_loaded": generator_loaded,
            "prepare_s": prepare_seconds,
            "train_s": train_seconds,
            "test_s": test_seconds,
        },
        "data": _split_sizes(datamodule),
    }


def _split_sizes(datamodule: SyntheticAnomalyDataModule) -> dict[str, int]:
    test_labels = datamodule.test_data.samples.label_index
    return {
        "shots": len(datamodule.shot_records),
        "train_normals": len(datamodule.train_data),
        "val_images": len(datamodule.val_data) if getattr(datamodule, "val_data", None) is not None else 0,
        "test_anomalies": int((test_labels == 1).sum()),
        "test_normals": int((test_labels == 0).sum()),
    }


# ------------------------------------------------------------------------- generation quality
@dataclass
class GeneratedSamples:
    """Generated anomalies with the normals they were made from (for quality measures and grids)."""

    sources: list[torch.Tensor]
    batch: GeneratedBatch
    seconds: float


def generate_samples(
    datamodule: SyntheticAnomalyDataModule, count: int, seed: int
) -> GeneratedSamples:
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
    generator_dir: str | Path | None = None,
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
    fit_seconds, loaded = fit_generator(datamodule, generator_dir)
    samples = generate_samples(datamodule, preset.quality_samples, seed)
    generated = samples.batch
    real = load_defect_records(few_shot_split(data_root).eval_anomalies, on_empty_mask="skip")

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
        },
        "background_psnr_min_db": min(psnr),
        "background_bit_exact_share": sum(p == float("inf") for p in psnr) / len(psnr),
        "images_per_s": len(generated) / samples.seconds if samples.seconds > 0 else None,
        "generator_fit_s": fit_seconds,
        "generator_loaded": loaded,
        "generator_training_steps": _training_steps(datamodule.generator),
        "generator_config": generator.get_config(),
    }
    return record, samples


def _training_steps(generator: AnomalyGenerator) -> int | None:
    """Optimiser steps of a learned generator's fit, also when loaded from disk (None: classic generators)."""
    report = getattr(generator, "training_report", None)
    return getattr(report, "steps", None)


def _mean(values: Any) -> float | None:
    values = [v for v in values if v == v]  # drop NaN
    return sum(values) / len(values) if values else None


def preset_record(preset: str | Preset) -> dict[str, Any]:
    """The preset as a JSON-able dict (stored with the results)."""
    return asdict(resolve_preset(preset))

"""One downstream experiment: does training on a source's defects help a detector find real ones?

``run_experiment`` builds the whole pipeline the way a user would, from anomalib parts:

1. ``Folder`` finds the files of an MVTec-layout category (``.jpg``/``.png``);
2. ``SyntheticAnomalyDataModule`` applies the few-shot protocol: the first ``preset.shot_fraction``
   of each defect type (a third, by file name) are the shots and leave evaluation; a share of the train normals is held
   back and, with fixed synthetic defects, forms the validation set;
3. the generator is fitted on train normals and the shots (optionally saved and reused);
4. the detector trains for the preset's steps: supervised detectors on defect-centred crops at
   native resolution with generated defects (or the shots themselves, ``shots_only``), DRÆM
   through its augmenter, PaDiM and PatchCore on normals only;
5. ``ModelCheckpoint`` keeps the checkpoint with the best *validation* pixel AP and the
   ``PostProcessor`` picks its thresholds on the same synthetic validation set: test data are
   never used for any choice;
6. ``Engine.test`` scores the held-out real anomalies plus all test normals, on whole images,
   against native-resolution masks.

``"none"`` means no defects at all: training on normals only, no validation set, the last
checkpoint, and no thresholds (threshold metrics are reported as None).

Example:
    >>> record = run_experiment("../shared/data/magnetic_tile", "perlin", "segmenter", seed=0, preset="full")
    >>> record["metrics"]["pixel_AUPR"]
"""

from __future__ import annotations

import dataclasses
import re
import tempfile
import time
from pathlib import Path
from typing import Any

import torch
from anomalib.callbacks import ModelCheckpoint
from anomalib.engine import Engine
from lightning.pytorch import Callback, LightningModule, Trainer, seed_everything

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
from anomaly_synth_aug.evaluation.downstream.datamodules import fit_generator, native_side, synthetic_datamodule
from anomaly_synth_aug.evaluation.downstream.detectors import detector_spec
from anomaly_synth_aug.evaluation.downstream.generator_table import build_generator, training_options
from anomaly_synth_aug.evaluation.downstream.memory_store import NormalMemoryStore
from anomaly_synth_aug.evaluation.downstream.presets import Preset, resolve_preset
from anomaly_synth_aug.evaluation.downstream.score_fractions import ScoreFractionScores
from anomaly_synth_aug.evaluation.metrics import (
    CHECKPOINT_MONITOR,
    LABELS_AT_THRESHOLD,
    THRESHOLD_METRICS,
    image_auroc,
    metric_value,
)
from anomaly_synth_aug.generators.base import AnomalyGenerator
from anomaly_synth_aug.generators.fit_store import FitStore


class ValidationHistory(Callback):
    """Records the validation metrics at every validation: the run's learning curve.

    ``on_validation_end`` runs after every callback's ``on_validation_epoch_end``, so the
    evaluator's metrics are logged by then.
    """

    def __init__(self) -> None:
        self.history: list[dict[str, float | int | None]] = []

    def on_validation_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        del pl_module  # unused
        if trainer.sanity_checking:
            return
        logged = {
            name: metric_value(value) for name, value in trainer.callback_metrics.items() if name.startswith("val_")
        }
        self.history.append({"step": trainer.global_step, **logged})


def auroc_by_type(scores: list[tuple[str, int, float]]) -> dict[str, float]:
    """Image AUROC of each defect type's images against the normal ones, from ``(type, label, score)`` rows.

    Types with no images are left out.
    """
    normals = torch.tensor([s for _, label, s in scores if label == 0])
    result: dict[str, float] = {}
    for name in sorted({t for t, label, _ in scores if label == 1}):
        anomalous = torch.tensor([s for t, label, s in scores if label == 1 and t == name])
        if len(normals) and len(anomalous):
            values = torch.cat([anomalous, normals])
            labels = torch.cat([torch.ones(len(anomalous)), torch.zeros(len(normals))]).long()
            result[name] = image_auroc(values, labels)
    return result


def overall_auroc(scores: list[tuple[str, int, float]]) -> float | None:
    """Image AUROC of all ``(type, label, score)`` rows (None without both labels)."""
    labels = torch.tensor([label for _, label, _ in scores]).long()
    if labels.numel() == 0 or labels.min() == labels.max():
        return None
    return image_auroc(torch.tensor([s for _, _, s in scores]), labels)


class PerTypeImageScores(Callback):
    """Collects each test image's score with its defect type (its folder): which types a detector finds.

    ``per_type_auroc`` gives, per defect type, the image AUROC of that type's images against the
    test normals, so a table can show that a detector finds breaks but not uneven surfaces.
    """

    def __init__(self) -> None:
        self.scores: list[tuple[str, int, float]] = []
        self.images: list[str] = []

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        del trainer, pl_module, batch, batch_idx, dataloader_idx  # unused
        for path, label, score in zip(outputs.image_path, outputs.gt_label, outputs.pred_score, strict=True):
            self.scores.append((Path(path).parent.name, int(label), float(score)))
            self.images.append(Path(path).name)

    def per_type_auroc(self) -> dict[str, float]:
        """Image AUROC of each defect type against the normal test images (types with no images are left out)."""
        return auroc_by_type(self.scores)

    def image_scores(self, parts: dict[str, list[float]] | None = None) -> dict[str, list[Any]]:
        """Every test image's score, as aligned lists (``image``, ``type``, ``label``, ``score``, and ``parts``).

        Kept in the record so that a question asked after the run (which normal images a detector
        flags, how two detectors' verdicts relate) is answered from the run, not by training again.
        """
        record: dict[str, list[Any]] = {
            "image": list(self.images),
            "type": [kind for kind, _, _ in self.scores],
            "label": [label for _, label, _ in self.scores],
            "score": [round(score, 6) for _, _, score in self.scores],
        }
        for name, values in sorted((parts or {}).items()):
            record[f"score_{name}"] = [round(value, 6) for value in values]
        return record


class PriorComponentScores(Callback):
    """Each test image's parts of a ``NormalPrior`` image score: which detector drives the fused verdict.

    The fused score is the sum of the segmenter's and the normal memory's standard scores. Each
    part's own image AUROC (overall and per defect type) shows whether the sum does better than
    either alone, or just follows one of them. Models without a prior record nothing.
    """

    def __init__(self) -> None:
        self.scores: dict[str, list[tuple[str, int, float]]] = {}

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        del trainer, batch, batch_idx, dataloader_idx  # unused
        prior = getattr(getattr(pl_module, "model", None), "prior", None)
        components = getattr(prior, "last_components", None)
        if not components:
            return
        types = [Path(path).parent.name for path in outputs.image_path]
        for name, values in components.items():
            rows = self.scores.setdefault(name, [])
            for kind, label, value in zip(types, outputs.gt_label, values.tolist(), strict=True):
                rows.append((kind, int(label), float(value)))

    def values(self) -> dict[str, list[float]]:
        """Each part's score per test image, in test order."""
        return {name: [value for _, _, value in rows] for name, rows in self.scores.items()}

    def component_auroc(self) -> dict[str, dict[str, Any]] | None:
        """``{part: {"image_AUROC": x, "image_AUROC_by_type": {...}}}``; None when no prior scored the test set."""
        if not self.scores:
            return None
        return {
            name: {"image_AUROC": overall_auroc(rows), "image_AUROC_by_type": auroc_by_type(rows)}
            for name, rows in sorted(self.scores.items())
        }


def checkpoint_step(path: str | Path) -> int:
    """The step in a ``best-step{step}`` checkpoint's name, also when Lightning added a ``-v1`` to a clash.

    >>> checkpoint_step("ckpts/best-step600-v1.ckpt")
    600
    """
    match = re.search(r"step(\d+)", Path(path).stem)
    if match is None:
        raise ValueError(f"{path}: not a best-step<N> checkpoint")
    return int(match.group(1))


RESEEDED_AFTER_PREPARATION = "rng_reseeded_after_fit"
"""Record flag: the detector's random draws follow the seed alone, not whether its fit and pool were made."""


def run_experiment(
    data_root: str | Path,
    generator_name: str,
    detector_name: str,
    seed: int,
    preset: str | Preset = "quick",
    *,
    fit_store: FitStore | str | Path | None = None,
    work_dir: str | Path | None = None,
    cache_dir: str | Path | None = None,
    memory_store: NormalMemoryStore | str | Path | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """Train ``detector_name`` on ``generator_name``'s defects and test it on held-out real ones.

    Args:
        data_root: MVTec-layout category folder (train/good, test/<type>, ground_truth/<type>).
        generator_name: a key of ``GENERATORS``.
        detector_name: a key of ``DETECTORS``.
        seed: fixes the validation hold-out, the generated defects, the crops and the initialisation.
        preset: a ``PRESETS`` name or a ``Preset``.
        fit_store: where fitted generators are kept and reused (``FitStore`` or its folder; None: fit every time).
        work_dir: checkpoints go here (None: a temporary folder, deleted afterwards).
        cache_dir: the cached pool of a ``train_mode="cached"`` preset, reused by later runs of the
            same generator and seed, and by its ``_with_shots`` row (None: a temporary one).
        memory_store: where a segmenter's normal memory is kept and reused by later runs on the same
            normals and seed (``NormalMemoryStore`` or its folder; None: built every time).
        progress: show Lightning's progress bars (the demo does; the benchmark's logs do not want them).

    Returns:
        A JSON-able record: names, seed, preset, ``metrics`` (test), ``timings`` (seconds),
        ``steps`` (optimiser steps of the detector and of the generator's fit), ``data`` (split
        sizes) and the thresholds picked on validation.
    """
    preset = resolve_preset(preset)
    spec = detector_spec(detector_name)
    # What the detector is built with: a native-size one-class detector sees the category's own scale.
    model_preset = dataclasses.replace(preset, image_size=native_side(data_root)) if spec.native_size else preset
    seed_everything(seed, workers=True)
    generator = build_generator(generator_name, preset, Path(data_root).name)
    with tempfile.TemporaryDirectory(prefix="downstream_") as scratch:
        root = Path(work_dir) if work_dir is not None else Path(scratch)
        datamodule = synthetic_datamodule(
            data_root,
            generator,
            preset,
            seed,
            inject=spec.supervised,
            cache_dir=cache_dir if cache_dir is not None else root / "cache",
            **training_options(generator_name, preset),
            train_augmentations=spec.train_augmentations(model_preset),
        )
        start = time.perf_counter()
        store = fit_store if isinstance(fit_store, FitStore) or fit_store is None else FitStore(fit_store)
        fit_seconds, generator_loaded = fit_generator(datamodule, store) if generator else (0.0, False)
        prepare_seconds = time.perf_counter() - start  # the fit, or the load, plus any cached pool
        generator = datamodule.generator if generator else None  # the loaded one, when it was reused
        # Fitting and pool-making draw from the global RNG and loading them does not: seed again, so
        # the detector's initialisation, batches and crops are the same whether they were made or reused.
        seed_everything(seed, workers=True)
        model = spec.build(model_preset, generator)
        checkpoint = ModelCheckpoint(
            dirpath=root / "checkpoints",
            filename="best-step{step}",
            auto_insert_metric_name=False,
            monitor=CHECKPOINT_MONITOR if generator is not None else None,
            mode="max",
        )
        history = ValidationHistory()
        per_type = PerTypeImageScores()
        prior_parts = PriorComponentScores()
        fractions = ScoreFractionScores()
        memories = NormalMemoryStore(memory_store) if isinstance(memory_store, str | Path) else memory_store
        engine = Engine(
            callbacks=[history, per_type, prior_parts, fractions, checkpoint, *([memories] if memories else [])],
            accelerator="cpu",
            devices=1,
            default_root_dir=root,
            logger=False,
            enable_progress_bar=progress,
            enable_model_summary=False,
            **spec.engine_arguments(preset),
        )
        start = time.perf_counter()
        engine.fit(model, datamodule=datamodule)
        train_seconds = time.perf_counter() - start
        detector_steps = engine.trainer.global_step
        best_path = checkpoint.best_model_path or None
        best_step = checkpoint_step(best_path) if best_path else None
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
        "generator_training_steps": training_steps(generator) if generator is not None else None,
        "generator_fit_choices": fit_choices(generator) if generator is not None else None,
        "training_options": training_options(generator_name, preset),  # the shots' part in training, if any
        "detector_steps": detector_steps,
        "detector_parameters": sum(p.numel() for p in model.parameters()),
        "detector_hparams": plain_hparams(model),
        "detector_image_size": None if spec.native_crops else model_preset.image_size,
        "metrics": metrics,
        "image_AUROC_by_type": per_type.per_type_auroc(),
        "prior_components": prior_parts.component_auroc(),
        "image_AUROC_by_score_fraction": fractions.record(),
        "test_image_scores": per_type.image_scores(prior_parts.values()),
        "thresholds": thresholds,
        LABELS_AT_THRESHOLD: True,
        RESEEDED_AFTER_PREPARATION: True,
        "best_step": best_step,
        "validation_history": history.history,
        "timings": {
            "generator_fit_s": fit_seconds,
            "generator_loaded": generator_loaded,
            "normal_memory_loaded": memories.loaded if memories is not None else False,
            "prepare_s": prepare_seconds,
            "train_s": train_seconds,
            "test_s": test_seconds,
        },
        "data": split_sizes(datamodule),
    }


def plain_hparams(model: LightningModule) -> dict[str, Any]:
    """The model's Lightning hyperparameters that JSON can hold (the run's detector settings, as built)."""

    def plain(value: Any) -> bool:
        if isinstance(value, list | tuple):
            return all(plain(item) for item in value)
        return value is None or isinstance(value, str | int | float | bool)

    return {
        name: list(value) if isinstance(value, tuple) else value
        for name, value in dict(model.hparams).items()
        if plain(value)
    }


def split_sizes(datamodule: SyntheticAnomalyDataModule) -> dict[str, int]:
    """Shots, training normals, validation images and test images of one run."""
    test_labels = datamodule.test_data.samples.label_index
    return {
        "shots": len(datamodule.shot_records),
        "train_normals": len(datamodule.train_normal_paths()),
        "val_images": len(datamodule.val_data) if getattr(datamodule, "val_data", None) is not None else 0,
        "test_anomalies": int((test_labels == 1).sum()),
        "test_normals": int((test_labels == 0).sum()),
    }


def training_steps(generator: AnomalyGenerator) -> int | None:
    """Optimiser steps of a learned generator's fit, also when loaded from disk (None: classic generators).

    A mixture reports its learned component's steps.
    """
    report = getattr(generator, "training_report", None)
    steps = getattr(report, "steps", None)
    for component in getattr(generator, "components", []):
        steps = steps if steps is not None else training_steps(component)
    return steps


FIT_CHOICES = ("calibrated_guidance", "matched_guidance", "defect_strength")


def fit_choices(generator: AnomalyGenerator) -> dict[str, dict[str, float]] | None:
    """What a learned generator chose per defect type on its shots while fitting (None: nothing chosen).

    The diffusion generator calibrates its guidance scale and defect strength per type; recording them
    with each run lets a report cite the choices of the very fits it measured. A mixture reports its
    learned component's.

    >>> from anomaly_synth_aug.generators import PerlinGenerator
    >>> fit_choices(PerlinGenerator()) is None
    True
    """
    for candidate in (generator, *getattr(generator, "components", [])):
        choices = {name: dict(getattr(candidate, name)) for name in FIT_CHOICES if getattr(candidate, name, None)}
        if choices:
            return choices
    return None

"""Benchmark presets: every knob of a run that is not the generator, the detector or the seed.

Every budget is a number of steps, never minutes, so a run gives the same numbers on a busy
machine and on an idle one. Supervised detectors train on crops at native resolution and predict
on whole images; fixed-input detectors (PaDiM, PatchCore, DRÆM) see images resized to
``image_size`` and are scored after their maps are resized back, so every detector's pixel metrics
are computed against the same native-resolution masks.

Example:
    >>> preset = resolve_preset("quick")
    >>> replace(preset, max_steps=50)  # a variant for a quick experiment (record it under another name)
"""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields
from typing import Any

from anomaly_synth_aug.data.fewshot import DEFAULT_SHOT_FRACTION, check_max_shots_per_type, check_shot_fraction
from anomaly_synth_aug.errors import InvalidInputError


@dataclass(frozen=True)
class Preset:
    """Sizes and budgets of a benchmark run.

    Args:
        name: recorded with each result (results of different presets are never mixed).
        crop_size: side of the defect-centred training crops of the supervised detectors, at native
            resolution (a multiple of 32).
        image_size: input side of the fixed-input detectors (PaDiM, PatchCore, DRÆM).
        max_steps: optimiser steps of every trained detector.
        val_every_steps: steps between validations (checkpoint selection on the synthetic validation set).
        train_batch_size: training batch size.
        eval_batch_size: validation and test batch size (1: native-resolution images differ in size).
        num_workers: DataLoader workers (they run the online generator).
        train_mode: ``"online"`` (a fresh defect every draw) or ``"cached"`` (supervised detectors train
            from a pool of ``samples_per_type`` defects per type, generated once per generator and seed).
        samples_per_type: size of the cached pool per defect type (``train_mode="cached"``).
        anomaly_ratio: share of training items given a defect (supervised detectors).
        val_split_ratio: share of train normals held back for the synthetic validation set.
        shot_fraction: share of each defect type's real images given to the generator and the detector as
            shots (the first ones by file name); the rest are evaluated on.
        max_shots_per_type: keep only the first this many of each type's shots (None: all of them); the
            others are used for nothing, so the evaluation set stays that of ``shot_fraction``.
        max_fit_normals: at most this many normals are given to ``generator.fit``.
        backbone: timm backbone of the pretrained detectors (ImageNet weights that install offline).
        segmenter_width: base width of the from-scratch segmenter (``segmenter_scratch``).
        draem_width: ``GeneratorDraem`` base width (anomalib's 128 costs ~100x a segmenter step on CPU).
        padim_features: PaDiM's retained feature dimensions.
        coreset_ratio: PatchCore's coreset share of the memory bank (1 %: the paper's PatchCore-1 %; anomalib's
            10 % costs its greedy coreset search ten times as long on CPU).
        diffusion: overrides for ``DiffusionAnomalyGenerator`` (its training budget in steps).
        quality_samples: generated images for the generation-quality measures.
        c2st_epochs: training epochs of the two-sample-test classifier.
    """

    name: str
    crop_size: int = 256
    image_size: int = 256
    max_steps: int = 600
    val_every_steps: int = 100
    train_batch_size: int = 8
    eval_batch_size: int = 1
    num_workers: int = 0
    train_mode: str = "cached"
    samples_per_type: int = 100
    anomaly_ratio: float = 0.5
    val_split_ratio: float = 0.15
    shot_fraction: float = DEFAULT_SHOT_FRACTION
    max_shots_per_type: int | None = None
    max_fit_normals: int = 64
    backbone: str = "efficientnet_lite0"
    segmenter_width: int = 16
    draem_width: int = 16
    padim_features: int = 100
    coreset_ratio: float = 0.01
    diffusion: dict[str, Any] = field(default_factory=dict)
    quality_samples: int = 128
    c2st_epochs: int = 15

    def __post_init__(self) -> None:
        for name in ("crop_size", "image_size"):
            value = getattr(self, name)
            if value < 32 or value % 32:
                raise InvalidInputError(f"{name} must be a multiple of 32, got {value}", fix="use e.g. 256")
        if self.max_steps < 1 or self.val_every_steps < 1:
            raise InvalidInputError(
                f"max_steps and val_every_steps must be >= 1, got {self.max_steps} and {self.val_every_steps}",
                fix="use e.g. max_steps=600, val_every_steps=100",
            )
        check_shot_fraction(self.shot_fraction)
        check_max_shots_per_type(self.max_shots_per_type)


PRESETS: dict[str, Preset] = {
    # The comparison. The diffusion generator runs with the product's defaults (a step budget).
    "full": Preset(name="full"),
    # Smoke checks of the whole path on real data: a fifth of the training.
    "quick": Preset(
        name="quick",
        max_steps=120,
        val_every_steps=40,
        samples_per_type=30,
        diffusion={"max_steps": 100},
        quality_samples=64,
        c2st_epochs=10,
    ),
    # Seconds, for tests on tiny datasets.
    "smoke": Preset(
        name="smoke",
        crop_size=32,
        image_size=64,
        max_steps=2,
        val_every_steps=1,
        train_batch_size=4,
        train_mode="online",
        samples_per_type=4,
        max_fit_normals=8,
        segmenter_width=2,
        padim_features=16,
        diffusion={"max_steps": 2, "num_inference_steps": 2, "batch_size": 4},
        quality_samples=8,
        c2st_epochs=1,
    ),
}


def resolve_preset(preset: str | Preset) -> Preset:
    """A ``Preset`` from its name (or the preset itself)."""
    if isinstance(preset, Preset):
        return preset
    if preset not in PRESETS:
        raise InvalidInputError(f"unknown preset {preset!r}", fix=f"use one of {sorted(PRESETS)}")
    return PRESETS[preset]


def preset_record(preset: str | Preset) -> dict[str, Any]:
    """The preset as a JSON-able dict (stored with the results)."""
    return asdict(resolve_preset(preset))


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

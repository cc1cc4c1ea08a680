"""anomaly_synth_aug: few-shot synthetic defects for anomalib training.

Learns a category's defects from a handful of real shots (a diffusion model trained
from scratch, or classic baselines) and injects generated anomalies with pixel-exact
masks into anomalib training through ``SyntheticAnomalyDataModule``.

The public names below are imported lazily (PEP 562) so that ``import anomaly_synth_aug``
stays cheap and the anomalib CLI can resolve ``anomaly_synth_aug.SyntheticAnomalyDataModule``.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    # data model and protocol
    "AnomalySample": "anomaly_synth_aug.data.sample",
    "load_image": "anomaly_synth_aug.data.io",
    "load_mask": "anomaly_synth_aug.data.io",
    "load_sample": "anomaly_synth_aug.data.io",
    "MASK_THRESHOLD": "anomaly_synth_aug.data.io",
    "few_shot_split": "anomaly_synth_aug.data.fewshot",
    "FewShotSplit": "anomaly_synth_aug.data.fewshot",
    "DefectRecord": "anomaly_synth_aug.data.fewshot",
    # errors
    "AnomalySynthError": "anomaly_synth_aug.errors",
    "InvalidInputError": "anomaly_synth_aug.errors",
    "CorruptFileError": "anomaly_synth_aug.errors",
    "MaskError": "anomaly_synth_aug.errors",
    "UnknownDefectTypeError": "anomaly_synth_aug.errors",
    "CheckpointMismatchError": "anomaly_synth_aug.errors",
    "NotFittedError": "anomaly_synth_aug.errors",
    # generators
    "AnomalyGenerator": "anomaly_synth_aug.generators.base",
    "GeneratedBatch": "anomaly_synth_aug.generators.base",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'anomaly_synth_aug' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static checkers and IDEs see the real names
    from anomaly_synth_aug.data.fewshot import DefectRecord, FewShotSplit, few_shot_split
    from anomaly_synth_aug.data.io import MASK_THRESHOLD, load_image, load_mask, load_sample
    from anomaly_synth_aug.data.sample import AnomalySample
    from anomaly_synth_aug.errors import (
        AnomalySynthError,
        CheckpointMismatchError,
        CorruptFileError,
        InvalidInputError,
        MaskError,
        NotFittedError,
        UnknownDefectTypeError,
    )
    from anomaly_synth_aug.generators.base import AnomalyGenerator, GeneratedBatch

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
    "ClassicGenerator": "anomaly_synth_aug.generators.classic",
    "PerlinGenerator": "anomaly_synth_aug.generators.perlin",
    "CutPasteGenerator": "anomaly_synth_aug.generators.cutpaste",
    "PoissonBlendGenerator": "anomaly_synth_aug.generators.poisson",
    "RealShotPasteGenerator": "anomaly_synth_aug.generators.real_paste",
    "MixtureGenerator": "anomaly_synth_aug.generators.mixture",
    "DiffusionAnomalyGenerator": "anomaly_synth_aug.generators.diffusion.generator",
    "StableDiffusionInpaintGenerator": "anomaly_synth_aug.generators.diffusion.pretrained",
    # MVTec-layout folders and native-resolution training
    "scan_mvtec_folder": "anomaly_synth_aug.data.mvtec_folder",
    "mvtec_datamodule": "anomaly_synth_aug.data.mvtec_datamodule",
    "DefectCentredRandomCrop": "anomaly_synth_aug.data.transforms",
    "native_crop_augmentations": "anomaly_synth_aug.data.transforms",
    "shot_augmentations": "anomaly_synth_aug.data.transforms",
    # pretrained backbones that load offline
    "offline_backbone": "anomaly_synth_aug.backbones.timm_folder",
    "pretrained_timm_model": "anomaly_synth_aug.backbones.imagenet_weights",
    # datamodule and datasets
    "SyntheticAnomalyDataModule": "anomaly_synth_aug.data.datamodule",
    "SyntheticAnomalyDataset": "anomaly_synth_aug.data.dataset",
    "SyntheticValidationDataset": "anomaly_synth_aug.data.dataset",
    "EvaluationDataset": "anomaly_synth_aug.data.dataset",
    "EpochRandomSampler": "anomaly_synth_aug.data.samplers",
    "CachedAnomalyDataset": "anomaly_synth_aug.data.cached_dataset",
    "build_cached_train_dataset": "anomaly_synth_aug.data.cached_dataset",
    # cache
    "generate_cache": "anomaly_synth_aug.cache.generation",
    "SampleCache": "anomaly_synth_aug.cache.store",
    "VerifyReport": "anomaly_synth_aug.cache.integrity",
    "verify_cache": "anomaly_synth_aug.cache.integrity:verify",
    # anomalib models that train on generated anomalies
    "GeneratorAugmenter": "anomaly_synth_aug.models.augmenter",
    "GeneratorDraem": "anomaly_synth_aug.models.draem",
    "GeneratorGlass": "anomaly_synth_aug.models.glass",
    "SupervisedSupersimplenet": "anomaly_synth_aug.models.supersimplenet",
    "DefectSegmenter": "anomaly_synth_aug.models.segmenter",
    "NormalPatchMemory": "anomaly_synth_aug.models.normal_memory",
    "RawScorePostProcessor": "anomaly_synth_aug.models.post_processing",
    "NativeResolutionPreProcessor": "anomaly_synth_aug.models.native_resolution",
    "OfflinePatchcore": "anomaly_synth_aug.models.patchcore",
    # Lightning callbacks and pictures
    "GeneratorFineTuneCallback": "anomaly_synth_aug.callbacks.finetune",
    "SyntheticSampleLogger": "anomaly_synth_aug.callbacks.sample_logger",
    "render_sample_grid": "anomaly_synth_aug.visualization.grid",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'anomaly_synth_aug' has no attribute {name!r}")
    module, _, attribute = module.partition(":")
    value = getattr(importlib.import_module(module), attribute or name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # static checkers and IDEs see the real names
    from anomaly_synth_aug.backbones.imagenet_weights import pretrained_timm_model
    from anomaly_synth_aug.backbones.timm_folder import offline_backbone
    from anomaly_synth_aug.data.fewshot import DefectRecord, FewShotSplit, few_shot_split
    from anomaly_synth_aug.data.mvtec_datamodule import mvtec_datamodule
    from anomaly_synth_aug.data.mvtec_folder import scan_mvtec_folder
    from anomaly_synth_aug.data.transforms import (
        DefectCentredRandomCrop,
        native_crop_augmentations,
        shot_augmentations,
    )
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
    from anomaly_synth_aug.cache.generation import generate_cache
    from anomaly_synth_aug.cache.integrity import VerifyReport
    from anomaly_synth_aug.cache.integrity import verify as verify_cache
    from anomaly_synth_aug.cache.store import SampleCache
    from anomaly_synth_aug.callbacks.finetune import GeneratorFineTuneCallback
    from anomaly_synth_aug.callbacks.sample_logger import SyntheticSampleLogger
    from anomaly_synth_aug.data.cached_dataset import CachedAnomalyDataset, build_cached_train_dataset
    from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
    from anomaly_synth_aug.data.dataset import (
        EvaluationDataset,
        SyntheticAnomalyDataset,
        SyntheticValidationDataset,
    )
    from anomaly_synth_aug.data.samplers import EpochRandomSampler
    from anomaly_synth_aug.generators.base import AnomalyGenerator, GeneratedBatch
    from anomaly_synth_aug.generators.classic import ClassicGenerator
    from anomaly_synth_aug.generators.cutpaste import CutPasteGenerator
    from anomaly_synth_aug.generators.mixture import MixtureGenerator
    from anomaly_synth_aug.generators.diffusion.generator import DiffusionAnomalyGenerator
    from anomaly_synth_aug.generators.diffusion.pretrained import StableDiffusionInpaintGenerator
    from anomaly_synth_aug.generators.perlin import PerlinGenerator
    from anomaly_synth_aug.generators.poisson import PoissonBlendGenerator
    from anomaly_synth_aug.generators.real_paste import RealShotPasteGenerator
    from anomaly_synth_aug.models.augmenter import GeneratorAugmenter
    from anomaly_synth_aug.models.draem import GeneratorDraem
    from anomaly_synth_aug.models.glass import GeneratorGlass
    from anomaly_synth_aug.models.native_resolution import NativeResolutionPreProcessor
    from anomaly_synth_aug.models.normal_memory import NormalPatchMemory
    from anomaly_synth_aug.models.patchcore import OfflinePatchcore
    from anomaly_synth_aug.models.post_processing import RawScorePostProcessor
    from anomaly_synth_aug.models.segmenter import DefectSegmenter
    from anomaly_synth_aug.models.supersimplenet import SupervisedSupersimplenet
    from anomaly_synth_aug.visualization.grid import render_sample_grid

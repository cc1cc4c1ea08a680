"""The benchmark's detectors: how each is built, what its training images look like, how long it trains.

* ``segmenter``: ``DefectSegmenter``, a U-Net over frozen EfficientNet-Lite0 features (offline ImageNet
  weights) that also sees PatchCore's distance to the nearest normal patch, trained on defect-centred
  crops at native resolution and run on whole images (the product's supervised detector);
* ``segmenter_prior``: the same segmenter, its memory built from every training normal (whole, as
  PatchCore's), its map the sum of its logit's and the memory distance's standard scores on the
  validation normals and its image score the sum of the two image scores' standard scores
  (``NormalPrior``): the supervised verdict and PatchCore's together;
* ``segmenter_image_only``: the same U-Net without the normal memory (ablation: what the memory adds);
* ``segmenter_scratch``: the same protocol with DRÆM's U-Net trained from scratch (ablation);
* ``supersimplenet``: SuperSimpleNet in supervised mode on the pretrained backbone (its paper's setting);
* ``draem``: anomalib DRÆM with its augmenter replaced by the generator;
* ``padim``, ``patchcore``: one-class detectors on the pretrained backbone, trained on normals only.
  They are the anchor of every table: what a user runs without generating anything;
* ``padim_native``, ``patchcore_native``: the same at the category's native scale (a square of its
  median pixel count, ``native_side``) instead of ``preset.image_size``: 512 px for MVTec's screw, whose
  thin defects a 256 px resize thins out further.

Every detector gets the benchmark's evaluator and ``RawScorePostProcessor`` (no normalisation;
thresholds from the synthetic validation set). Fixed-input detectors see images resized to
``preset.image_size`` through ``NativeResolutionPreProcessor``, which resizes their maps back, so
all pixel metrics are computed at native resolution.

Example:
    >>> spec = DETECTORS["segmenter"]
    >>> model = spec.build(preset, generator)
    >>> Engine(**spec.engine_arguments(preset)).fit(model, datamodule=datamodule)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from anomalib.models import AnomalibModule
from anomalib.pre_processing import PreProcessor
from torchvision.transforms.v2 import Compose, Normalize, Resize, Transform

from anomaly_synth_aug.backbones.imagenet_weights import IMAGENET_MEAN, IMAGENET_STD
from anomaly_synth_aug.data.transforms import native_crop_augmentations
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.evaluation.downstream.presets import Preset
from anomaly_synth_aug.evaluation.metrics import benchmark_evaluator
from anomaly_synth_aug.generators.base import AnomalyGenerator
from anomaly_synth_aug.models.native_resolution import NativeResolutionPreProcessor
from anomaly_synth_aug.models.post_processing import RawScorePostProcessor

#: Backbone layers per detector, mapped from each paper's ResNet choice onto EfficientNet-Lite0 by
#: stride: PaDiM's first three stages (strides 4, 8, 16), PatchCore's and SuperSimpleNet's
#: layer2 + layer3 (strides 8, 16).
PADIM_LAYERS: tuple[str, ...] = ("blocks.2", "blocks.4")
PATCHCORE_LAYERS: tuple[str, ...] = ("blocks.2", "blocks.4")
SUPERSIMPLENET_LAYERS: tuple[str, ...] = ("blocks.2", "blocks.4")

#: How the plain ``segmenter`` rows build their normal memory: 128 normal crops of the training loader,
#: the memory all of its committed results were measured with. ``DefectSegmenter``'s default (every
#: training normal, whole, as PatchCore) is what ``segmenter_prior`` uses; rerunning the plain rows with
#: it means archiving theirs first (benchmarks/README.md).
LEGACY_MEMORY: dict[str, Any] = {"memory_source": "training_crops", "memory_images": 128}

Builder = Callable[[Preset, AnomalyGenerator | None], AnomalibModule]


def _components() -> dict[str, Any]:
    return {"post_processor": RawScorePostProcessor(), "evaluator": benchmark_evaluator(), "visualizer": False}


def _square(preset: Preset) -> tuple[int, int]:
    return (preset.image_size, preset.image_size)


def _segmenter(**options: Any) -> Builder:
    """The pretrained ``DefectSegmenter`` with ``options`` over its defaults (the product's detector and its variants)."""

    def build(preset: Preset, generator: AnomalyGenerator | None) -> AnomalibModule:
        from anomaly_synth_aug.models.segmenter import DefectSegmenter

        del generator  # learns from the datamodule's masks
        return DefectSegmenter(encoder=preset.backbone, pretrained=True, **options, **_components())

    return build


def _segmenter_scratch(preset: Preset, generator: AnomalyGenerator | None) -> AnomalibModule:
    from anomaly_synth_aug.models.segmenter import DefectSegmenter

    del generator
    return DefectSegmenter(encoder=None, base_width=preset.segmenter_width, **_components())


def _supersimplenet(preset: Preset, generator: AnomalyGenerator | None) -> AnomalibModule:
    from anomaly_synth_aug.backbones import offline_backbone
    from anomaly_synth_aug.models.supersimplenet import SupervisedSupersimplenet

    del generator
    return SupervisedSupersimplenet(
        backbone=offline_backbone(preset.backbone),
        layers=SUPERSIMPLENET_LAYERS,
        pre_trained=True,
        # fully convolutional: trains on crops, predicts on whole native images
        pre_processor=PreProcessor(transform=Compose([Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)])),
        **_components(),
    )


def _draem(preset: Preset, generator: AnomalyGenerator | None) -> AnomalibModule:
    from anomaly_synth_aug.generators.perlin import PerlinGenerator
    from anomaly_synth_aug.models.draem import GeneratorDraem

    # "none": the augmenter never fires, so DRÆM sees no anomalies at all
    return GeneratorDraem(
        generator if generator is not None else PerlinGenerator(),
        probability=0.5 if generator is not None else 0.0,
        base_width=preset.draem_width,
        pre_processor=NativeResolutionPreProcessor(
            _square(preset), imagenet_normalization=False
        ),  # from scratch, on [0, 1]
        **_components(),
    )


def _padim(preset: Preset, generator: AnomalyGenerator | None) -> AnomalibModule:
    from anomalib.models import Padim

    from anomaly_synth_aug.backbones import offline_backbone

    del generator  # one-class: normals only
    return Padim(
        backbone=offline_backbone(preset.backbone),
        layers=list(PADIM_LAYERS),
        pre_trained=True,
        n_features=preset.padim_features,
        pre_processor=NativeResolutionPreProcessor(_square(preset)),
        **_components(),
    )


def _patchcore(preset: Preset, generator: AnomalyGenerator | None) -> AnomalibModule:
    from anomaly_synth_aug.backbones import offline_backbone
    from anomaly_synth_aug.models.patchcore import OfflinePatchcore

    del generator  # one-class: normals only
    return OfflinePatchcore(
        backbone=offline_backbone(preset.backbone),
        layers=list(PATCHCORE_LAYERS),
        pre_trained=True,
        coreset_sampling_ratio=preset.coreset_ratio,
        pre_processor=NativeResolutionPreProcessor(_square(preset)),
        **_components(),
    )


@dataclass(frozen=True)
class DetectorSpec:
    """One detector of the benchmark.

    Args:
        build: ``(preset, generator) -> AnomalibModule`` (the generator matters only to DRÆM's augmenter).
        supervised: learns from the datamodule's (synthetic or shot) masks.
        native_crops: trains on defect-centred crops at native resolution (else on images resized
            to ``preset.image_size``).
        one_class: fits in one pass over the normals (PaDiM, PatchCore), not by optimiser steps.
        description: how the README names it.
        native_size: resized to the category's native side (``native_side``) instead of ``preset.image_size``;
            the runner puts that side into the preset it hands to ``build`` and ``train_augmentations``.
    """

    build: Builder
    supervised: bool
    native_crops: bool
    one_class: bool
    description: str
    native_size: bool = False

    def train_augmentations(self, preset: Preset) -> Transform:
        """What every training image goes through before batching."""
        if self.native_crops:
            return native_crop_augmentations(preset.crop_size)
        return Resize(_square(preset), antialias=True)

    def engine_arguments(self, preset: Preset) -> dict[str, Any]:
        """``Engine`` budget: steps with periodic validation, or one epoch for one-class detectors."""
        if self.one_class:
            return {"max_epochs": 1}
        return {
            "max_steps": preset.max_steps,
            "max_epochs": -1,
            "val_check_interval": preset.val_every_steps,
            "check_val_every_n_epoch": None,
        }


DETECTORS: dict[str, DetectorSpec] = {
    "segmenter": DetectorSpec(
        _segmenter(normal_prior=False, **LEGACY_MEMORY),
        True,
        True,
        False,
        "U-Net on pretrained EfficientNet-Lite0 plus PatchCore's normal-patch distances (a memory of 128 "
        "normal crops), native resolution",
    ),
    "segmenter_prior": DetectorSpec(
        _segmenter(normal_prior=True),
        True,
        True,
        False,
        "the segmenter with PatchCore's verdict added to its own (standard scores on the validation normals), "
        "its memory built from every training normal, whole",
    ),
    "segmenter_image_only": DetectorSpec(
        _segmenter(normal_memory=False), True, True, False, "the same U-Net without the normal memory (ablation)"
    ),
    "segmenter_scratch": DetectorSpec(
        _segmenter_scratch, True, True, False, "DRÆM's U-Net from scratch, native resolution (ablation)"
    ),
    "supersimplenet": DetectorSpec(
        _supersimplenet, True, True, False, "SuperSimpleNet, supervised, on pretrained EfficientNet-Lite0"
    ),
    "draem": DetectorSpec(_draem, False, False, False, "DRÆM (width 16) with the generator as its augmenter"),
    "padim": DetectorSpec(_padim, False, False, True, "PaDiM on pretrained EfficientNet-Lite0 (one-class)"),
    "patchcore": DetectorSpec(_patchcore, False, False, True, "PatchCore on pretrained EfficientNet-Lite0 (one-class)"),
    "padim_native": DetectorSpec(
        _padim, False, False, True, "PaDiM at the category's native scale (one-class)", native_size=True
    ),
    "patchcore_native": DetectorSpec(
        _patchcore, False, False, True, "PatchCore at the category's native scale (one-class)", native_size=True
    ),
}


def detector_spec(name: str) -> DetectorSpec:
    """The spec of ``name``, or a clear error listing the detectors."""
    if name not in DETECTORS:
        raise InvalidInputError(f"unknown detector {name!r}", fix=f"use one of {list(DETECTORS)}")
    return DETECTORS[name]

"""Detectors: the supervised segmenter, anomalib adapters that train on generated anomalies, and their parts."""

from anomaly_synth_aug.models.augmenter import GeneratorAugmenter
from anomaly_synth_aug.models.draem import GeneratorDraem
from anomaly_synth_aug.models.glass import GeneratorGlass
from anomaly_synth_aug.models.native_resolution import NativeResolutionPreProcessor
from anomaly_synth_aug.models.patchcore import OfflinePatchcore
from anomaly_synth_aug.models.post_processing import RawScorePostProcessor
from anomaly_synth_aug.models.segmenter import DefectSegmenter
from anomaly_synth_aug.models.supersimplenet import SupervisedSupersimplenet

__all__ = [
    "DefectSegmenter",
    "GeneratorAugmenter",
    "GeneratorDraem",
    "GeneratorGlass",
    "NativeResolutionPreProcessor",
    "OfflinePatchcore",
    "RawScorePostProcessor",
    "SupervisedSupersimplenet",
]

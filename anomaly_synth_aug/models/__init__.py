"""anomalib model adapters that train on generated anomalies."""

from anomaly_synth_aug.models.augmenter import GeneratorAugmenter
from anomaly_synth_aug.models.draem import GeneratorDraem
from anomaly_synth_aug.models.glass import GeneratorGlass
from anomaly_synth_aug.models.post_processing import RawScorePostProcessor
from anomaly_synth_aug.models.supersimplenet import SupervisedSupersimplenet

__all__ = ["GeneratorAugmenter", "GeneratorDraem", "GeneratorGlass", "RawScorePostProcessor", "SupervisedSupersimplenet"]

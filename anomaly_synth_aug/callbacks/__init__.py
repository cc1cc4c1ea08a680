"""Lightning callbacks: per-category generator fine-tuning and sample-grid logging."""

from anomaly_synth_aug.callbacks.finetune import GeneratorFineTuneCallback
from anomaly_synth_aug.callbacks.sample_logger import SyntheticSampleLogger

__all__ = ["GeneratorFineTuneCallback", "SyntheticSampleLogger"]

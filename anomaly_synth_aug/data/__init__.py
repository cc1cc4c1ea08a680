"""Data model, I/O, few-shot split and the anomalib datamodule wrapper."""

from anomaly_synth_aug.data.io import MASK_THRESHOLD, load_image, load_mask, load_sample
from anomaly_synth_aug.data.sample import (
    ANOMALOUS_LABEL,
    NORMAL_LABEL,
    NORMAL_TYPE,
    AnomalySample,
)

__all__ = [
    "ANOMALOUS_LABEL",
    "MASK_THRESHOLD",
    "NORMAL_LABEL",
    "NORMAL_TYPE",
    "AnomalySample",
    "load_image",
    "load_mask",
    "load_sample",
]

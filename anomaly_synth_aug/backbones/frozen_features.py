"""One frozen ImageNet feature pyramid per backbone and layers, shared by everything in the process that measures.

The diffusion generator's visibility floors and filter (``FeatureContrast``) and its realism filter
(``ShotRealism``) read the same EfficientNet-Lite0 layers. Each used to load its own copy of the
weights; ``frozen_feature_extractor`` builds the model once and hands every caller the same
inference-only module, and ``imagenet_input`` prepares images for it the way the detectors do.

Example:
    >>> extractor = frozen_feature_extractor("efficientnet_lite0", (2, 3))
    >>> maps = extractor(imagenet_input(image)[None])  # strides 8 and 16
"""

from __future__ import annotations

from functools import lru_cache

import torch

from anomaly_synth_aug.backbones.imagenet_weights import IMAGENET_MEAN, IMAGENET_STD, pretrained_timm_model
from anomaly_synth_aug.errors import InvalidInputError


@lru_cache(maxsize=4)
def frozen_feature_extractor(name: str, out_indices: tuple[int, ...]) -> torch.nn.Module:
    """timm ``name`` as a ``features_only`` pyramid of ``out_indices``, ImageNet weights, eval mode, no gradients.

    Cached: every caller asking for the same backbone and layers gets the same module. Do not train it.
    """
    return pretrained_timm_model(name, features_only=True, out_indices=out_indices).requires_grad_(False).eval()


def imagenet_input(image: torch.Tensor) -> torch.Tensor:
    """An image (``[C, H, W]`` or ``[B, C, H, W]``, values in [0, 1]) as ImageNet-normalised RGB float.

    Grey (one channel) is repeated to three; a fourth (alpha) channel is dropped.
    """
    channels = image.shape[-3] if image.dim() >= 3 else 0
    if channels not in (1, 3, 4):
        raise InvalidInputError(
            f"expected an image [C, H, W] or [B, C, H, W] with 1, 3 or 4 channels, got shape {tuple(image.shape)}",
            fix="pass grey, RGB or RGBA images",
        )
    rgb = image.float()
    rgb = rgb.expand(*rgb.shape[:-3], 3, *rgb.shape[-2:]) if channels == 1 else rgb[..., :3, :, :]
    mean = torch.tensor(IMAGENET_MEAN)[:, None, None]
    std = torch.tensor(IMAGENET_STD)[:, None, None]
    return (rgb - mean) / std


__all__ = ["frozen_feature_extractor", "imagenet_input"]

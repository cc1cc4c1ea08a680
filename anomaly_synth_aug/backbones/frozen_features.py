"""One frozen ImageNet feature pyramid per backbone and layers, shared by everything in the process that measures.

The diffusion generator's visibility floors and filter (``FeatureContrast``) and its realism filter
(``ShotRealism``) read the same EfficientNet-Lite0 layers. Each used to load its own copy of the
weights; ``frozen_feature_extractor`` builds the model once and hands every caller the same
inference-only module, and ``imagenet_input`` prepares images for it the way the detectors do.

Being frozen, the model can be made faster without changing what it computes (beyond float
rounding): every batch norm is folded into the convolution before it
(``torch.nn.utils.fusion.fuse_conv_bn_eval``) and it runs channels-last, which together make the
visibility filter's one pass per generated defect several times cheaper on CPU (benchmarks/README.md).

Example:
    >>> extractor = frozen_feature_extractor("efficientnet_lite0", (2, 3))
    >>> maps = extractor(imagenet_input(image)[None])  # strides 8 and 16
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from anomaly_synth_aug.backbones.imagenet_weights import IMAGENET_MEAN, IMAGENET_STD, pretrained_timm_model
from anomaly_synth_aug.errors import InvalidInputError


class _ChannelsLast(nn.Module):
    """Runs ``model`` (channels-last weights) on a channels-last copy of its input."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.to(memory_format=torch.channels_last)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.model(images.contiguous(memory_format=torch.channels_last))


def fold_batch_norms(model: nn.Module) -> int:
    """Fold every ``BatchNorm2d`` that directly follows a ``Conv2d`` (in its parent's order) into that conv.

    For inference only (eval statistics). timm's ``BatchNormAct2d`` keeps its dropout and activation.
    Returns how many were folded.
    """
    folded = 0
    for parent in model.modules():
        names = list(parent._modules)
        for first, second in zip(names, names[1:], strict=False):
            conv, norm = parent._modules[first], parent._modules[second]
            if isinstance(conv, nn.Conv2d) and isinstance(norm, nn.BatchNorm2d):
                parent._modules[first] = fuse_conv_bn_eval(conv.eval(), norm.eval())
                kept = [m for m in (getattr(norm, "drop", None), getattr(norm, "act", None)) if m is not None]
                parent._modules[second] = nn.Sequential(*kept)
                folded += 1
    return folded


@lru_cache(maxsize=4)
def frozen_feature_extractor(name: str, out_indices: tuple[int, ...]) -> nn.Module:
    """timm ``name`` as a ``features_only`` pyramid of ``out_indices``, ImageNet weights, for inference only.

    Batch norms folded, channels-last, eval mode, no gradients. Cached: every caller asking for the
    same backbone and layers gets the same module. Do not train it.
    """
    model = pretrained_timm_model(name, features_only=True, out_indices=out_indices).eval()
    fold_batch_norms(model)
    return _ChannelsLast(model).requires_grad_(False).eval()


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


__all__ = ["fold_batch_norms", "frozen_feature_extractor", "imagenet_input"]

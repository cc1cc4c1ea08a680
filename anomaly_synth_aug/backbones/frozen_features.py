"""One frozen ImageNet feature pyramid per backbone and layers, shared by everything in the process that measures.

The diffusion generator's visibility floors and filter (``FeatureContrast``) and its realism filter
(``ShotRealism``) read the same EfficientNet-Lite0 layers. Each used to load its own copy of the
weights; ``frozen_feature_extractor`` builds the model once and hands every caller the same
inference-only module, and ``imagenet_input`` prepares images for it the way the detectors do.

Being frozen, the model can be made faster without changing what it computes (beyond float
rounding): every batch norm is folded into the convolution before it
(``torch.nn.utils.fusion.fuse_conv_bn_eval``), the blocks after the last requested map are dropped,
and it runs channels-last, which together make the visibility filter's one pass per generated
defect several times cheaper on CPU (benchmarks/README.md).

Example:
    >>> extractor = frozen_feature_extractor("efficientnet_lite0", DETECTOR_FEATURE_INDICES)
    >>> maps = extractor(imagenet_input(image)[None])  # strides 8 and 16
"""

from __future__ import annotations

from functools import lru_cache

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from anomaly_synth_aug.backbones.imagenet_weights import IMAGENET_MEAN, IMAGENET_STD, pretrained_timm_model
from anomaly_synth_aug.errors import InvalidInputError

#: timm feature indices of EfficientNet-Lite0 at strides 8 and 16 (blocks.2 and blocks.4): the layers the
#: downstream detectors read, so the generator's visibility and realism measures read them too (and share them).
DETECTOR_FEATURE_INDICES: tuple[int, int] = (2, 3)


class _ChannelsLast(nn.Module):
    """Runs ``model`` (channels-last weights) on a channels-last copy of its input; inference only.

    The feature maps it returns are channels-last too (use ``reshape``, not ``view``). It refuses
    ``train()``: the module is shared by every caller in the process.
    """

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model.to(memory_format=torch.channels_last)
        self.feature_info = getattr(model, "feature_info", None)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.model(images.contiguous(memory_format=torch.channels_last))

    def train(self, mode: bool = True) -> _ChannelsLast:
        if mode:
            raise InvalidInputError(
                "the shared frozen feature extractor is for inference only",
                fix="build a trainable copy with pretrained_timm_model(name, features_only=True, ...)",
            )
        return super().train(False)


def _drop_unused_blocks(model: nn.Module) -> None:
    """Remove the trailing ``blocks`` of a timm features model that no requested feature comes from.

    timm's ``EfficientNetFeatures`` runs every block even when the last requested map comes earlier.
    """
    info = getattr(model, "feature_info", None)
    blocks = getattr(model, "blocks", None)
    names = info.module_name() if info is not None else []
    if not isinstance(blocks, nn.Sequential) or not names or not all(n.startswith("blocks.") for n in names):
        return
    last = max(int(n.split(".")[1]) for n in names)
    model.blocks = nn.Sequential(*list(blocks)[: last + 1])


def fold_batch_norms(model: nn.Module) -> int:
    """Fold every ``BatchNorm2d`` registered right after a ``Conv2d`` of its width into that conv.

    Registration order stands for data flow, as in timm's convolutional blocks (each norm takes the
    output of the conv registered before it); do not use it on a model where that does not hold.
    For inference only (running statistics). timm's ``BatchNormAct2d`` keeps its dropout and
    activation. Returns how many were folded.
    """
    folded = 0
    for parent in model.modules():
        names = list(parent._modules)
        for first, second in zip(names, names[1:], strict=False):
            conv, norm = parent._modules[first], parent._modules[second]
            if (
                isinstance(conv, nn.Conv2d)
                and isinstance(norm, nn.BatchNorm2d)
                and norm.num_features == conv.out_channels
                and norm.running_mean is not None
            ):
                parent._modules[first] = fuse_conv_bn_eval(conv.eval(), norm.eval())
                kept = [m for m in (getattr(norm, "drop", None), getattr(norm, "act", None)) if m is not None]
                parent._modules[second] = nn.Sequential(*kept)
                folded += 1
    return folded


@lru_cache(maxsize=4)
def frozen_feature_extractor(name: str, out_indices: tuple[int, ...]) -> nn.Module:
    """timm ``name`` as a ``features_only`` pyramid of ``out_indices``, ImageNet weights, for inference only.

    Batch norms folded, blocks after the last requested map dropped, channels-last, eval mode, no
    gradients. Cached: every caller asking for the same backbone and layers gets the same module.
    """
    model = pretrained_timm_model(name, features_only=True, out_indices=out_indices).eval()
    _drop_unused_blocks(model)
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
    mean = torch.tensor(IMAGENET_MEAN, device=rgb.device)[:, None, None]
    std = torch.tensor(IMAGENET_STD, device=rgb.device)[:, None, None]
    return (rgb - mean) / std


__all__ = ["DETECTOR_FEATURE_INDICES", "fold_batch_norms", "frozen_feature_extractor", "imagenet_input"]

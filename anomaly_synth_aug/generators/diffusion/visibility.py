"""Visibility in the detectors' feature space: does a defect stand out from its surface as much as a shot does?

``defect_contrast`` measures grey levels: a generated defect can match its shots there and still be
smooth where the real ones are rough, so that a pretrained detector's backbone hardly tells it from
the surface, and a segmenter trained on it learns to mark surface that looks normal.
``FeatureContrast`` runs the whole (mirror-padded) image through EfficientNet-Lite0 (offline ImageNet
weights, the downstream detectors' backbone) and measures, at strides 8 and 16, the distance between
the mean feature inside the mask and the mean feature over a ring of surface around it. The image is
not cropped, so the ring lies on real surface rather than on the backbone's zero padding: an
unchanged surface scores near zero wherever the mask is put.

The diffusion generator's ``visibility_filter`` rejects a generated defect that stands out less than
the faintest shot of its type (``faintest_by_type``): a rule from the shots alone, with nothing tuned.

Example:
    >>> contrast = FeatureContrast()
    >>> values = contrast([sample.image for sample in shots], [sample.mask for sample in shots])
    >>> floors = faintest_by_type(values, [sample.defect_type for sample in shots])
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import torch
from torch.nn import functional as F

from anomaly_synth_aug.backbones.frozen_features import (
    DETECTOR_FEATURE_INDICES,
    frozen_feature_extractor,
    imagenet_input,
)
from anomaly_synth_aug.data.sample import to_bool_mask
from anomaly_synth_aug.errors import InvalidInputError, MaskError
from anomaly_synth_aug.generators.diffusion.patches import CropBox, mask_bbox

#: Width of the surface ring around the mask, in pixels: one stride-16 feature cell.
RING = 16
#: Mirrored margin added around the image, so that the backbone's zero padding (felt far inward by its
#: wide receptive field) does not differ between a mask's inside and its ring.
MARGIN = 64


class FeatureContrast:
    """Per defect: ``|mean feature inside the mask - mean feature over a ring around it|``, summed over strides.

    Args:
        backbone: timm name of the feature extractor (offline ImageNet weights).
        ring: width in pixels of the surface ring the inside is compared with.
        margin: pixels of mirrored surface added around the image before the backbone.
    """

    def __init__(self, backbone: str = "efficientnet_lite0", ring: int = RING, margin: int = MARGIN) -> None:
        if ring < 1 or margin < 0:
            raise InvalidInputError(
                f"FeatureContrast needs ring >= 1 and margin >= 0 pixels, got ring={ring}, margin={margin}",
                fix=f"use e.g. ring={RING}, margin={MARGIN}",
            )
        self.backbone = backbone
        self.ring = ring
        self.margin = margin

    @property
    def extractor(self) -> torch.nn.Module:
        """The shared frozen backbone (loaded on first use)."""
        return frozen_feature_extractor(self.backbone, DETECTOR_FEATURE_INDICES)

    @torch.no_grad()
    def __call__(self, images: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> torch.Tensor:
        """``[N]`` feature contrasts of the defects ``masks`` marks in ``images`` (float ``[C, H, W]`` in [0, 1])."""
        return torch.tensor([self.one(image, mask) for image, mask in zip(images, masks, strict=True)])

    @torch.no_grad()
    def one(self, image: torch.Tensor, mask: torch.Tensor) -> float:
        """The feature contrast of one defect (see the class)."""
        inside = to_bool_mask(mask, name="mask")
        if not bool(inside.any()):
            raise MaskError("a defect's feature contrast needs a non-empty mask", fix="skip normal samples")
        margin = min(self.margin, image.shape[-2] - 1, image.shape[-1] - 1)
        padded = F.pad(imagenet_input(image)[None], (margin,) * 4, mode="reflect")
        region = F.pad(inside.float()[None, None], (margin,) * 4)
        box = mask_bbox(inside)
        grown = _dilate(region, self.ring, CropBox(box.top + margin, box.left + margin, box.height, box.width))
        on_image = torch.zeros_like(region)  # compare with the surface itself, not its mirror image
        on_image[..., margin : margin + inside.shape[0], margin : margin + inside.shape[1]] = 1.0
        ring = (grown - region) * on_image
        if not bool(ring.any()):
            raise MaskError("the mask covers the whole image: there is no surface to compare it with")
        distance = torch.zeros(())
        for feature in self.extractor(padded):
            size = feature.shape[-2:]
            weight_in = F.interpolate(region, size=size, mode="area")
            weight_ring = F.interpolate(ring, size=size, mode="area")
            mean_in = (feature * weight_in).sum((2, 3)) / weight_in.sum().clamp_min(1e-6)
            mean_ring = (feature * weight_ring).sum((2, 3)) / weight_ring.sum().clamp_min(1e-6)
            distance = distance + (mean_in - mean_ring).square().sum()
        return float(distance.sqrt())


def _dilate(region: torch.Tensor, radius: int, box: CropBox | None = None) -> torch.Tensor:
    """``region`` (``[1, 1, H, W]``) grown by a square of ``radius`` pixels each way.

    Two 1-D max-pools, rows then columns: the same result as one square max-pool, at a fraction of its
    cost (the square pool dominated the filter's time per candidate). Given ``box``, the tight box of
    ``region``'s nonzero pixels, only that box and ``radius`` around it are pooled: nothing else can grow.
    """
    size = 2 * radius + 1
    if box is None:
        rows = F.max_pool2d(region, kernel_size=(1, size), stride=1, padding=(0, radius))
        return F.max_pool2d(rows, kernel_size=(size, 1), stride=1, padding=(radius, 0))
    height, width = region.shape[-2:]
    top, left = max(0, box.top - radius), max(0, box.left - radius)
    bottom, right = min(height, box.bottom + radius), min(width, box.right + radius)
    grown = torch.zeros_like(region)
    grown[..., top:bottom, left:right] = _dilate(region[..., top:bottom, left:right], radius)
    return grown


def _group_by_type(values: torch.Tensor, defect_types: Sequence[str]) -> dict[str, list[float]]:
    """``values`` listed per defect type, types sorted."""
    groups: dict[str, list[float]] = defaultdict(list)
    for value, name in zip(values.tolist(), defect_types, strict=True):
        groups[name].append(value)
    return {name: groups[name] for name in sorted(groups)}


def faintest_by_type(values: torch.Tensor, defect_types: Sequence[str]) -> dict[str, float]:
    """Smallest of ``values`` per defect type (types sorted): the visibility filter's floors."""
    return {name: min(group) for name, group in _group_by_type(values, defect_types).items()}


def median_by_type(values: torch.Tensor, defect_types: Sequence[str]) -> dict[str, float]:
    """Median of ``values`` per defect type (types sorted)."""
    return {name: float(torch.tensor(group).median()) for name, group in _group_by_type(values, defect_types).items()}


__all__ = ["MARGIN", "RING", "FeatureContrast", "faintest_by_type", "median_by_type"]

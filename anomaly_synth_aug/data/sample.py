"""The package's one sample type and its conversion to anomalib's ``ImageItem``.

Everything inside the package (generators, cache, datamodule) speaks
``AnomalySample``: float image ``[3, H, W]`` in ``[0, 1]``, bool mask ``[H, W]``,
integer label, defect type name. Converting to anomalib happens in one place so
the collate rules anomalib relies on hold everywhere: every item carries a mask
(all False for normals), masks are bool (never soft), and ``image_path`` is a
file anomalib's visualizer can open, or None.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from anomalib.data import ImageItem
from torchvision.tv_tensors import Image, Mask

from anomaly_synth_aug.errors import InvalidInputError, MaskError

NORMAL_LABEL = 0
ANOMALOUS_LABEL = 1
NORMAL_TYPE = "good"


#: Float images above 1 are clamped (interpolation overshoots a little); above this they are refused.
_LARGEST_FLOAT = 2.0


def to_rgb_float(image: torch.Tensor, *, name: str | Path | None = None) -> torch.Tensor:
    """Return ``image`` as float ``[3, H, W]`` in ``[0, 1]``; grayscale is promoted to 3 channels.

    Accepts ``[H, W]``, ``[1, H, W]``, ``[3, H, W]`` or ``[4, H, W]`` (alpha dropped), uint8 or float.
    """
    if image.ndim == 2:
        image = image.unsqueeze(0)
    if image.ndim != 3 or image.shape[0] not in (1, 3, 4):
        raise InvalidInputError(
            f"expected an image of shape [H, W] or [C, H, W] with C in (1, 3, 4), got {tuple(image.shape)}",
            path=name,
            fix="pass a single image tensor (not a batch) with 1, 3 or 4 channels",
        )
    if image.shape[0] == 4:
        image = image[:3]
    if image.dtype == torch.uint8:  # in range by construction: no clamp pass
        image = image.float().div_(255.0)
    else:
        image = image.float()
        low, high = torch.aminmax(image)
        if high > _LARGEST_FLOAT:  # not resampling overshoot: a 0..255 (or normalised) image, which would turn white
            raise InvalidInputError(
                f"a float image must hold values in [0, 1]; this one reaches {float(high):.4g}",
                path=name,
                fix="divide a 0..255 image by 255 (or pass it as uint8); undo any mean/std normalisation",
            )
        if low < 0.0 or high > 1.0:
            image = image.clamp(0.0, 1.0)
    if image.shape[0] == 1:
        image = image.expand(3, -1, -1)
    return image.contiguous()  # a no-op for an already valid image: samples re-validate without copying


def to_bool_mask(mask: torch.Tensor, *, threshold: float = 0.5, name: str | Path | None = None) -> torch.Tensor:
    """Return ``mask`` as bool ``[H, W]``.

    Bool masks pass through; float masks are thresholded at ``threshold`` (in [0, 1]);
    uint8 masks at ``threshold * 255`` (so 0.5 ~ the documented >127 rule), except 0/1 label masks
    (largest value 1), whose ones are the defect, as ``load_mask`` reads such files.
    """
    if mask.ndim == 3 and mask.shape[0] == 1:
        mask = mask[0]
    if mask.ndim != 2:
        raise MaskError(
            f"expected a mask of shape [H, W] or [1, H, W], got {tuple(mask.shape)}",
            path=name,
            fix="pass one single-channel mask per image",
        )
    if mask.dtype == torch.bool:
        return mask
    if mask.dtype == torch.uint8:
        if mask.numel() and int(mask.max()) == 1:
            return mask > 0  # a 0/1 label mask: thresholding at 127 would empty it
        return mask > round(threshold * 255 - 0.5)
    return mask.float() > threshold


@dataclass
class AnomalySample:
    """One image with its mask, label and defect type.

    ``image`` float [3, H, W] in [0, 1]; ``mask`` bool [H, W] (all False when normal);
    ``label`` 0 normal / 1 anomalous; ``defect_type`` "good" for normals.
    """

    image: torch.Tensor
    mask: torch.Tensor
    label: int = ANOMALOUS_LABEL
    defect_type: str = NORMAL_TYPE
    image_path: str | None = None
    mask_path: str | None = None
    meta: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.image = to_rgb_float(self.image, name=self.image_path)
        self.mask = to_bool_mask(self.mask, name=self.mask_path or self.image_path)
        if self.mask.shape != self.image.shape[-2:]:
            raise MaskError(
                f"mask size {tuple(self.mask.shape)} differs from image size {tuple(self.image.shape[-2:])}",
                path=self.mask_path or self.image_path,
                fix="save the mask at the image's resolution (H x W must match)",
            )
        self.label = int(self.label)

    @classmethod
    def normal(cls, image: torch.Tensor, image_path: str | None = None) -> AnomalySample:
        """A normal sample with an all-False mask."""
        image = to_rgb_float(image, name=image_path)
        return cls(
            image=image,
            mask=torch.zeros(image.shape[-2:], dtype=torch.bool),
            label=NORMAL_LABEL,
            defect_type=NORMAL_TYPE,
            image_path=image_path,
        )

    @property
    def is_anomalous(self) -> bool:
        return self.label == ANOMALOUS_LABEL

    def to_image_item(self) -> ImageItem:
        """Convert to anomalib's ``ImageItem`` (bool ``Mask``, ``gt_label`` tensor, openable path or None)."""
        image_path = self.image_path if self.image_path and Path(self.image_path).is_file() else None
        return ImageItem(
            image=Image(self.image),
            gt_mask=Mask(self.mask.to(torch.bool)),
            gt_label=torch.tensor(self.label),
            image_path=image_path,
            mask_path=self.mask_path,
        )

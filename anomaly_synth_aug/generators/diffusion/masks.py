"""Where a defect goes, kept apart from what it looks like.

AnomalyDiffusion separates the anomaly's appearance from the mask that places
it; we do the same. This module holds the "where": a bank of the real shots'
mask shapes with geometric augmentation (``ShotMaskBank``), placement of a
shape inside an image or an allowed region (``place_mask``). The foreground
estimate for categories whose defects must lie on the object
(``foreground_region``, shared with the real-shot paste baseline) lives in
``generators/foreground.py`` and is re-exported here.

Masks are bool tensors throughout; a *crop* is a mask cut to its tight
bounding box, so its shape is the defect's extent.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF
from torchvision import tv_tensors

from anomaly_synth_aug.data.sample import AnomalySample, to_bool_mask
from anomaly_synth_aug.errors import (
    InvalidInputError,
    MaskError,
    UnknownDefectTypeError,
)
from anomaly_synth_aug.generators.diffusion.mask_crops import resize_crop, tight_crop
from anomaly_synth_aug.generators.foreground import OBJECT_THRESHOLDS, defects_lie_on_objects, foreground_region


class MaskSource(StrEnum):
    """Where sampled placements come from: the augmented shot masks, or the learned mask prior."""

    bank = "bank"
    prior = "prior"


__all__ = [
    "OBJECT_THRESHOLDS",
    "MaskAugmentation",
    "MaskSource",
    "ShotMaskBank",
    "defects_lie_on_objects",
    "foreground_region",
    "place_mask",
]


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


@dataclass(frozen=True)
class MaskAugmentation:
    """Random geometry for shot masks: flips, affine (rotation, scale, shear) and a smooth elastic warp.

    A few shots give a few shapes; these small, plausible deformations turn
    them into a family without changing what kind of defect they are. All
    randomness is drawn from the caller's ``torch.Generator`` and applied with
    torchvision's functional v2 ops on ``tv_tensors.Mask`` (nearest
    interpolation, so the result stays binary), which makes every crop
    reproducible from a seed without touching the global RNG.

    Args:
        degrees: rotation drawn from ``[-degrees, degrees]``.
        scale: isotropic scale range.
        shear: shear angles (x and y) drawn from ``[-shear, shear]`` degrees.
        flip_probability: chance of each of the horizontal and vertical flips.
        elastic_strength: largest elastic displacement, as a fraction of the crop's longer side.
        elastic_grid: control points per side of the displacement field (fewer = smoother warp).
    """

    degrees: float = 20.0
    scale: tuple[float, float] = (0.8, 1.25)
    shear: float = 10.0
    flip_probability: float = 0.5
    elastic_strength: float = 0.05
    elastic_grid: int = 4

    def __post_init__(self) -> None:
        if not 0 < self.scale[0] <= self.scale[1]:
            raise InvalidInputError(
                f"MaskAugmentation.scale must be (low, high) with 0 < low <= high, got {self.scale}",
                fix="pass e.g. scale=(0.8, 1.25)",
            )
        if self.elastic_grid < 2:
            raise InvalidInputError(
                f"MaskAugmentation.elastic_grid must be >= 2, got {self.elastic_grid}", fix="use e.g. 4"
            )

    def __call__(self, crop: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
        """A deformed copy of ``crop`` (bool, tight bounding box); ``crop`` itself if the result is empty."""
        height, width = crop.shape
        longer = max(height, width)
        # Draw every random number up front, in a fixed order, so the stream never depends on branches.
        flip_h = float(torch.rand((), generator=generator)) < self.flip_probability
        flip_v = float(torch.rand((), generator=generator)) < self.flip_probability
        angle = _uniform(-self.degrees, self.degrees, generator)
        scale = _uniform(*self.scale, generator)
        shear = [_uniform(-self.shear, self.shear, generator), _uniform(-self.shear, self.shear, generator)]
        control = torch.rand(1, 2, self.elastic_grid, self.elastic_grid, generator=generator) * 2 - 1

        mask = tv_tensors.Mask(crop.to(torch.uint8)[None])
        if flip_h:
            mask = TF.horizontal_flip(mask)
        if flip_v:
            mask = TF.vertical_flip(mask)
        # Pad to a square canvas large enough that rotation, shear, scale and warp never cut the shape.
        max_shift = self.elastic_strength * longer
        shear_growth = 1 + math.tan(math.radians(min(abs(self.shear), 60)))
        side = int(math.ceil(math.hypot(height, width) * max(self.scale[1], 1.0) * shear_growth + 2 * max_shift)) + 2
        top, left = (side - height) // 2, (side - width) // 2
        mask = TF.pad(mask, [left, top, side - width - left, side - height - top])
        mask = TF.affine(mask, angle=angle, translate=[0, 0], scale=scale, shear=shear)
        if self.elastic_strength > 0:
            mask = TF.elastic(mask, displacement=self._displacement(control, side, max_shift))
        warped = mask[0].as_subclass(torch.Tensor).bool()
        return tight_crop(warped) if bool(warped.any()) else crop

    @staticmethod
    def _displacement(control: torch.Tensor, side: int, max_shift: float) -> torch.Tensor:
        """A smooth ``[1, side, side, 2]`` field (normalised units) from coarse random control points.

        Upsampling a coarse grid gives the smoothness of a blurred noise field
        at a fraction of the cost (blurring large canvases is slow on CPU).
        """
        field = F.interpolate(control, size=(side, side), mode="bicubic", align_corners=True)
        field = field.clamp(-1, 1) * (max_shift * 2 / side)  # pixels -> grid_sample's [-1, 1] units
        return field.permute(0, 2, 3, 1)


class ShotMaskBank:
    """The real shots' mask shapes, per defect type, as tight crops; samples augmented copies.

    ``split_components`` chooses what one crop is. Off (default), a crop is a
    shot's whole mask: multi-part defects (a cluster of blowholes, a crack in
    segments) keep their layout. On, each connected component of at least
    ``min_component_area`` pixels becomes its own crop, which gives more shapes
    from few shots but treats the parts of one defect as independent.
    Shots whose mask is empty contribute no crop (their type is still listed,
    and sampling it raises ``MaskError``).
    """

    def __init__(
        self,
        masks_by_type: Mapping[str, Sequence[torch.Tensor]],
        augmentation: MaskAugmentation | None = None,
    ) -> None:
        self._masks: dict[str, list[torch.Tensor]] = {}
        for name, masks in sorted(masks_by_type.items()):
            binary = [to_bool_mask(mask, name=f"mask of defect type {name!r}") for mask in masks]
            self._masks[name] = [tight_crop(mask) for mask in binary if bool(mask.any())]
        self.augmentation = augmentation if augmentation is not None else MaskAugmentation()

    @classmethod
    def from_shots(
        cls,
        shots: Sequence[AnomalySample],
        *,
        split_components: bool = False,
        min_component_area: int = 4,
        augmentation: MaskAugmentation | None = None,
    ) -> ShotMaskBank:
        """Collect the shots' binarised masks per defect type, cropped to their tight bounding boxes."""
        masks_by_type: dict[str, list[torch.Tensor]] = {}
        for shot in shots:
            if not shot.is_anomalous:
                raise InvalidInputError(
                    "a normal sample was passed as a defect shot",
                    path=shot.image_path,
                    fix="pass only anomalous samples (label 1) to ShotMaskBank.from_shots",
                )
            crops = masks_by_type.setdefault(shot.defect_type, [])
            if not bool(shot.mask.any()):
                continue
            if split_components:
                crops.extend(_components(shot.mask, min_component_area))
            else:
                crops.append(tight_crop(shot.mask))
        return cls(masks_by_type, augmentation=augmentation)

    @property
    def defect_types(self) -> list[str]:
        """Defect type names, sorted (so type indices do not depend on shot order)."""
        return list(self._masks)

    def masks(self, defect_type: str) -> list[torch.Tensor]:
        """The unaugmented crops of ``defect_type`` (bool, tight bounding boxes)."""
        if defect_type not in self._masks:
            raise UnknownDefectTypeError(
                f"unknown defect type {defect_type!r}; the mask bank knows {self.defect_types}",
                fix="use one of the known types, or add shots of that type",
            )
        return list(self._masks[defect_type])

    def sample(self, defect_type: str, generator: torch.Generator | None = None) -> torch.Tensor:
        """A random shot crop of ``defect_type`` with random geometric augmentation (bool, tight bbox, non-empty)."""
        crops = self.masks(defect_type)
        if not crops:
            raise MaskError(
                f"defect type {defect_type!r} has no non-empty shot mask to sample from",
                fix="add at least one shot of this type whose mask marks the defect",
            )
        index = int(torch.randint(len(crops), (1,), generator=generator))
        return self.augmentation(crops[index], generator)

    def __repr__(self) -> str:
        counts = ", ".join(f"{name}: {len(crops)}" for name, crops in self._masks.items())
        return f"{type(self).__name__}({{{counts}}})"


def _components(mask: torch.Tensor, min_area: int) -> list[torch.Tensor]:
    """One tight crop per 8-connected component of at least ``min_area`` px (the largest if none is)."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask.numpy().astype(np.uint8), connectivity=8)
    areas = stats[1:, cv2.CC_STAT_AREA]
    keep = [i + 1 for i, area in enumerate(areas) if area >= min_area] or [int(np.argmax(areas)) + 1]
    crops = []
    for label in keep:
        x, y, w, h = (int(v) for v in stats[label, :4])
        crops.append(torch.from_numpy(labels[y : y + h, x : x + w] == label))
    return crops


def place_mask(
    crop: torch.Tensor,
    image_size: tuple[int, int],
    region: torch.Tensor | None = None,
    generator: torch.Generator | None = None,
    *,
    min_inside_fraction: float = 1.0,
    centres: torch.Tensor | None = None,
) -> torch.Tensor:
    """Put ``crop`` at a random position fully inside an image of ``image_size`` (H, W); bool ``[H, W]``.

    With ``region`` (bool ``[H, W]``, the allowed area) only positions where at
    least ``min_inside_fraction`` of the crop's pixels fall inside the region
    are drawn; if no position reaches it, one of the best positions is used.
    A crop larger than the image (or than the region's bounding box) is first
    shrunk, keeping its aspect ratio, so it can fit at all. ``centres`` (bool
    ``[H, W]``) further keeps the positions whose crop centre lies in it, where
    any does; it never changes the crop's size.
    """
    crop = to_bool_mask(crop, name="crop")
    if not bool(crop.any()):
        raise MaskError("cannot place an empty mask crop", fix="pass a crop with at least one True pixel")
    height, width = (int(s) for s in image_size)
    if height < 1 or width < 1:
        raise InvalidInputError(f"image_size must be positive (H, W), got {image_size}")
    if not 0.0 <= min_inside_fraction <= 1.0:
        raise InvalidInputError(
            f"min_inside_fraction must lie in [0, 1], got {min_inside_fraction}",
            fix="use 1.0 for 'entirely inside the region'",
        )
    bounds = (height, width)
    if region is not None:
        region = to_bool_mask(region, name="region")
        if tuple(region.shape) != (height, width):
            raise MaskError(
                f"region has size {tuple(region.shape)} but image_size is {(height, width)}",
                fix="pass a region mask at the image's resolution",
            )
        if not bool(region.any()):
            raise MaskError(
                "the allowed region is empty, so there is nowhere to place the defect",
                fix="pass region=None, or a region that marks part of the image (e.g. foreground_region(...))",
            )
        bounds = tuple(tight_crop(region).shape)
    if centres is not None and tuple(centres.shape) != (height, width):
        raise MaskError(
            f"centres has size {tuple(centres.shape)} but image_size is {(height, width)}",
            fix="pass the allowed centres at the image's resolution",
        )
    crop = tight_crop(_fit_within(crop, bounds))
    crop_h, crop_w = crop.shape

    if region is None and centres is None:
        top = int(torch.randint(height - crop_h + 1, (1,), generator=generator))
        left = int(torch.randint(width - crop_w + 1, (1,), generator=generator))
    else:
        if region is None:
            allowed = np.ones((height - crop_h + 1, width - crop_w + 1), dtype=bool)
        else:
            inside = _inside_counts(region, crop) / float(crop.sum())
            allowed = inside >= min_inside_fraction - 1e-9
            if not allowed.any():
                allowed = inside >= inside.max() - 1e-9
        if centres is not None:
            centred = _centred_in(to_bool_mask(centres, name="centres"), allowed.shape, crop_h, crop_w)
            if (allowed & centred).any():
                allowed = allowed & centred
        tops, lefts = np.nonzero(allowed)
        pick = int(torch.randint(len(tops), (1,), generator=generator))
        top, left = int(tops[pick]), int(lefts[pick])

    placed = torch.zeros(height, width, dtype=torch.bool)
    placed[top : top + crop_h, left : left + crop_w] = crop
    return placed


def _centred_in(centres: torch.Tensor, positions: tuple[int, int], crop_h: int, crop_w: int) -> np.ndarray:
    """For every top-left position (``positions`` = its grid's shape), whether the crop's centre lies in ``centres``."""
    rows, cols = positions
    return centres.numpy()[crop_h // 2 : crop_h // 2 + rows, crop_w // 2 : crop_w // 2 + cols]


def _fit_within(crop: torch.Tensor, bounds: tuple[int, int]) -> torch.Tensor:
    """``crop`` shrunk (aspect kept) so it fits in ``bounds``; unchanged when it already fits."""
    factor = min(bounds[0] / crop.shape[0], bounds[1] / crop.shape[1])
    if factor >= 1:
        return crop
    height, width = (max(1, min(limit, round(side * factor))) for side, limit in zip(crop.shape, bounds, strict=True))
    return resize_crop(crop, (height, width))


def _inside_counts(region: torch.Tensor, crop: torch.Tensor) -> np.ndarray:
    """For every top-left position, how many crop pixels fall inside ``region`` (``[H-h+1, W-w+1]``).

    OpenCV's template matching computes this cross-correlation with a DFT for
    large crops, which is orders of magnitude faster than a direct convolution.
    """
    counts = cv2.matchTemplate(region.numpy().astype(np.float32), crop.numpy().astype(np.float32), cv2.TM_CCORR)
    return np.rint(counts)

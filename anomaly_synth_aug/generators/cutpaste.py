"""CutPaste (Li et al., CVPR 2021): a colour-jittered patch of the image pasted elsewhere in it.

"normal" cuts a rectangle of random area and aspect ratio; "scar" a thin
rectangle rotated by a random angle. Paper defaults (for 256 px images) are
kept: area ratio 0.02-0.15, aspect ratio in [0.3, 1/0.3], scars 2-16 px wide,
10-25 px long, rotated within +-45 degrees, jitter 0.1.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
from torchvision import tv_tensors
from torchvision.transforms import v2

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators._patch_ops import blend_patch, random_int, random_top_left, random_uniform
from anomaly_synth_aug.generators.classic import ClassicGenerator, checked_range
from anomaly_synth_aug.utils.random import seeded_global_rng

CutPasteVariant = Literal["normal", "scar", "both"]
CUTPASTE_NORMAL = "cutpaste_normal"
CUTPASTE_SCAR = "cutpaste_scar"
_VARIANT_TYPES: dict[str, list[str]] = {
    "normal": [CUTPASTE_NORMAL],
    "scar": [CUTPASTE_SCAR],
    "both": [CUTPASTE_NORMAL, CUTPASTE_SCAR],
}


class CutPasteGenerator(ClassicGenerator):
    """Cut a patch from the image, colour-jitter it, paste it at another place.

    Args:
        variant: "normal" (rectangles), "scar" (thin rotated rectangles) or "both" (either, at random).
        area_ratio: patch area as a fraction of the image area ("normal").
        aspect_ratio: patch height/width is log-uniform in ``[aspect_ratio, 1 / aspect_ratio]`` ("normal").
        scar_width: scar width range in pixels.
        scar_length: scar length range in pixels.
        scar_rotation: scars are rotated uniformly within +- this many degrees.
        color_jitter: brightness, contrast, saturation and hue jitter strength of the pasted patch.
    """

    def __init__(
        self,
        variant: CutPasteVariant = "both",
        area_ratio: tuple[float, float] = (0.02, 0.15),
        aspect_ratio: float = 0.3,
        scar_width: tuple[int, int] = (2, 16),
        scar_length: tuple[int, int] = (10, 25),
        scar_rotation: float = 45.0,
        color_jitter: float = 0.1,
    ) -> None:
        super().__init__()
        if variant not in _VARIANT_TYPES:
            raise InvalidInputError(
                f"unknown CutPaste variant {variant!r}", fix=f"use one of {sorted(_VARIANT_TYPES)}"
            )
        self.variant = variant
        self.area_ratio = checked_range("area_ratio", area_ratio, float, low=0.0, high=1.0)
        self.aspect_ratio = float(aspect_ratio)
        if not 0.0 < self.aspect_ratio <= 1.0:
            raise InvalidInputError(f"aspect_ratio must be in (0, 1], got {aspect_ratio}", fix="e.g. 0.3")
        self.scar_width = checked_range("scar_width", scar_width, int, low=1)
        self.scar_length = checked_range("scar_length", scar_length, int, low=1)
        self.scar_rotation = float(scar_rotation)
        self.color_jitter = float(color_jitter)
        strength = self.color_jitter
        self._jitter = v2.ColorJitter(
            brightness=strength, contrast=strength, saturation=strength, hue=min(strength, 0.5)
        )
        self._rotate = v2.RandomRotation(self.scar_rotation, expand=True)

    @property
    def defect_types(self) -> list[str]:
        return list(_VARIANT_TYPES[self.variant])

    def _synthesize(
        self,
        image: torch.Tensor,
        placement: torch.Tensor | None,
        defect_type: str,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = image.shape[-2:]
        if defect_type == CUTPASTE_SCAR:
            patch_h = min(height, random_int(generator, self.scar_length[0], self.scar_length[1] + 1))
            patch_w = min(width, random_int(generator, self.scar_width[0], self.scar_width[1] + 1))
        else:
            area = random_uniform(generator, *self.area_ratio) * height * width
            log_ratio = math.log(self.aspect_ratio)
            aspect = math.exp(random_uniform(generator, log_ratio, -log_ratio))
            patch_h = min(height, max(1, round(math.sqrt(area * aspect))))
            patch_w = min(width, max(1, round(math.sqrt(area / aspect))))
        top, left = random_int(generator, 0, height - patch_h + 1), random_int(generator, 0, width - patch_w + 1)
        patch = tv_tensors.Image(image[:, top : top + patch_h, left : left + patch_w])
        shape = tv_tensors.Mask(torch.ones((patch_h, patch_w), dtype=torch.bool))
        with seeded_global_rng(generator):
            if defect_type == CUTPASTE_SCAR:
                patch, shape = self._rotate(patch, shape)
                patch, shape = patch[:, :height, :width], shape[:height, :width]
            patch = self._jitter(patch)
        top, left = random_top_left((height, width), tuple(shape.shape), placement, generator)
        return blend_patch(image, patch.as_subclass(torch.Tensor), shape.as_subclass(torch.Tensor).float(), top, left)


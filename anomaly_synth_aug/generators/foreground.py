"""Where the object is, so that defects of object categories are placed on it.

A screw on a plain background must get its defects on the screw; a textured tile has no
background at all. ``foreground_region`` estimates the object in one image (or allows everything
when the image does not split clearly into object and background), and ``defects_lie_on_objects``
lets the shots decide whether the category is an object category at all. The diffusion generator
and the real-shot paste baseline place defects with them, so the comparison between them is fair.

Example:
    >>> if defects_lie_on_objects(shots):
    ...     allowed = foreground_region(image, **OBJECT_THRESHOLDS)
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np
import torch

from anomaly_synth_aug.data.sample import AnomalySample, to_rgb_float

__all__ = ["OBJECT_THRESHOLDS", "defects_lie_on_objects", "foreground_region"]


def foreground_region(
    image: torch.Tensor,
    *,
    enabled: bool = True,
    min_separability: float = 0.85,
    min_background_border: float = 0.8,
    min_object_fraction: float = 0.05,
    blur_sigma: float = 2.0,
) -> torch.Tensor:
    """Estimate where the object is (bool ``[H, W]``) so defects can be kept on it.

    Heuristic: Otsu-threshold the blurred grayscale image; of the two sides,
    the background is the one that covers more of the image border (objects
    are photographed inside the frame, the background surrounds them). The
    object side is cleaned by a morphological opening and closing, reduced to
    its largest connected component and hole-filled (defects inside the object
    belong to it).

    The split is trusted only when it is clear-cut: Otsu's separability (share
    of the intensity variance explained by the two classes) is at least
    ``min_separability``, the background covers at least
    ``min_background_border`` of the border pixels, and the object covers at
    least ``min_object_fraction`` of the image. Otherwise the image is taken
    as a full-surface texture (e.g. Magnetic Tile) and everything is allowed.
    ``enabled=False`` skips the estimate and allows everything.
    """
    rgb = to_rgb_float(image, name="image")
    height, width = rgb.shape[-2:]
    everywhere = torch.ones(height, width, dtype=torch.bool)
    if not enabled or height < 3 or width < 3:
        return everywhere
    gray = (rgb.mean(0).cpu().numpy() * 255).astype(np.float32)  # shots may live on a GPU; the mask is on the CPU
    if blur_sigma > 0:
        gray = cv2.GaussianBlur(gray, (0, 0), blur_sigma)
    gray_u8 = np.clip(np.rint(gray), 0, 255).astype(np.uint8)
    if int(gray_u8.max()) == int(gray_u8.min()):
        return everywhere
    threshold, _ = cv2.threshold(gray_u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    bright = gray_u8 > threshold
    if _otsu_separability(gray_u8, bright) < min_separability:
        return everywhere

    border = np.concatenate([bright[0], bright[-1], bright[1:-1, 0], bright[1:-1, -1]])
    bright_border = float(border.mean())
    obj, background_border = (~bright, bright_border) if bright_border > 0.5 else (bright, 1.0 - bright_border)
    if background_border < min_background_border:
        return everywhere

    radius = max(1, round(min(height, width) / 100))
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))
    obj_u8 = cv2.morphologyEx(obj.astype(np.uint8), cv2.MORPH_OPEN, kernel)
    obj_u8 = cv2.morphologyEx(obj_u8, cv2.MORPH_CLOSE, kernel)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(obj_u8, connectivity=8)
    if count < 2:
        return everywhere
    largest = 1 + int(np.argmax(stats[1:, cv2.CC_STAT_AREA]))
    obj = _fill_holes(labels == largest)
    if obj.mean() < min_object_fraction:
        return everywhere
    return torch.from_numpy(obj)


#: Looser thresholds of ``foreground_region`` for a category whose shots show it is an object on a background.
OBJECT_THRESHOLDS: dict[str, float] = {"min_separability": 0.6, "min_background_border": 0.9}


def defects_lie_on_objects(shots: Sequence[AnomalySample]) -> bool:
    """Whether the shots show an object category: their defects sit on an object that a background surrounds.

    Per-image thresholds cannot tell a screw on a plain background from a textured tile on every
    dataset, but the shots can: in an object category most shot images split cleanly into an object
    and a background that covers the border (``foreground_region`` with ``OBJECT_THRESHOLDS``), and
    their defects lie on the object. True when at least half the shots split and the median share of
    defect pixels on the object is at least a half.
    """
    shares = []
    for shot in shots:
        region = foreground_region(shot.image, **OBJECT_THRESHOLDS)
        if bool(region.all()):
            continue
        shares.append(float((shot.mask & region).sum()) / max(1, int(shot.mask.sum())))
    return len(shares) >= max(1, len(shots) / 2) and float(np.median(shares)) >= 0.5


def _otsu_separability(gray: np.ndarray, upper: np.ndarray) -> float:
    """Between-class over total variance of the two-class split (1 = perfectly two-toned)."""
    values = gray.astype(np.float64)
    total = values.var()
    if total == 0 or upper.all() or not upper.any():
        return 0.0
    weight = upper.mean()
    between = weight * (1 - weight) * (values[upper].mean() - values[~upper].mean()) ** 2
    return float(between / total)


def _fill_holes(mask: np.ndarray) -> np.ndarray:
    """``mask`` with every background area that does not reach the image border filled in."""
    padded = np.pad(mask, 1).astype(np.uint8)
    flood = padded.copy()
    cv2.floodFill(flood, None, (0, 0), 1)
    return (padded | (1 - flood)).astype(bool)[1:-1, 1:-1]

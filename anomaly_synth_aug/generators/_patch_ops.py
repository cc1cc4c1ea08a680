"""Patch geometry, blending and randomness shared by the classic generators.

Every helper takes the per-image ``torch.Generator`` explicitly so one seed
fixes the whole output, and works on float ``[3, H, W]`` images in [0, 1] and
bool ``[H, W]`` masks (the package's sample format).
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

#: Largest per-pixel change that vanishes when an image read from 8-bit files is saved as 8-bit
#: again (half a grey level): labelling it would make the mask claim a defect that is not there.
#: ``keep_visible_change`` compares the 8-bit levels themselves, which also holds off that grid.
MIN_VISIBLE_CHANGE = 0.5 / 255

CloneMode = Literal["normal", "mixed"]
_CLONE_FLAGS: dict[str, int] = {"normal": cv2.NORMAL_CLONE, "mixed": cv2.MIXED_CLONE}


class Box(NamedTuple):
    """An axis-aligned window ``[top, top + height) x [left, left + width)``."""

    top: int
    left: int
    height: int
    width: int

    @property
    def slices(self) -> tuple[slice, slice]:
        return slice(self.top, self.top + self.height), slice(self.left, self.left + self.width)


# ------------------------------------------------------------------ randomness
def random_int(generator: torch.Generator, low: int, high: int) -> int:
    """A uniform integer in ``[low, high)``."""
    return int(torch.randint(low, high, (1,), generator=generator).item())


def random_uniform(generator: torch.Generator, low: float, high: float) -> float:
    """A uniform float in ``[low, high)``."""
    return low + (high - low) * float(torch.rand((), generator=generator))


# -------------------------------------------------------------------- geometry
def bounding_box(mask: torch.Tensor) -> Box:
    """Tight box around the True pixels of a non-empty ``[H, W]`` mask."""
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    if rows.numel() == 0:
        raise ValueError("bounding_box of an empty mask")
    top, left = int(rows[0]), int(cols[0])
    return Box(top, left, int(rows[-1]) - top + 1, int(cols[-1]) - left + 1)


def expand_box(box: Box, image_size: tuple[int, int], *, margin: int = 0, min_size: int = 0) -> Box:
    """Grow ``box`` by ``margin`` per side and to at least ``min_size``, shifted to stay inside the image."""

    def grow(start: int, length: int, limit: int) -> tuple[int, int]:
        target = min(limit, max(length + 2 * margin, min_size))
        return min(max(start - (target - length) // 2, 0), limit - target), target

    top, height = grow(box.top, box.height, image_size[0])
    left, width = grow(box.left, box.width, image_size[1])
    return Box(top, left, height, width)


def random_top_left(
    image_size: tuple[int, int],
    patch_size: tuple[int, int],
    placement: torch.Tensor | None,
    generator: torch.Generator,
) -> tuple[int, int]:
    """Where to put a patch: anywhere inside the image, or centred on a random placement pixel.

    The patch always lies fully inside the image (it is shifted inward near the borders).
    """
    (height, width), (patch_h, patch_w) = image_size, patch_size
    if patch_h > height or patch_w > width:
        raise ValueError(f"patch {patch_size} does not fit into image {image_size}")
    if placement is None:
        return random_int(generator, 0, height - patch_h + 1), random_int(generator, 0, width - patch_w + 1)
    rows, cols = torch.nonzero(placement, as_tuple=True)
    pick = random_int(generator, 0, rows.numel())
    top = min(max(int(rows[pick]) - patch_h // 2, 0), height - patch_h)
    left = min(max(int(cols[pick]) - patch_w // 2, 0), width - patch_w)
    return top, left


def fit_into(patch_size: tuple[int, int], image_size: tuple[int, int]) -> float:
    """Scale factor (<= 1) that makes a patch fit into the image."""
    return min(1.0, image_size[0] / patch_size[0], image_size[1] / patch_size[1])


# ------------------------------------------------------------------------ masks
def dilate(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """Grow a bool ``[H, W]`` mask by ``pixels`` (square structuring element)."""
    if pixels <= 0:
        return mask.clone()
    grown = F.max_pool2d(mask[None, None].float(), 2 * pixels + 1, stride=1, padding=pixels)
    return grown[0, 0] > 0


def feather(mask: torch.Tensor, sigma: float) -> torch.Tensor:
    """Alpha map: 1 on the mask, a Gaussian fall-off of width ~3 sigma outside it (hides the paste seam)."""
    alpha = mask.float()
    if sigma <= 0:
        return alpha
    kernel = 2 * math.ceil(3 * sigma) + 1
    half = kernel // 2
    if min(alpha.shape) <= half:  # too thin for the blur's reflect padding: zeros around it first
        padded = F.pad(alpha[None, None], (half,) * 4)[0]
        blurred = TF.gaussian_blur(padded, [kernel, kernel], [sigma, sigma])[0, half:-half, half:-half]
        return torch.maximum(blurred, alpha)
    blurred = TF.gaussian_blur(alpha[None], [kernel, kernel], [sigma, sigma])[0]
    return torch.maximum(blurred, alpha)


# --------------------------------------------------------------------- blending
def blend_patch(
    image: torch.Tensor, patch: torch.Tensor, alpha: torch.Tensor, top: int, left: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """Alpha-blend ``patch`` onto a copy of ``image`` at ``(top, left)``.

    Returns the blended image and the region the blend may have touched (``alpha > 0``).
    A binary alpha is an exact paste: pixels with alpha 0 keep their value bit for bit.
    """
    box = Box(top, left, *patch.shape[-2:])
    rows, cols = box.slices
    blended = image.clone()
    blended[:, rows, cols] = image[:, rows, cols] * (1 - alpha) + patch * alpha
    region = torch.zeros(image.shape[-2:], dtype=torch.bool)
    region[rows, cols] = alpha > 0
    return blended, region


def keep_visible_change(
    image: torch.Tensor, candidate: torch.Tensor, region: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Enforce the generator contract: the returned mask is exactly where the returned image changed.

    Pixels outside ``region`` and changes that vanish at 8 bits (both round to the same grey level:
    for images read from 8-bit files, a change of at most ``MIN_VISIBLE_CHANGE``) are restored from
    ``image``, so ``(result != image).any(0) == mask`` holds bit for bit and the mask claims no
    change that saving the image would erase.
    """
    candidate = candidate.clamp(0.0, 1.0)
    mask = region & (_grey_levels(candidate) != _grey_levels(image)).any(dim=0)
    return torch.where(mask, candidate, image), mask


def _grey_levels(image: torch.Tensor) -> torch.Tensor:
    """The 8-bit levels an image in [0, 1] is saved at."""
    return (image * 255).round()


def to_uint8_hwc(image: torch.Tensor) -> np.ndarray:
    """Float ``[3, H, W]`` in [0, 1] to the ``uint8 [H, W, 3]`` array OpenCV expects."""
    return (image * 255).round().clamp(0, 255).to(torch.uint8).permute(1, 2, 0).contiguous().numpy()


def from_uint8_hwc(array: np.ndarray) -> torch.Tensor:
    """``uint8 [H, W, 3]`` back to float ``[3, H, W]`` in [0, 1]."""
    return torch.from_numpy(np.ascontiguousarray(array)).permute(2, 0, 1).float() / 255


def seamless_clone(
    destination: torch.Tensor, source: torch.Tensor, clone_mask: torch.Tensor, mode: CloneMode
) -> torch.Tensor:
    """Poisson-blend ``source`` into ``destination`` where ``clone_mask`` is set (``cv2.seamlessClone``).

    ``source`` is aligned with ``destination`` (same size, the content already at
    its target position). Two OpenCV details are handled here: it zeroes the
    mask's outermost image row/column (so masks touching the border would shift
    the result by a pixel; we pad by one), and OpenCV 5 writes into the mask it is
    given (so it always gets a fresh array). Only interior mask pixels can change;
    masks under 3x3 pixels are left alone (OpenCV rejects them).
    """
    box = bounding_box(clone_mask)
    if box.height < 3 or box.width < 3:
        return destination.clone()
    dst = cv2.copyMakeBorder(to_uint8_hwc(destination), 1, 1, 1, 1, cv2.BORDER_REFLECT)
    src = cv2.copyMakeBorder(to_uint8_hwc(source), 1, 1, 1, 1, cv2.BORDER_REFLECT)
    mask = np.pad(clone_mask.numpy().astype(np.uint8) * 255, 1)
    # With the centre at (left + w // 2, top + h // 2) OpenCV's target window equals the mask's box.
    center = (box.left + 1 + box.width // 2, box.top + 1 + box.height // 2)
    cloned = cv2.seamlessClone(src, dst, mask, center, _CLONE_FLAGS[mode])
    return from_uint8_hwc(cloned[1:-1, 1:-1])

"""Crop geometry shared by the mask bank and the mask prior.

A *crop* is a bool mask cut to its tight bounding box, so its shape is the
defect's extent; placement later decides where in an image it goes.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def tight_crop(mask: torch.Tensor) -> torch.Tensor:
    """``mask`` cut to the bounding box of its True pixels (unchanged when empty)."""
    rows = torch.nonzero(mask.any(1)).flatten()
    cols = torch.nonzero(mask.any(0)).flatten()
    if rows.numel() == 0:
        return mask
    return mask[int(rows[0]) : int(rows[-1]) + 1, int(cols[0]) : int(cols[-1]) + 1]


def binarise(coverage: torch.Tensor, threshold: float = 0.5) -> torch.Tensor:
    """``coverage >= threshold``, or, if that marks nothing, everything at least half the peak.

    Thin shapes can fall below the threshold after shrinking or decoding; then
    the strongest pixels still count, so a scratch stays a (thinner) scratch
    instead of vanishing. Never empty unless ``coverage`` is all zero.
    """
    binary = coverage >= threshold
    if bool(binary.any()):
        return binary
    peak = coverage.max()
    return (coverage >= peak * 0.5) & (coverage > 0)


def resize_crop(crop: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Resize a bool crop to ``size`` (antialiased, re-binarised at 0.5), keeping it non-empty."""
    coverage = F.interpolate(crop[None, None].float(), size=size, mode="bilinear", antialias=True)[0, 0]
    return binarise(coverage)

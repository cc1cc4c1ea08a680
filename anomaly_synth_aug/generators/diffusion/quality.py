"""Check every generated defect before it reaches a user: published generators ship failures, ours must not.

Two tools, both comparing the normal image ``before`` with the generated
``after`` (float ``[3, H, W]`` in ``[0, 1]``):

* ``refine_mask`` makes the mask follow what actually changed (SeaS refines
  masks from features; we use the pixel change itself), so the returned mask
  is pixel-exact to the defect rather than to the placement;
* ``QualityFilter`` rejects samples whose defect is invisible or whose
  background changed, and ``QualityReport`` counts why, for
  ``GeneratedBatch.stats``.

All thresholds are in intensity units of ``[0, 1]`` images (0.04 ~ 10 grey
levels), measured as the largest change over the colour channels.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import cv2
import numpy as np
import torch

from anomaly_synth_aug.data.sample import to_bool_mask
from anomaly_synth_aug.errors import InvalidInputError, MaskError

__all__ = ["QualityFilter", "QualityReport", "QualityVerdict", "composite", "pixel_change", "refine_mask"]

#: A per-pixel change at least this large (in [0, 1] units, ~10 grey levels) counts as visible.
NOTICEABLE_CHANGE = 0.04


def pixel_change(before: torch.Tensor, after: torch.Tensor) -> torch.Tensor:
    """Per-pixel change ``[H, W]``: the largest absolute difference over the channels."""
    if before.shape != after.shape or before.ndim != 3:
        raise InvalidInputError(
            f"before and after must be images of one shape [C, H, W], got {tuple(before.shape)} and "
            f"{tuple(after.shape)}",
            fix="compare a generated image with the normal image it was made from",
        )
    return (after.float() - before.float()).abs().amax(dim=0)


def _mask_for(mask: torch.Tensor, change: torch.Tensor) -> torch.Tensor:
    mask = to_bool_mask(mask, name="mask")
    if mask.shape != change.shape:
        raise MaskError(
            f"mask size {tuple(mask.shape)} differs from image size {tuple(change.shape)}",
            fix="pass the mask at the image's resolution",
        )
    return mask


def _disk(radius: int) -> np.ndarray:
    return cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * radius + 1, 2 * radius + 1))


def refine_mask(
    before: torch.Tensor,
    after: torch.Tensor,
    mask: torch.Tensor,
    dilation: int = 3,
    threshold: float = NOTICEABLE_CHANGE,
    *,
    min_component_area: int = 4,
    max_hole_area: int = 16,
) -> torch.Tensor:
    """Where the image really changed, near the placement mask (bool ``[H, W]``, possibly empty).

    A pixel is kept when its change (largest absolute channel difference) is
    above ``threshold`` and it lies in ``mask`` dilated by ``dilation`` px (a
    generated defect may soften the placement's edge, but anything farther is
    not this defect). Speckles smaller than ``min_component_area`` px are
    dropped and holes up to ``max_hole_area`` px are closed, so the mask reads
    as one defect. The result is always inside the dilated mask.

    The result may leave out faint or speckle changes, so paste with
    ``composite(before, after, refined)`` to keep the image change inside the mask.
    """
    if dilation < 0 or not 0.0 <= threshold <= 1.0:
        raise InvalidInputError(
            f"refine_mask needs dilation >= 0 and threshold in [0, 1], got {dilation} and {threshold}",
            fix="e.g. dilation=3, threshold=0.04",
        )
    change = pixel_change(before, after)
    allowed = _mask_for(mask, change).numpy().astype(np.uint8)
    if dilation > 0:
        allowed = cv2.dilate(allowed, _disk(dilation))
    changed = ((change > threshold).numpy() & allowed.astype(bool)).astype(np.uint8)
    changed = _drop_small_components(changed, min_component_area)
    changed = 1 - _drop_small_components(1 - changed, max_hole_area + 1)  # holes are small background parts
    return torch.from_numpy(changed.astype(bool) & allowed.astype(bool))


def _drop_small_components(binary: np.ndarray, min_area: int) -> np.ndarray:
    """``binary`` (uint8 0/1) without 8-connected components smaller than ``min_area`` px."""
    if min_area <= 1:
        return binary
    count, labels, stats, _ = cv2.connectedComponentsWithStats(binary, connectivity=8)
    keep = stats[:, cv2.CC_STAT_AREA] >= min_area
    keep[0] = False  # label 0 is the other value
    return keep[labels].astype(np.uint8)


def composite(before: torch.Tensor, after: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``after`` inside ``mask`` and ``before`` everywhere else: the image change is then exactly the mask's."""
    return torch.where(to_bool_mask(mask, name="mask")[None], after, before)


@dataclass(frozen=True)
class QualityVerdict:
    """Outcome of ``QualityFilter.assess``; ``reason`` is ``"ok"`` when accepted."""

    accepted: bool
    reason: str
    inside_change: float
    outside_change: float
    changed_fraction: float = 0.0


@dataclass(frozen=True)
class QualityFilter:
    """Accept a generated sample only if its defect is visible and nothing else changed.

    Measured per sample (change = largest absolute channel difference):

    * ``inside_change``: mean change over the mask pixels;
    * ``changed_fraction``: share of mask pixels changed by at least ``noticeable_change``;
    * ``outside_change``: largest change outside the mask (the contract is
      pixel-exact, so one stray pixel counts; the default tolerance covers
      8-bit rounding).

    Reasons, in the order checked: ``"invalid_pixels"`` (NaN/inf or outside
    [0, 1]), ``"empty_mask"``, ``"background_changed"``,
    ``"defect_not_visible"``, ``"defect_incomplete"`` (too little of the mask
    changed), else ``"ok"``.
    """

    min_inside_change: float = 0.03
    max_outside_change: float = 2.0 / 255.0
    min_changed_fraction: float = 0.25
    noticeable_change: float = NOTICEABLE_CHANGE

    def __post_init__(self) -> None:
        for name in ("min_inside_change", "max_outside_change", "min_changed_fraction", "noticeable_change"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise InvalidInputError(f"QualityFilter.{name} must lie in [0, 1], got {value}")

    def assess(self, before: torch.Tensor, after: torch.Tensor, mask: torch.Tensor) -> QualityVerdict:
        """Judge one generated image ``after`` made from ``before`` with defect ``mask``."""
        change = pixel_change(before, after)
        mask = _mask_for(mask, change)
        if not bool(torch.isfinite(after).all()) or float(after.min()) < 0.0 or float(after.max()) > 1.0:
            return QualityVerdict(False, "invalid_pixels", float("nan"), float("nan"))
        inside = change[mask]
        outside = change[~mask]
        inside_change = float(inside.mean()) if inside.numel() else 0.0
        outside_change = float(outside.max()) if outside.numel() else 0.0
        changed_fraction = float((inside >= self.noticeable_change).float().mean()) if inside.numel() else 0.0
        if not inside.numel():
            reason = "empty_mask"
        elif outside_change > self.max_outside_change:
            reason = "background_changed"
        elif inside_change < self.min_inside_change:
            reason = "defect_not_visible"
        elif changed_fraction < self.min_changed_fraction:
            reason = "defect_incomplete"
        else:
            reason = "ok"
        return QualityVerdict(reason == "ok", reason, inside_change, outside_change, changed_fraction)


@dataclass
class QualityReport:
    """Counts of accepted samples and of rejections by reason; merge across batches, log as a flat dict."""

    accepted: int = 0
    rejected: Counter[str] = field(default_factory=Counter)

    def add(self, verdict: QualityVerdict) -> QualityVerdict:
        """Count ``verdict`` and hand it back (so ``if report.add(f.assess(...)).accepted:`` reads well)."""
        if verdict.accepted:
            self.accepted += 1
        else:
            self.rejected[verdict.reason] += 1
        return verdict

    def merge(self, other: QualityReport) -> QualityReport:
        """A new report with both reports' counts."""
        return QualityReport(self.accepted + other.accepted, self.rejected + other.rejected)

    __add__ = merge

    @property
    def total(self) -> int:
        return self.accepted + sum(self.rejected.values())

    @property
    def acceptance_rate(self) -> float:
        """Accepted share of all assessed samples (1.0 when none were assessed)."""
        return self.accepted / self.total if self.total else 1.0

    def to_dict(self, prefix: str = "quality/") -> dict[str, Any]:
        """Flat scalars (loggable with ``LightningModule.log_dict``), e.g. ``quality/rejected/defect_not_visible``."""
        stats: dict[str, Any] = {
            f"{prefix}accepted": self.accepted,
            f"{prefix}rejected": sum(self.rejected.values()),
            f"{prefix}acceptance_rate": self.acceptance_rate,
        }
        stats.update({f"{prefix}rejected/{reason}": count for reason, count in sorted(self.rejected.items())})
        return stats

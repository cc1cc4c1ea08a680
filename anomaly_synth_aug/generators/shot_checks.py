"""The checks every few-shot defect sample passes before a generator learns from it.

A shot that is normal, untyped or has an empty mask would teach a generator nothing (or a wrong
type), and the mistake would only surface as odd samples much later; so ``AnomalyGenerator.fit``
refuses it at once, naming the file.

Example:
    >>> import torch
    >>> from anomaly_synth_aug.data.sample import AnomalySample
    >>> mask = torch.zeros(8, 8)
    >>> mask[2:4, 2:4] = 1
    >>> validate_shots([AnomalySample(image=torch.rand(3, 8, 8), mask=mask, defect_type="crack")])
"""

from __future__ import annotations

from collections.abc import Sequence

from anomaly_synth_aug.data.sample import NORMAL_TYPE, AnomalySample
from anomaly_synth_aug.errors import InvalidInputError, MaskError


def validate_shots(shots: Sequence[AnomalySample]) -> None:
    """Every few-shot defect sample must be anomalous, typed and have a non-empty mask."""
    for shot in shots:
        where = shot.mask_path or shot.image_path
        if not shot.is_anomalous:
            raise InvalidInputError(
                "a normal sample was passed as a defect shot",
                path=where,
                fix="pass normal images as normal_images, defect samples as shots",
            )
        if not shot.defect_type or shot.defect_type == NORMAL_TYPE:
            raise InvalidInputError(
                f"a defect shot has defect type {shot.defect_type!r}",
                path=where,
                fix=f"set defect_type to the defect's name (e.g. 'crack'); {NORMAL_TYPE!r} is reserved for normals",
            )
        if not bool(shot.mask.any()):
            raise MaskError(
                "defect shot has an empty mask",
                path=where,
                fix="drop this shot (e.g. masks that are entirely zero) or draw its defect region",
            )


__all__ = ["validate_shots"]

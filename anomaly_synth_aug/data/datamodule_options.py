"""The options of ``SyntheticAnomalyDataModule`` with a fixed set of values, and the checks of its arguments.

Kept apart so the datamodule reads as what it does; every check fails at construction, naming the
parameter, rather than deep inside ``setup`` minutes later.

Example:
    >>> TrainMode("cached")
    <TrainMode.cached: 'cached'>
"""

from __future__ import annotations

from enum import StrEnum

from anomaly_synth_aug.data.fewshot import check_shot_fraction
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.utils.choices import parse_choice


class TrainMode(StrEnum):
    """Where the training defects come from (see ``SyntheticAnomalyDataModule``'s ``mode``)."""

    online = "online"
    cached = "cached"
    shots = "shots"


class ValSplit(StrEnum):
    """What the validation set is (see ``SyntheticAnomalyDataModule``'s ``val_split``)."""

    synthetic = "synthetic"
    wrapped = "wrapped"
    none = "none"


def is_cached(mode: object) -> bool:
    return parse_choice(TrainMode, mode, "mode") == TrainMode.cached


def check_init_args(
    anomaly_ratio: float,
    mode: str,
    shot_fraction: float,
    val_split: str,
    val_split_ratio: float,
    mask_threshold: int,
    max_fit_normals: int,
    seed: int,
) -> None:
    """Fail at construction, naming the parameter, rather than deep inside ``setup``."""
    if not 0.0 <= anomaly_ratio <= 1.0:
        raise InvalidInputError(
            f"anomaly_ratio must be in [0, 1], got {anomaly_ratio}",
            fix="use e.g. 0.5 (half of the training normals get a synthetic defect), or 0 to disable",
        )
    parse_choice(TrainMode, mode, "mode")
    check_shot_fraction(shot_fraction)
    parse_choice(ValSplit, val_split, "val_split")
    if not 0.0 < val_split_ratio < 1.0:
        raise InvalidInputError(
            f"val_split_ratio must be in (0, 1), got {val_split_ratio}",
            fix="use e.g. 0.2 to hold back a fifth of the train normals for validation",
        )
    if not 0 <= mask_threshold < 255:
        raise InvalidInputError(
            f"mask_threshold must be in [0, 254], got {mask_threshold}", fix="use 127 (pixel > 127 is defect)"
        )
    if max_fit_normals < 1:
        raise InvalidInputError(
            f"max_fit_normals must be >= 1, got {max_fit_normals}", fix="use e.g. 64 normal images to fit the generator"
        )
    if seed < 0:
        raise InvalidInputError(f"seed must be >= 0, got {seed}", fix="pass a non-negative integer seed")


def check_shot_share_range(shot_share: float) -> None:
    """``shot_share`` is a share: in [0, 1] (the datamodule and ``ShotMixedDataset`` both check it)."""
    if not 0.0 <= shot_share <= 1.0:
        raise InvalidInputError(
            f"shot_share must be in [0, 1], got {shot_share}",
            fix="use e.g. 0.5: half of the anomalous training items are real shots, half generated defects",
        )


def check_shot_share(shot_share: float, mode: object, anomaly_ratio: float) -> None:
    """``shot_share`` is a share of the anomalous items' defects: there must be generated defects to share with."""
    check_shot_share_range(shot_share)
    if shot_share > 0.0 and parse_choice(TrainMode, mode, "mode") == TrainMode.shots:
        raise InvalidInputError(
            f"shot_share={shot_share} mixes shots into generated defects, but mode='shots' generates none",
            fix="use mode='online' or 'cached' with shot_share, or mode='shots' alone to train on the shots only",
        )
    if shot_share > 0.0 and anomaly_ratio == 0.0:
        raise InvalidInputError(
            f"shot_share={shot_share} has no anomalous items to share: anomaly_ratio is 0",
            fix="set anomaly_ratio > 0 (e.g. 0.5), or drop shot_share",
        )


__all__ = ["TrainMode", "ValSplit", "check_init_args", "check_shot_share", "check_shot_share_range", "is_cached"]

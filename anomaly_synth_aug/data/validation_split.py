"""Where ``SyntheticAnomalyDataModule``'s validation images come from.

Unless ``val_split="wrapped"``, the wrapper makes its own validation set, so the wrapped
datamodule's split would only take images away: ``from_test`` holds back a random half of the
test set (drawn with anomalib's own seed, random by default) that is then never evaluated, and
``from_train``/``synthetic`` take normals from training. ``release_wrapped_val_split`` turns those
off before the wrapped datamodule splits. ``hold_back_normals`` makes the synthetic validation
set's normals, never fewer than two: one stays normal and one gets a defect, or checkpoint and
threshold selection would run on a single class.

Example::

    release_wrapped_val_split(folder, ValSplit.synthetic)  # before folder.setup()
    train_normals, val_normals = hold_back_normals(folder.train_data, 0.2, seed=0)
"""

from __future__ import annotations

import logging
import math
from typing import TYPE_CHECKING

import torch
from anomalib.data import AnomalibDataModule
from anomalib.data.utils import ValSplitMode, random_split

from anomaly_synth_aug.data.datamodule_options import ValSplit
from anomaly_synth_aug.errors import InvalidInputError

if TYPE_CHECKING:
    from anomalib.data.datasets.base.image import AnomalibDataset

logger = logging.getLogger(__name__)

#: Wrapped validation modes that take test images or train normals away and give the wrapper nothing.
_TAKING_MODES = (ValSplitMode.FROM_TEST, ValSplitMode.FROM_TRAIN, ValSplitMode.SYNTHETIC)

#: One validation normal stays normal and one gets a defect.
MIN_VAL_NORMALS = 2


def release_wrapped_val_split(datamodule: AnomalibDataModule, val_split: ValSplit) -> None:
    """Set the wrapped datamodule's ``val_split_mode`` to ``none`` when the wrapper does not use its split."""
    mode = datamodule.val_split_mode
    if val_split == ValSplit.wrapped or mode not in _TAKING_MODES:
        return
    logger.info(
        "%s: val_split_mode '%s' set to 'none': val_split='%s' makes its own validation set, and the wrapped "
        "split would only take %s away.",
        type(datamodule).__name__,
        mode.value,
        val_split.value,
        "test images" if mode == ValSplitMode.FROM_TEST else "training normals",
    )
    datamodule.val_split_mode = ValSplitMode.NONE
    if getattr(datamodule, "_is_setup", False):  # a trainer set it up, split included: anomalib would keep that
        datamodule._is_setup = False


def hold_back_normals(
    train_normals: AnomalibDataset, ratio: float, *, seed: int
) -> tuple[AnomalibDataset, AnomalibDataset]:
    """Split the train normals into (train, validation): ``ratio`` of them, at least ``MIN_VAL_NORMALS``."""
    count = len(train_normals)
    if count < MIN_VAL_NORMALS + 1:
        raise InvalidInputError(
            f"val_split='synthetic' needs at least {MIN_VAL_NORMALS + 1} train normals ({MIN_VAL_NORMALS} held back "
            f"for validation, one or more to train on); the training set has {count}",
            fix="add train normals, or pass val_split='none' (no checkpoint or threshold selection) "
            "or val_split='wrapped' (the wrapped datamodule's own validation set)",
        )
    if math.floor(count * ratio) >= MIN_VAL_NORMALS:  # anomalib's size for the second subset
        train, val = random_split(train_normals, ratio, seed=seed)
        return train, val
    logger.warning(
        "val_split_ratio=%g of %d train normals holds back fewer than %d; holding back %d so that validation has "
        "a normal and a defective image.",
        ratio,
        count,
        MIN_VAL_NORMALS,
        MIN_VAL_NORMALS,
    )
    order = torch.randperm(count, generator=torch.Generator().manual_seed(seed)).tolist()
    return train_normals.subsample(order[MIN_VAL_NORMALS:]), train_normals.subsample(order[:MIN_VAL_NORMALS])

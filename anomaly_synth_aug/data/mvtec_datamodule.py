"""``mvtec_datamodule``: the wrapped datamodule of an MVTec-layout folder, scanned and validated first.

The CLI, the demo and the benchmark all build their datamodules this way: ``scan_mvtec_folder``
names a missing mask or a corrupt image before anything runs, ``mvtec_folder`` makes anomalib's
``Folder``, and ``SyntheticAnomalyDataModule`` applies the few-shot protocol.

Example:
    >>> datamodule = mvtec_datamodule("../shared/data/mvtec_screw", RealShotPasteGenerator(), seed=0)
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torchvision.transforms.v2 import Transform

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
from anomaly_synth_aug.data.mvtec_folder import mvtec_folder
from anomaly_synth_aug.generators.base import AnomalyGenerator


def mvtec_datamodule(
    root: str | Path,
    generator: AnomalyGenerator | None,
    *,
    train_batch_size: int = 8,
    eval_batch_size: int | None = None,
    num_workers: int = 0,
    train_augmentations: Transform | None = None,
    **wrapper_kwargs: Any,
) -> SyntheticAnomalyDataModule:
    """``SyntheticAnomalyDataModule`` over a scanned MVTec-layout folder (its few-shot split, its checkpoint key).

    ``wrapper_kwargs`` go to ``SyntheticAnomalyDataModule`` (``anomaly_ratio``, ``mode``, ``seed``, ...).
    """
    from anomaly_synth_aug.data.datamodule import (
        SyntheticAnomalyDataModule,  # the wrapper imports this module's layer
    )

    folder = mvtec_folder(
        root,
        train_batch_size=train_batch_size,
        eval_batch_size=eval_batch_size,
        num_workers=num_workers,
        train_augmentations=train_augmentations,
    )
    return SyntheticAnomalyDataModule(folder, generator=generator, **wrapper_kwargs)


__all__ = ["mvtec_datamodule"]

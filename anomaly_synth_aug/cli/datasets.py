"""From an MVTec-layout folder on the command line to the datamodules the commands work on."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anomalib.data import Folder

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
from anomaly_synth_aug.data.sample import NORMAL_TYPE
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators.base import AnomalyGenerator


def defect_types_in(root: Path) -> list[str]:
    """The defect type folders ``test/<type>`` of an MVTec-layout category (``good`` excluded)."""
    test_dir = root / "test"
    if not (root / "train" / NORMAL_TYPE).is_dir() or not test_dir.is_dir():
        raise InvalidInputError(
            "not an MVTec-layout category folder (needs train/good/ and test/<defect_type>/)",
            path=root,
            fix="point --data to a category folder with train/good, test/<type> and ground_truth/<type>",
        )
    types = sorted(p.name for p in test_dir.iterdir() if p.is_dir() and p.name != NORMAL_TYPE)
    if not types:
        raise InvalidInputError("no defect folders under test/", path=test_dir, fix="add test/<defect_type>/ images")
    return types


def mvtec_folder(root: str | Path, *, batch_size: int = 8, num_workers: int = 0) -> Folder:
    """anomalib's ``Folder`` over ``train/good``, ``test/<type>``, ``ground_truth/<type>``; named after the folder.

    anomalib's own validation split is off: ``SyntheticAnomalyDataModule`` builds validation itself.
    """
    root = Path(root)
    defect_types = defect_types_in(root)
    return Folder(
        name=root.name,
        root=root,
        normal_dir=f"train/{NORMAL_TYPE}",
        abnormal_dir=[f"test/{defect}" for defect in defect_types],
        normal_test_dir=f"test/{NORMAL_TYPE}" if (root / "test" / NORMAL_TYPE).is_dir() else None,
        mask_dir=[f"ground_truth/{defect}" for defect in defect_types],
        val_split_mode="none",
        train_batch_size=batch_size,
        eval_batch_size=batch_size,
        num_workers=num_workers,
    )


def synthetic_datamodule(
    root: str | Path, generator: AnomalyGenerator, *, batch_size: int = 8, num_workers: int = 0, **kwargs: Any
) -> SyntheticAnomalyDataModule:
    """``SyntheticAnomalyDataModule`` over an MVTec-layout folder (its few-shot split, its checkpoint key)."""
    folder = mvtec_folder(root, batch_size=batch_size, num_workers=num_workers)
    return SyntheticAnomalyDataModule(folder, generator=generator, **kwargs)

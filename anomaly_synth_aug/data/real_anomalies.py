"""The real images a wrapped anomalib datamodule holds: the defect records the few-shot split draws
from, and the checks of the held-out set that are made once, at setup, instead of after training.

Example::

    records = real_anomaly_records(folder)  # after folder.setup()
    shots, held_out = split_records(records, 1 / 3)
    check_test_masks(evaluation_dataset, mask_threshold=127)
    warn_if_batches_stretch(evaluation_dataset, batch_size=8)
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from anomalib.data.utils import TestSplitMode, ValSplitMode
from PIL import Image

from anomaly_synth_aug.data.dataset import row_mask_path
from anomaly_synth_aug.data.fewshot import DefectRecord
from anomaly_synth_aug.data.io import image_size, load_mask
from anomaly_synth_aug.data.sample import ANOMALOUS_LABEL
from anomaly_synth_aug.errors import InvalidInputError

if TYPE_CHECKING:
    from anomalib.data import AnomalibDataModule
    from torch.utils.data import Dataset

logger = logging.getLogger(__name__)

#: Validation modes of the wrapped datamodule whose val set holds real (test) images, so its
#: anomalies take part in the few-shot split; other modes hold train normals or anomalib's own
#: synthetic images, which must never become shots.
REAL_VAL_MODES = (ValSplitMode.FROM_TEST, ValSplitMode.SAME_AS_TEST, ValSplitMode.FROM_DIR)


def resolved(path: str | Path) -> str:
    return str(Path(path).resolve())


def real_anomaly_records(datamodule: AnomalibDataModule) -> list[DefectRecord]:
    """Real anomalies of the wrapped test set (and of its val set when that holds test images), once each."""
    datasets = [datamodule.test_data]
    wrapped_val = getattr(datamodule, "val_data", None)
    if wrapped_val is not None and datamodule.val_split_mode in REAL_VAL_MODES:
        datasets.append(wrapped_val)
    records: dict[str, DefectRecord] = {}
    for dataset in datasets:
        for row in dataset.samples.itertuples():
            if int(row.label_index) != ANOMALOUS_LABEL:
                continue
            mask_path = row_mask_path(row)
            image_path = Path(row.image_path)
            records[resolved(image_path)] = DefectRecord(
                image_path=image_path,
                mask_path=Path(mask_path) if mask_path else None,
                defect_type=image_path.parent.name,
            )
    return list(records.values())


def check_real_test_split(datamodule: AnomalibDataModule) -> None:
    """Refuse ``test_split_mode="synthetic"`` before the wrapped datamodule is set up: anomalib then replaces the
    test anomalies with its own synthetic ones, which would become the shots, and no real defect is tested."""
    if getattr(datamodule, "test_split_mode", None) == TestSplitMode.SYNTHETIC:
        raise InvalidInputError(
            "the wrapped datamodule has test_split_mode='synthetic': its test anomalies would be anomalib's own "
            "synthetic images, not real defects, so they cannot be the shots or the test set",
            fix="use test_split_mode='from_dir' (the real test folders); the generator makes the synthetic defects",
        )


def check_test_masks(dataset: Dataset, *, mask_threshold: int) -> None:
    """Fail now on a held-out mask whose size is not its image's; count empty masks and say so once.

    A wrong size would otherwise surface only at test time, after the whole training run. An
    empty mask's image counts as anomalous at the image level but holds no defect pixel, so it
    lowers no pixel metric and no detector can localise it; users should know how many there are.
    """
    samples = getattr(dataset, "samples", None)
    if samples is None or "mask_path" not in samples:
        return
    empty = [
        "/".join(Path(row.image_path).parts[-2:])  # defect type folder and file name
        for row in samples.itertuples()
        if int(row.label_index) == ANOMALOUS_LABEL
        and (mask_path := row_mask_path(row)) is not None
        and not bool(load_mask(mask_path, threshold=mask_threshold, expected_size=image_size(row.image_path)).any())
    ]
    if empty:
        logger.warning(
            "%d of the held-out defect images have an empty mask (after binarising at > %d): %s. They count "
            "as anomalous images with no defect pixels.",
            len(empty),
            mask_threshold,
            ", ".join(empty[:5]) + (", ..." if len(empty) > 5 else ""),
        )


def warn_if_batches_stretch(dataset: Dataset, *, batch_size: int) -> None:
    """Warn when test images differ in size and share batches: anomalib's collate resizes every image and mask of
    a batch to the first one's size, so the maps and pixel metrics are no longer at native resolution."""
    samples = getattr(dataset, "samples", None)
    if batch_size <= 1 or samples is None or "image_path" not in samples:
        return
    sizes: set[tuple[int, int]] = set()
    for path in samples.image_path:
        with Image.open(path) as image:  # the header only
            sizes.add((image.height, image.width))
        if len(sizes) > 1:
            logger.warning(
                "The test images differ in size (e.g. %s) and eval_batch_size=%d: anomalib's collate resizes each "
                "batch to its first image's size, so pixel metrics are not at native resolution. Use "
                "eval_batch_size=1.",
                " and ".join(f"{h}x{w}" for h, w in sorted(sizes)),
                batch_size,
            )
            return

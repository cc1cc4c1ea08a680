"""Training on the real shots themselves (``mode="shots"``): the no-synthesis baseline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from shared_fixtures import FakeSquareGenerator

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
from anomaly_synth_aug.data.sample import ANOMALOUS_LABEL
from anomaly_synth_aug.data.shots_dataset import ShotsTrainDataset
from anomaly_synth_aug.errors import InvalidInputError


def _datamodule(tiny_folder, seed: int = 0) -> SyntheticAnomalyDataModule:
    datamodule = SyntheticAnomalyDataModule(tiny_folder, generator=FakeSquareGenerator(), mode="shots", seed=seed)
    datamodule.setup()
    return datamodule


def test_anomalous_items_are_augmented_real_shots_with_their_masks(tiny_folder) -> None:
    datamodule = _datamodule(tiny_folder)
    dataset = datamodule.train_data
    assert isinstance(dataset, ShotsTrainDataset)
    shot_paths = {str(Path(r.image_path)) for r in datamodule.shot_records}
    synthetic = [i for i in range(len(dataset)) if dataset.is_synthetic(i)]
    assert synthetic, "anomaly_ratio 0.5 picked no item"
    for index in synthetic:
        sample = dataset.shot_sample(index)
        assert sample.label == ANOMALOUS_LABEL and sample.mask.any()
        assert sample.image_path in shot_paths  # a real shot, not a generated defect
        assert sample.defect_type in {"blob", "scratch"}
    items = dataset.__getitems__(synthetic[:2])
    assert all(int(item.gt_label) == 1 and item.gt_mask.any() for item in items)


def test_the_datamodule_seed_fixes_the_shots_whatever_the_global_rng(tiny_folder) -> None:
    torch.manual_seed(1)
    first = _datamodule(tiny_folder).train_data
    torch.manual_seed(2)
    second = _datamodule(tiny_folder).train_data
    index = next(i for i in range(len(first)) if first.is_synthetic(i))
    a, b = first.shot_sample(index), second.shot_sample(index)
    assert torch.equal(a.image, b.image) and torch.equal(a.mask, b.mask)
    first.set_epoch(1)
    others = [first.shot_sample(i) for i in range(len(first))]
    second_epoch = [second.shot_sample(i) for i in range(len(second))]
    assert any(not torch.equal(x.image, y.image) for x, y in zip(others, second_epoch, strict=True))


def test_shots_without_any_defect_pixel_are_refused(tiny_folder) -> None:
    datamodule = _datamodule(tiny_folder)
    empty = [shot for shot in datamodule.load_shots()]
    for shot in empty:
        shot.mask = torch.zeros_like(shot.mask)
    with pytest.raises(InvalidInputError, match="non-empty mask"):
        ShotsTrainDataset(datamodule._train_normals, empty, FakeSquareGenerator())

"""Training on the real shots themselves (``mode="shots"``): the no-synthesis baseline."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from shared_fixtures import FakeSquareGenerator

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
from anomaly_synth_aug.data.sample import ANOMALOUS_LABEL
from anomaly_synth_aug.data.shots_dataset import ShotMixedDataset, ShotsTrainDataset
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


def _mixed(tiny_folder, shot_share: float, seed: int = 0) -> SyntheticAnomalyDataModule:
    datamodule = SyntheticAnomalyDataModule(
        tiny_folder, generator=FakeSquareGenerator(), anomaly_ratio=1.0, shot_share=shot_share, seed=seed
    )
    datamodule.setup()
    datamodule.prepare_train_data()
    return datamodule


def test_shot_share_mixes_real_shots_into_the_generated_defects(tiny_folder) -> None:
    datamodule = _mixed(tiny_folder, shot_share=0.5)
    dataset = datamodule.train_data
    assert isinstance(dataset, ShotMixedDataset)
    shot_paths = {str(Path(r.image_path)) for r in datamodule.shot_records}
    indices = list(range(len(dataset)))
    samples = dataset._samples_with_anomalies(indices)
    from_shots = [sample.image_path in shot_paths for sample in samples]
    assert from_shots == [dataset.is_shot(i) for i in indices]  # a shot exactly where the draw says so
    assert any(from_shots) and not all(from_shots), "a half share gave all or nothing"
    assert all(sample.label == ANOMALOUS_LABEL and sample.mask.any() for sample in samples)
    mixed_in = [s for s, shot in zip(samples, from_shots, strict=True) if not shot]
    generated_indices = [i for i, shot in zip(indices, from_shots, strict=True) if not shot]
    alone = dataset.generated._samples_with_anomalies(generated_indices)
    assert [s.image_path for s in mixed_in] == [s.image_path for s in alone]  # each at its own item, in order
    assert all(torch.equal(a.image, b.image) for a, b in zip(mixed_in, alone, strict=True))


def test_shots_and_generated_defects_both_get_the_datasets_augmentations(tiny_folder) -> None:
    from torchvision.transforms.v2 import Resize

    dataset = _mixed(tiny_folder, shot_share=0.5).train_data
    dataset.augmentations = Resize((16, 24))  # what anomalib's _update_augmentations sets on the train set
    indices = list(range(len(dataset)))
    kinds = {dataset.is_shot(i) for i in indices}
    assert kinds == {True, False}
    items = dataset.__getitems__(indices)
    assert all(tuple(item.image.shape[-2:]) == tuple(item.gt_mask.shape[-2:]) == (16, 24) for item in items)


def test_shot_share_draws_are_fixed_by_seed_and_epoch(tiny_folder) -> None:
    first = _mixed(tiny_folder, shot_share=0.5).train_data
    second = _mixed(tiny_folder, shot_share=0.5).train_data
    draws = [first.is_shot(i) for i in range(len(first))]
    assert draws == [second.is_shot(i) for i in range(len(second))]
    epochs = []
    for epoch in range(4):
        first.set_epoch(epoch)
        epochs.append([first.is_shot(i) for i in range(len(first))])
    assert any(e != epochs[0] for e in epochs[1:])


@pytest.mark.parametrize(("share", "expected"), [(0.0, False), (1.0, True)])
def test_shot_share_bounds_are_generated_only_and_shots_only(tiny_folder, share: float, expected: bool) -> None:
    datamodule = _mixed(tiny_folder, shot_share=share)
    dataset = datamodule.train_data
    assert isinstance(dataset, ShotMixedDataset) == (share > 0)
    if share > 0:
        assert all(dataset.is_shot(i) == expected for i in range(len(dataset)))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"shot_share": 1.5}, "shot_share must be in"),
        ({"shot_share": 0.5, "mode": "shots"}, "generates none"),
        ({"shot_share": 0.5, "anomaly_ratio": 0.0}, "no anomalous items to share"),
    ],
)
def test_bad_shot_share_is_refused_at_construction(tiny_folder, kwargs: dict, message: str) -> None:
    with pytest.raises(InvalidInputError, match=message):
        SyntheticAnomalyDataModule(tiny_folder, generator=FakeSquareGenerator(), **kwargs)


def test_shot_share_without_a_usable_shot_names_shot_share(tiny_folder) -> None:
    datamodule = _mixed(tiny_folder, shot_share=0.0)
    empty = datamodule.load_shots()
    for shot in empty:
        shot.mask = torch.zeros_like(shot.mask)
    with pytest.raises(InvalidInputError, match="shot_share=0.5 mixes in the real shots"):
        ShotMixedDataset(datamodule.train_data, empty, shot_share=0.5)


def test_non_square_shots_keep_their_shape_and_a_given_shot_transform_is_used(tiny_folder) -> None:
    """A quarter-turned 48x64 shot came out 64x48; with no crop after it, collate stretched it back to 48x64."""
    from anomaly_synth_aug.data.transforms import shot_augmentations

    dataset = _datamodule(tiny_folder).train_data
    synthetic = [i for i in range(len(dataset)) if dataset.is_synthetic(i)]
    shapes = set()
    for epoch in range(4):
        dataset.set_epoch(epoch)
        shapes |= {tuple(dataset.shot_sample(index).image.shape[-2:]) for index in synthetic}
    assert shapes == {(48, 64)}

    turning = SyntheticAnomalyDataModule(
        tiny_folder, generator=FakeSquareGenerator(), mode="shots", shot_transform=shot_augmentations(keep_shape=False)
    )
    turning.setup()
    turned = turning.train_data
    seen = set()
    for epoch in range(4):
        turned.set_epoch(epoch)
        seen |= {tuple(turned.shot_sample(index).image.shape[-2:]) for index in synthetic}
    assert seen == {(48, 64), (64, 48)}  # the benchmark's recorded procedure: quarter turns, then its crop

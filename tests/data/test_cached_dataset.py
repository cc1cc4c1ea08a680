import dataclasses
from pathlib import Path

import pytest
import torch
from anomalib.data import ImageBatch, ImageItem
from shared_fixtures import FakeLearnedGenerator, FakeSquareGenerator
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import Resize

from anomaly_synth_aug.cache.manifest import read_manifest
from anomaly_synth_aug.cache.store import SampleCache
from anomaly_synth_aug.data.cached_dataset import CachedAnomalyDataset, build_cached_train_dataset
from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
from anomaly_synth_aug.data.dataset import SyntheticAnomalyDataset
from anomaly_synth_aug.data.io import load_image, load_mask
from anomaly_synth_aug.data.samplers import EpochRandomSampler
from anomaly_synth_aug.errors import InvalidInputError

CPU = {"accelerator": "cpu", "enable_progress_bar": False}


@pytest.fixture
def folder(tiny_folder):
    tiny_folder.setup()
    return tiny_folder


def build(folder, generator, cache_dir: Path, **kwargs) -> CachedAnomalyDataset:
    options = {"samples_per_type": 4, "anomaly_ratio": 0.5, "seed": 3, "trainer_kwargs": CPU} | kwargs
    return build_cached_train_dataset(folder.train_data, generator, cache_dir, **options)


def test_items_are_cached_anomalies_or_untouched_normals(folder, fake_generator, tmp_path: Path) -> None:
    dataset = build(folder, fake_generator, tmp_path / "cache")
    cache_images = (tmp_path / "cache" / "images").resolve()
    labels = []
    for index in range(len(dataset)):
        item = dataset[index]
        assert isinstance(item, ImageItem) and item.gt_mask.dtype == torch.bool
        labels.append(int(item.gt_label))
        if item.gt_label == 1:
            assert Path(item.image_path).resolve().is_relative_to(cache_images)
            assert torch.equal(item.image, load_image(item.image_path))
            assert torch.equal(item.gt_mask, load_mask(item.mask_path)) and item.gt_mask.any()
        else:
            assert torch.equal(item.image, load_image(item.image_path)) and not item.gt_mask.any()
    assert 0 < sum(labels) < len(dataset)
    assert fake_generator.calls == [4]  # the cache was generated once, the batch of 4 jobs in one call


def test_same_items_turn_anomalous_as_online(folder, fake_generator, tmp_path: Path) -> None:
    cached = build(folder, fake_generator, tmp_path / "cache", anomaly_ratio=0.4)
    online = SyntheticAnomalyDataset(folder.train_data, fake_generator, anomaly_ratio=0.4, seed=3)
    for epoch in range(3):
        cached.set_epoch(epoch)
        online.set_epoch(epoch)
        indices = range(len(cached))
        assert [cached.is_synthetic(i) for i in indices] == [online.is_synthetic(i) for i in indices]


def test_cached_sample_comes_from_the_items_own_normal(folder, fake_generator, tmp_path: Path) -> None:
    dataset = build(folder, fake_generator, tmp_path / "cache", samples_per_type=12, anomaly_ratio=1.0)
    sources = {str((tmp_path / "cache" / e.image).resolve()): e.source for e in dataset.entries}
    for index in range(len(dataset)):
        item = dataset[index]
        own_normal = str(Path(dataset.samples.iloc[index].image_path).resolve())
        assert sources[str(Path(item.image_path).resolve())] == own_normal


def test_a_moved_dataset_still_finds_each_normals_own_samples(folder, fake_generator, tmp_path: Path) -> None:
    """The cache is reused after the dataset moves (it knows its files by name and contents), but samples were
    looked up by the recorded absolute path: every item silently drew any cached sample instead of its own."""
    built = build(folder, fake_generator, tmp_path / "cache", samples_per_type=12, anomaly_ratio=1.0)
    recorded_elsewhere = [
        dataclasses.replace(entry, source=f"/elsewhere/good/{Path(entry.source).name}") for entry in built.entries
    ]
    dataset = CachedAnomalyDataset(
        folder.train_data, fake_generator, tmp_path / "cache", recorded_elsewhere, anomaly_ratio=1.0, seed=3
    )
    names = {str((tmp_path / "cache" / e.image).resolve()): Path(e.source).name for e in dataset.entries}
    for index in range(len(dataset)):
        item = dataset[index]
        assert names[str(Path(item.image_path).resolve())] == Path(dataset.samples.iloc[index].image_path).name


def test_a_file_name_two_sources_share_is_not_used_to_match_a_moved_normal(
    folder, fake_generator, tmp_path: Path
) -> None:
    built = build(folder, fake_generator, tmp_path / "cache", samples_per_type=12, anomaly_ratio=1.0)
    twice = [dataclasses.replace(entry, source=f"/{place}/{Path(entry.source).name}")
             for entry in built.entries for place in ("first", "second")]  # fmt: skip
    dataset = CachedAnomalyDataset(folder.train_data, fake_generator, tmp_path / "cache", twice, seed=3)
    assert dataset._by_name == {}  # ambiguous names: any cached sample, as for an unknown normal


def test_augmentations_apply_to_image_and_mask(folder, fake_generator, tmp_path: Path) -> None:
    dataset = build(folder, fake_generator, tmp_path / "cache", anomaly_ratio=1.0)
    dataset.augmentations = Resize((24, 32))
    item = dataset[0]
    assert tuple(item.image.shape) == (3, 24, 32)
    assert tuple(item.gt_mask.shape) == (24, 32) and item.gt_mask.dtype == torch.bool
    assert int(item.gt_mask.sum()) == 9  # the native 6x6 square, halved on both axes


def test_dataloader_batches_and_epochs(folder, fake_generator, tmp_path: Path) -> None:
    dataset = build(folder, fake_generator, tmp_path / "cache")
    loader = DataLoader(dataset, batch_size=4, sampler=EpochRandomSampler(dataset), collate_fn=dataset.collate_fn)
    picks = []
    for epoch in range(3):
        loader.sampler.set_epoch(epoch)
        batches = list(loader)
        assert all(isinstance(batch, ImageBatch) and batch.gt_mask.dtype == torch.bool for batch in batches)
        picks.append(tuple(dataset.cached_sample(i).image_path for i in range(len(dataset))))
    assert len(set(picks)) > 1  # another cached sample per item each epoch


def test_second_build_reuses_the_cache(folder, tmp_path: Path) -> None:
    first, second = FakeSquareGenerator(), FakeSquareGenerator()
    build(folder, first, tmp_path / "cache")
    dataset = build(folder, second, tmp_path / "cache")
    assert first.calls and not second.calls
    assert dataset.entries == read_manifest(SampleCache(tmp_path / "cache").layout).entries


def test_empty_entries_are_refused(folder, fake_generator, tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="holds no samples"):
        CachedAnomalyDataset(folder.train_data, fake_generator, tmp_path, [])


def test_datamodule_wiring_trains_from_the_cache(tiny_folder, tmp_path: Path) -> None:
    generator = FakeLearnedGenerator()
    datamodule = SyntheticAnomalyDataModule(
        tiny_folder,
        generator=generator,
        mode="cached",
        anomaly_ratio=0.5,
        cache_dir=tmp_path / "cache",
        samples_per_type=3,
        cache_trainer_kwargs=CPU,
    )
    datamodule.setup()  # splits only: no fit, no pool
    assert datamodule.train_data is None and not generator.is_fitted
    datamodule.prepare_train_data()
    assert isinstance(datamodule.train_data, CachedAnomalyDataset) and generator.is_fitted
    sources = {str(Path(p).resolve()) for p in datamodule.train_data.samples.image_path}
    assert {entry.source for entry in datamodule.train_data.entries} <= sources  # never the validation hold-out
    batch = next(iter(datamodule.train_dataloader()))
    assert isinstance(batch, ImageBatch) and batch.gt_mask.dtype == torch.bool


def test_cache_is_filled_in_batches_of_cache_batch_size(tiny_folder, tmp_path: Path) -> None:
    """It used to be 4 images per call whatever the generator: 1.6 instead of 4.4 diffusion images/s."""
    generator = FakeLearnedGenerator()
    datamodule = SyntheticAnomalyDataModule(
        tiny_folder,
        generator=generator,
        mode="cached",
        cache_dir=tmp_path / "cache",
        samples_per_type=5,
        cache_batch_size=2,
        cache_trainer_kwargs=CPU,
    )
    datamodule.prepare_train_data()
    assert sorted(generator.calls, reverse=True) == [2, 2, 1]
    with pytest.raises(InvalidInputError, match="cache_batch_size"):
        SyntheticAnomalyDataModule(tiny_folder, generator=generator, mode="cached", cache_dir=tmp_path, cache_batch_size=0)

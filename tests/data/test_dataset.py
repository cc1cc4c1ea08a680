import json
import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from anomalib.data import ImageBatch
from PIL import Image
from torch.utils.data import DataLoader
from torchvision.transforms.v2 import Resize

from anomaly_synth_aug.data.dataset import (
    EvaluationDataset,
    SyntheticAnomalyDataset,
    SyntheticValidationDataset,
)
from anomaly_synth_aug.data.io import load_image
from anomaly_synth_aug.errors import CorruptFileError, InvalidInputError, MaskError


@pytest.fixture
def folder(tiny_folder):
    tiny_folder.setup()
    return tiny_folder


def test_every_item_anomalous_at_ratio_one(folder, fake_generator) -> None:
    dataset = SyntheticAnomalyDataset(folder.train_data, fake_generator, anomaly_ratio=1.0)
    for index in range(len(dataset)):
        item = dataset[index]
        normal = load_image(item.image_path)
        changed = (item.image != normal).any(0)
        assert item.gt_label == 1 and item.gt_mask.dtype == torch.bool and item.gt_mask.any()
        assert not (changed & ~item.gt_mask).any()  # the image changed only inside the mask


def test_no_generation_at_ratio_zero(folder, fake_generator) -> None:
    dataset = SyntheticAnomalyDataset(folder.train_data, fake_generator, anomaly_ratio=0.0)
    items = dataset.__getitems__(range(len(dataset)))
    assert fake_generator.calls == []
    assert all(item.gt_label == 0 and not item.gt_mask.any() for item in items)
    assert torch.equal(items[0].image, load_image(items[0].image_path))


def test_generator_called_once_per_batch(folder, fake_generator) -> None:
    dataset = SyntheticAnomalyDataset(folder.train_data, fake_generator, anomaly_ratio=0.5, seed=3)
    batches = list(DataLoader(dataset, batch_size=4, collate_fn=dataset.collate_fn))
    anomalous = [int(batch.gt_label.sum()) for batch in batches]
    assert all(isinstance(batch, ImageBatch) for batch in batches)
    assert fake_generator.calls == [count for count in anomalous if count]
    assert 0 < sum(anomalous) < len(dataset)


def test_generates_at_native_resolution_then_applies_augmentations(folder, fake_generator) -> None:
    dataset = SyntheticAnomalyDataset(
        folder.train_data, fake_generator, anomaly_ratio=1.0, augmentations=Resize((24, 32))
    )
    item = dataset[0]
    assert tuple(item.image.shape) == (3, 24, 32)
    assert tuple(item.gt_mask.shape) == (24, 32) and item.gt_mask.dtype == torch.bool
    assert int(item.gt_mask.sum()) == 9  # the native 6x6 square, halved on both axes


def test_selection_is_seeded_and_changes_per_epoch(folder, fake_generator) -> None:
    first = SyntheticAnomalyDataset(folder.train_data, fake_generator, anomaly_ratio=0.5, seed=7)
    second = SyntheticAnomalyDataset(folder.train_data, fake_generator, anomaly_ratio=0.5, seed=7)
    items_a, items_b = first.__getitems__(range(12)), second.__getitems__(range(12))
    for a, b in zip(items_a, items_b, strict=True):
        assert torch.equal(a.image, b.image) and torch.equal(a.gt_mask, b.gt_mask)
    selections = []
    for epoch in range(4):
        first.set_epoch(epoch)
        selections.append(tuple(first.is_synthetic(i) for i in range(len(first))))
    assert len(set(selections)) > 1


def test_batch_of_different_sizes(tiny_mvtec: Path, fake_generator, tiny_folder) -> None:
    wide = np.full((40, 90), 128, dtype=np.uint8)
    Image.fromarray(wide).save(tiny_mvtec / "train" / "good" / "999.png")
    tiny_folder.setup()
    dataset = SyntheticAnomalyDataset(tiny_folder.train_data, fake_generator, anomaly_ratio=1.0)
    items = dataset.__getitems__([0, len(dataset) - 1])
    assert [tuple(item.image.shape[-2:]) for item in items] == [(48, 64), (40, 90)]
    assert fake_generator.calls == [2]
    assert dataset.collate_fn(items).image.shape[0] == 2


def test_pickles_for_dataloader_workers(folder, fake_generator) -> None:
    dataset = SyntheticAnomalyDataset(folder.train_data, fake_generator, anomaly_ratio=0.5, seed=1)
    clone = pickle.loads(pickle.dumps(dataset))
    for a, b in zip(dataset.__getitems__(range(8)), clone.__getitems__(range(8)), strict=True):
        assert torch.equal(a.image, b.image) and torch.equal(a.gt_mask, b.gt_mask)


def test_corrupt_training_image_names_the_file(folder, fake_generator) -> None:
    broken = Path(folder.train_data.samples.image_path.iloc[2])
    broken.write_bytes(b"not an image")
    dataset = SyntheticAnomalyDataset(folder.train_data, fake_generator)
    with pytest.raises(CorruptFileError, match=broken.name):
        dataset.__getitems__([0, 1, 2])


def test_rejects_ratio_outside_unit_interval(folder, fake_generator) -> None:
    with pytest.raises(InvalidInputError, match="anomaly_ratio"):
        SyntheticAnomalyDataset(folder.train_data, fake_generator, anomaly_ratio=1.5)


def test_evaluation_masks_binarised_above_127(folder) -> None:
    dataset = EvaluationDataset(folder.test_data)
    anomalous = [i for i, label in enumerate(folder.test_data.samples.label_index) if label == 1]
    ours, theirs = dataset[anomalous[0]], folder.test_data[anomalous[0]]
    raw = np.asarray(Image.open(ours.mask_path).convert("L"))
    assert torch.equal(ours.gt_mask, torch.from_numpy(raw > 127))
    assert int(theirs.gt_mask.sum()) > int(ours.gt_mask.sum())  # anomalib: any non-zero pixel
    assert ours.gt_label == 1 and torch.allclose(ours.image, theirs.image, atol=1e-6)
    normal = dataset[folder.test_data.samples.label_index.tolist().index(0)]
    assert normal.gt_label == 0 and not normal.gt_mask.any()


def test_evaluation_mask_size_mismatch_names_the_mask(folder) -> None:
    row = folder.test_data.samples[folder.test_data.samples.label_index == 1].iloc[0]
    Image.fromarray(np.zeros((10, 10), dtype=np.uint8)).save(row.mask_path)
    dataset = EvaluationDataset(folder.test_data)
    with pytest.raises(MaskError, match=Path(row.mask_path).name):
        dataset[int(row.name)]


def test_validation_anomalies_fixed_and_generated_once(folder, fake_generator) -> None:
    dataset = SyntheticValidationDataset(folder.train_data, fake_generator, seed=0)
    first = dataset.__getitems__(range(len(dataset)))
    dataset.set_epoch(5)
    second = dataset.__getitems__(range(len(dataset)))
    assert sum(int(item.gt_label) for item in first) == len(dataset) // 2
    assert fake_generator.calls == [len(dataset) // 2]  # the second pass reused the generated items
    for a, b in zip(first, second, strict=True):
        assert torch.equal(a.image, b.image) and torch.equal(a.gt_mask, b.gt_mask)


def test_the_datamodule_seed_fixes_every_defect_whatever_the_global_rng(tiny_folder) -> None:
    """Two datamodules with one seed but different global torch seeds put defects on the same items, yet every
    defect differed: the batch seed mixed the indices an unseeded sampler had drawn."""
    from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
    from anomaly_synth_aug.generators.perlin import PerlinGenerator

    def first_epoch(global_seed: int) -> dict[str, torch.Tensor]:
        torch.manual_seed(global_seed)
        datamodule = SyntheticAnomalyDataModule(tiny_folder, generator=PerlinGenerator(), seed=3)
        datamodule.setup()
        images = {}
        for batch in datamodule.train_dataloader():
            for path, image, label in zip(batch.image_path, batch.image, batch.gt_label, strict=True):
                if int(label) == 1:
                    images[path] = image
        return images

    first, second = first_epoch(1), first_epoch(2)
    assert first and first.keys() == second.keys()
    assert all(torch.equal(first[path], second[path]) for path in first)


def test_the_datamodule_seed_fixes_the_cached_pool_whatever_the_global_rng(tiny_mvtec, tmp_path) -> None:
    """The cached mode draws its pool from the datamodule's seed too: two global seeds, one pool."""
    from shared_fixtures import make_folder_datamodule

    from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
    from anomaly_synth_aug.generators.perlin import PerlinGenerator

    def pool(global_seed: int, cache: str) -> dict[str, str]:
        torch.manual_seed(global_seed)
        datamodule = SyntheticAnomalyDataModule(
            make_folder_datamodule(tiny_mvtec), generator=PerlinGenerator(), mode="cached",
            cache_dir=tmp_path / cache, samples_per_type=3, seed=3,
            cache_trainer_kwargs={"accelerator": "cpu", "enable_progress_bar": False},
        )  # fmt: skip
        datamodule.prepare_train_data()
        manifest = (tmp_path / cache / "manifest.jsonl").read_text().splitlines()
        return {json.loads(line)["image"]: json.loads(line)["image_sha256"] for line in manifest}

    first, second = pool(1, "a"), pool(2, "b")
    assert len(first) == 3 and first == second

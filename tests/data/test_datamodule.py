from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from anomalib import TaskType
from anomalib.data import AnomalibDataModule, ImageBatch
from shared_fixtures import FakeLearnedGenerator, FakeSquareGenerator, make_folder_datamodule, make_mvtec_layout
from jsonargparse import ArgumentParser
from torchvision.transforms.v2 import Resize

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
from anomaly_synth_aug.data.dataset import EvaluationDataset, SyntheticAnomalyDataset, SyntheticValidationDataset
from anomaly_synth_aug.data.fewshot import few_shot_split
from anomaly_synth_aug.errors import InvalidInputError


def resolved(paths) -> set[Path]:
    return {Path(p).resolve() for p in paths}


def test_wraps_folder_and_delegates_identity(tiny_folder, fake_generator) -> None:
    datamodule = SyntheticAnomalyDataModule(tiny_folder, generator=fake_generator)
    datamodule.setup()
    assert datamodule.name == "tiny" and datamodule.category == tiny_folder.category
    assert datamodule.task == TaskType.SEGMENTATION
    assert datamodule.train_batch_size == 4 and datamodule.num_workers == 0
    assert isinstance(datamodule.train_data, SyntheticAnomalyDataset)
    assert isinstance(datamodule.val_data, SyntheticValidationDataset)
    assert isinstance(datamodule.test_data, EvaluationDataset)
    assert len(datamodule.train_data) + len(datamodule.val_data) == 12  # train normals, 20 % held back
    assert len(datamodule.val_data) == 2


def test_shots_follow_protocol_and_never_reach_evaluation(tiny_mvtec: Path, fake_generator) -> None:
    wrapped = make_folder_datamodule(tiny_mvtec, val_split_mode="from_test", val_split_ratio=0.5, seed=1)
    datamodule = SyntheticAnomalyDataModule(wrapped, generator=fake_generator, val_split="wrapped")
    datamodule.setup()
    shots = resolved(record.image_path for record in datamodule.shot_records)
    assert shots == few_shot_split(tiny_mvtec).shot_paths  # same protocol as the folder-based split
    evaluated = resolved(datamodule.test_data.image_paths()) | resolved(datamodule.val_data.image_paths())
    assert shots and not shots & evaluated
    held_out = resolved(r.image_path for r in few_shot_split(tiny_mvtec).eval_anomalies)
    assert held_out <= evaluated  # every non-shot anomaly is still evaluated


def test_a_synthetic_test_split_is_refused_before_its_fake_defects_become_the_shots(
    tiny_mvtec: Path, fake_generator
) -> None:
    """anomalib's synthetic test split replaced the real test anomalies; they silently became the shots."""
    wrapped = make_folder_datamodule(tiny_mvtec, test_split_mode="synthetic", seed=0)
    datamodule = SyntheticAnomalyDataModule(wrapped, generator=fake_generator)
    with pytest.raises(InvalidInputError, match="test_split_mode='synthetic'.*Fix: use test_split_mode='from_dir'"):
        datamodule.setup()


def test_capped_shots_train_fewer_and_leave_the_evaluation_set_as_it_was(tiny_mvtec: Path, fake_generator) -> None:
    def evaluated(max_shots_per_type: int | None) -> tuple[SyntheticAnomalyDataModule, set[Path]]:
        wrapped = make_folder_datamodule(tiny_mvtec)
        datamodule = SyntheticAnomalyDataModule(
            wrapped, generator=fake_generator, shot_fraction=0.5, max_shots_per_type=max_shots_per_type
        )
        datamodule.setup()
        return datamodule, resolved(datamodule.test_data.image_paths())

    full, full_test = evaluated(None)
    capped, capped_test = evaluated(1)
    assert len(full.shot_records) == 6 and len(capped.shot_records) == 2  # 3 of each type's 6, then 1
    assert capped_test == full_test  # the 4 capped-out shots are not evaluated on
    assert len(capped.load_shots()) == 2
    with pytest.raises(InvalidInputError, match="max_shots_per_type"):
        SyntheticAnomalyDataModule(make_folder_datamodule(tiny_mvtec), generator=fake_generator, max_shots_per_type=0)


@pytest.mark.parametrize("val_split", ["synthetic", "none"])
def test_a_wrapped_from_test_split_holds_back_no_test_image(tiny_mvtec: Path, fake_generator, val_split) -> None:
    """anomalib's ``from_test`` split (MVTecAD's default) held back a random half of the test set, with anomalib's
    own unseeded draw, which the wrapper's own validation never used: fewer and different test images per run."""
    evaluated = []
    for wrapped_seed in (1, 2):
        wrapped = make_folder_datamodule(tiny_mvtec, val_split_mode="from_test", val_split_ratio=0.5, seed=wrapped_seed)
        datamodule = SyntheticAnomalyDataModule(wrapped, generator=fake_generator, val_split=val_split)
        datamodule.setup()
        evaluated.append(resolved(datamodule.test_data.image_paths()))
    reference = SyntheticAnomalyDataModule(make_folder_datamodule(tiny_mvtec), generator=fake_generator)
    reference.setup()
    assert evaluated[0] == evaluated[1] == resolved(reference.test_data.image_paths())


def test_a_wrapped_datamodule_set_up_before_with_its_split_is_split_again_without(
    tiny_mvtec: Path, fake_generator
) -> None:
    from lightning.pytorch.trainer.states import TrainerFn

    wrapped = make_folder_datamodule(tiny_mvtec, val_split_mode="from_test", val_split_ratio=0.5, seed=1)
    wrapped.setup(TrainerFn.FITTING)  # what a trainer's earlier run did: anomalib marks it set up
    datamodule = SyntheticAnomalyDataModule(wrapped, generator=fake_generator)
    datamodule.setup()
    reference = SyntheticAnomalyDataModule(make_folder_datamodule(tiny_mvtec), generator=fake_generator)
    reference.setup()
    assert resolved(datamodule.test_data.image_paths()) == resolved(reference.test_data.image_paths())
    assert len(datamodule.shot_records) == len(reference.shot_records)


def test_an_unseeded_wrapped_folder_without_test_normals_tests_the_same_normals_at_every_setup(
    tiny_mvtec: Path, tmp_path: Path, fake_generator
) -> None:
    """anomalib takes test normals from train when the folder has none; the wrapper sets the wrapped datamodule up
    again at the trainer's setup, and unseeded that drew other normals, so images a generator was fitted on could
    be tested as unseen normals."""
    import shutil

    from lightning.pytorch.trainer.states import TrainerFn

    root = tmp_path / "no_test_good"
    shutil.copytree(tiny_mvtec, root)
    shutil.rmtree(root / "test" / "good")
    wrapped = make_folder_datamodule(root, normal_test_dir=None)  # a user's Folder: seed left at None
    datamodule = SyntheticAnomalyDataModule(wrapped, generator=fake_generator, seed=3)

    def normals() -> tuple[set[Path], set[Path]]:
        test = datamodule.test_data.samples
        return resolved(test.image_path[test.label_index == 0]), resolved(datamodule.train_normal_paths())

    datamodule.setup()  # what the benchmark's first look at the data does
    first_test, first_train = normals()
    torch.rand(100)  # whatever ran in between (a generator's fit)
    datamodule.setup(TrainerFn.FITTING)
    assert first_test and normals() == (first_test, first_train)
    assert not first_test & first_train and wrapped.seed == 3


def test_a_wrapped_from_train_split_takes_no_training_normal(tiny_mvtec: Path, fake_generator) -> None:
    wrapped = make_folder_datamodule(tiny_mvtec, val_split_mode="from_train", val_split_ratio=0.5)
    datamodule = SyntheticAnomalyDataModule(wrapped, generator=fake_generator)
    datamodule.setup()
    assert len(datamodule.train_data) + len(datamodule.val_data) == 12


@pytest.mark.parametrize(("n_train", "n_train_left"), [(3, 1), (4, 2), (7, 5), (12, 10)])
def test_synthetic_validation_holds_back_a_normal_and_a_defect_however_few_normals(
    tmp_path: Path, fake_generator, n_train: int, n_train_left: int
) -> None:
    """With 4 normals the 20 % hold-out was empty (no validation at all), with 9 it held one image, never a defect."""
    root = make_mvtec_layout(tmp_path / "few", n_train=n_train)
    datamodule = SyntheticAnomalyDataModule(make_folder_datamodule(root), generator=fake_generator)
    datamodule.setup()
    assert len(datamodule.train_data) == n_train_left
    assert len(datamodule.val_data) == n_train - n_train_left
    val_labels = [int(datamodule.val_data.is_synthetic(i)) for i in range(len(datamodule.val_data))]
    assert 0 in val_labels and 1 in val_labels


def test_synthetic_validation_with_too_few_normals_names_the_fix(tmp_path: Path, fake_generator) -> None:
    root = make_mvtec_layout(tmp_path / "two", n_train=2)
    datamodule = SyntheticAnomalyDataModule(make_folder_datamodule(root), generator=fake_generator)
    with pytest.raises(InvalidInputError, match="the training set has 2.*val_split='none'"):
        datamodule.setup()


def test_synthetic_validation_uses_train_normals_only(tiny_mvtec: Path, fake_generator, tiny_folder) -> None:
    datamodule = SyntheticAnomalyDataModule(tiny_folder, generator=fake_generator)
    datamodule.setup()
    val_paths = resolved(datamodule.val_data.image_paths())
    assert val_paths <= resolved((tiny_mvtec / "train" / "good").iterdir())
    assert not val_paths & resolved(datamodule.train_normal_paths())
    assert not val_paths & resolved(datamodule.test_data.image_paths())


def test_train_batches_carry_labels_and_bool_masks(tiny_folder, fake_generator) -> None:
    datamodule = SyntheticAnomalyDataModule(tiny_folder, generator=fake_generator, anomaly_ratio=1.0)
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    assert isinstance(batch, ImageBatch) and batch.image.shape == (4, 3, 48, 64)
    assert batch.gt_mask.dtype == torch.bool and batch.gt_mask.flatten(1).any(1).all()
    assert batch.gt_label.tolist() == [1, 1, 1, 1]
    val_batch = next(iter(datamodule.val_dataloader()))
    assert sorted(val_batch.gt_label.tolist()) == [0, 1]


def test_model_resize_is_applied_to_wrapper_datasets(tiny_folder, fake_generator) -> None:
    datamodule = SyntheticAnomalyDataModule(tiny_folder, generator=fake_generator)
    datamodule.trainer = SimpleNamespace(model=SimpleNamespace(pre_processor=SimpleNamespace(transform=Resize((32, 32)))))
    datamodule.setup()
    for loader in (datamodule.train_dataloader(), datamodule.val_dataloader(), datamodule.test_dataloader()):
        batch = next(iter(loader))
        assert batch.image.shape[-2:] == (32, 32) and batch.gt_mask.shape[-2:] == (32, 32)


def test_learned_generator_fitted_once_on_normals_and_shots(tiny_folder) -> None:
    generator = FakeLearnedGenerator()
    datamodule = SyntheticAnomalyDataModule(tiny_folder, generator=generator, max_fit_normals=3)
    datamodule.setup()
    datamodule.val_dataloader()
    datamodule.train_dataloader()
    assert generator.is_fitted and generator.fit_normals == 3
    assert sorted(generator.fit_shot_paths) == sorted(str(r.image_path) for r in datamodule.shot_records)
    generator.fit_normals = None
    datamodule.prepare_generator()  # already fitted: nothing happens
    assert generator.fit_normals is None


def test_val_split_none_has_no_validation(tiny_folder, fake_generator) -> None:
    datamodule = SyntheticAnomalyDataModule(tiny_folder, generator=fake_generator, val_split="none")
    datamodule.setup()
    assert datamodule.val_dataloader() == []
    assert len(datamodule.train_data) == 12


def test_rejects_non_anomalib_datamodule(fake_generator) -> None:
    with pytest.raises(InvalidInputError, match="AnomalibDataModule, got dict"):
        SyntheticAnomalyDataModule({"root": "x"}, generator=fake_generator)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"anomaly_ratio": -0.1}, "anomaly_ratio"),
        ({"anomaly_ratio": 1.01}, "anomaly_ratio"),
        ({"mode": "offline"}, "unknown mode"),
        ({"val_split": "test"}, "unknown val_split"),
        ({"shot_fraction": 1.0}, "shot_fraction"),
        ({"val_split_ratio": 0.0}, "val_split_ratio"),
        ({"mask_threshold": 255}, "mask_threshold"),
    ],
)
def test_rejects_bad_arguments(tiny_folder, fake_generator, kwargs, message) -> None:
    with pytest.raises(InvalidInputError, match=message):
        SyntheticAnomalyDataModule(tiny_folder, generator=fake_generator, **kwargs)


def test_cached_mode_needs_a_cache_dir(tiny_folder, fake_generator) -> None:
    with pytest.raises(InvalidInputError, match="needs a cache_dir"):  # at construction, not minutes later
        SyntheticAnomalyDataModule(tiny_folder, generator=fake_generator, mode="cached")


def test_wrapped_val_split_requires_a_wrapped_validation_set(tiny_folder, fake_generator) -> None:
    datamodule = SyntheticAnomalyDataModule(tiny_folder, generator=fake_generator, val_split="wrapped")
    with pytest.raises(InvalidInputError, match="no validation set"):
        datamodule.setup()


def test_builds_from_anomalib_cli_style_arguments(tiny_mvtec: Path) -> None:
    parser = ArgumentParser()
    parser.add_subclass_arguments(AnomalibDataModule, "data")
    config = parser.parse_args(
        [
            "--data=anomaly_synth_aug.data.datamodule.SyntheticAnomalyDataModule",
            "--data.datamodule=Folder",
            "--data.datamodule.name=tiny",
            f"--data.datamodule.root={tiny_mvtec}",
            "--data.datamodule.normal_dir=train/good",
            "--data.generator=shared_fixtures.FakeSquareGenerator",
            "--data.anomaly_ratio=0.25",
        ]
    )
    datamodule = parser.instantiate_classes(config).data
    assert isinstance(datamodule, SyntheticAnomalyDataModule)
    assert isinstance(datamodule.generator, FakeSquareGenerator) and datamodule.anomaly_ratio == 0.25
    assert datamodule.datamodule.name == "tiny"


def test_held_out_defects_with_empty_masks_are_counted_once(tiny_mvtec: Path, fake_generator, caplog) -> None:
    """Magnetic tile has 4 entirely empty 'uneven' masks: they used to go unnoticed."""
    import numpy as np
    from PIL import Image

    masks = sorted((tiny_mvtec / "ground_truth" / "blob").glob("*_mask.png"))
    Image.fromarray(np.zeros((48, 64), np.uint8)).save(masks[-1])  # the last one is held out, not a shot
    datamodule = SyntheticAnomalyDataModule(make_folder_datamodule(tiny_mvtec), generator=fake_generator)
    with caplog.at_level("WARNING"):
        datamodule.setup()
        datamodule.setup()
    warnings = [r.message for r in caplog.records if "empty mask" in r.message]
    assert len(warnings) == 1 and warnings[0].startswith("1 of the held-out defect images")
    assert "blob/" + masks[-1].name.replace("_mask", "") in warnings[0]  # with its type: names repeat across types


def test_a_generator_given_by_name_is_built_and_a_bad_one_is_named(tiny_folder) -> None:
    """``generator="RealShotPasteGenerator"`` ended in "'str' object has no attribute 'requires_fit'"."""
    from anomaly_synth_aug.generators.real_paste import RealShotPasteGenerator

    datamodule = SyntheticAnomalyDataModule(tiny_folder, generator="RealShotPasteGenerator")
    assert isinstance(datamodule.generator, RealShotPasteGenerator)
    dotted = SyntheticAnomalyDataModule(tiny_folder, generator="anomaly_synth_aug.generators.perlin.PerlinGenerator")
    assert type(dotted.generator).__name__ == "PerlinGenerator"
    with pytest.raises(InvalidInputError, match="RealShotPasteGenerator"):
        SyntheticAnomalyDataModule(tiny_folder, generator="RealShotPaste")
    with pytest.raises(InvalidInputError, match="cannot make a generator"):
        SyntheticAnomalyDataModule(tiny_folder, generator=42)


def test_a_missing_data_folder_is_named_before_anomalib_searches_it(tmp_path: Path, fake_generator) -> None:
    """On a fresh clone the examples' ../shared is absent: anomalib's own error was a 245-line traceback."""
    from anomalib.data import Folder

    folder = Folder(name="absent", root=tmp_path / "absent", normal_dir="train/good", abnormal_dir="test/crack")
    with pytest.raises(InvalidInputError, match="absent: the Folder datamodule's data folder does not exist"):
        SyntheticAnomalyDataModule(folder, generator=fake_generator)  # at construction: the CLI's first error


def test_a_missing_root_is_left_to_a_datamodule_that_can_download_it(tmp_path: Path, fake_generator) -> None:
    """MVTecAD downloads into a missing root in its prepare_data: the wrapper must not refuse it first."""
    from anomalib.data import MVTecAD

    mvtec = MVTecAD(root=tmp_path / "not_yet_downloaded", category="bottle")
    datamodule = SyntheticAnomalyDataModule(mvtec, generator=fake_generator)
    called = []
    mvtec.prepare_data = lambda: called.append(True)  # what would download
    datamodule.prepare_data()
    assert called == [True]


def test_a_wrapped_folder_whose_defect_image_lacks_its_mask_is_named(tiny_mvtec: Path, fake_generator) -> None:
    """From Python, anomalib's Folder ended in a NumPy 'cannot assign 5 input values to the 6 output values'."""
    from anomaly_synth_aug.errors import MaskError

    masks = sorted((tiny_mvtec / "ground_truth" / "scratch").glob("*_mask.png"))
    masks[1].unlink()
    datamodule = SyntheticAnomalyDataModule(make_folder_datamodule(tiny_mvtec), generator=fake_generator)
    image = tiny_mvtec / "test" / "scratch" / masks[1].name.replace("_mask", "")
    with pytest.raises(MaskError, match=f"{image}: this defect image has no mask.*{masks[1].name}"):
        datamodule.setup()


def test_a_held_out_mask_of_the_wrong_size_fails_at_setup_naming_it(tiny_mvtec: Path, fake_generator) -> None:
    """A wrong-size held-out mask was found only at test time, after the whole training run."""
    import numpy as np
    from PIL import Image

    from anomaly_synth_aug.errors import MaskError

    held_out = sorted((tiny_mvtec / "ground_truth" / "blob").glob("*_mask.png"))[-1]  # the last one is not a shot
    Image.fromarray(np.full((24, 32), 255, np.uint8)).save(held_out)
    datamodule = SyntheticAnomalyDataModule(make_folder_datamodule(tiny_mvtec), generator=fake_generator)
    with pytest.raises(MaskError, match=rf"{held_out.name}: mask size \(24, 32\) \(H, W\) differs.*\(48, 64\)"):
        datamodule.setup()
    with pytest.raises(MaskError, match=held_out.name):  # the trainer's own setup call fails the same way
        datamodule.setup()


@pytest.mark.parametrize("val_split", ["synthetic", "wrapped"])
def test_validation_normals_are_read_without_fitting_the_generator(tiny_mvtec: Path, val_split: str) -> None:
    """What a reloaded detector calibrates on before a test: reading them through ``val_dataloader`` fitted a
    learned generator from scratch (a whole diffusion fine-tune) in a session that only tests."""
    wrapped = make_folder_datamodule(tiny_mvtec, val_split_mode="same_as_test" if val_split == "wrapped" else "none")
    generator = FakeLearnedGenerator()
    datamodule = SyntheticAnomalyDataModule(wrapped, generator=generator, val_split=val_split)
    normals = list(datamodule.validation_normal_dataloader())
    assert not generator.is_fitted
    assert all(not batch.gt_label.any() for batch in normals)
    every = [batch for batch in datamodule.val_dataloader()]  # fits the generator for the synthetic items
    expected = torch.cat([batch.image[batch.gt_label == 0] for batch in every])
    assert torch.equal(torch.cat([batch.image for batch in normals]), expected)


def test_no_validation_means_no_validation_normals(tiny_folder, fake_generator) -> None:
    datamodule = SyntheticAnomalyDataModule(tiny_folder, generator=fake_generator, val_split="none")
    assert datamodule.validation_normal_dataloader() is None


def test_test_images_of_several_sizes_in_one_batch_are_warned_about(tiny_mvtec: Path, fake_generator, caplog) -> None:
    """anomalib's collate resizes a batch to its first image's size: pixel metrics silently left native size."""
    import numpy as np
    from PIL import Image

    odd = sorted((tiny_mvtec / "test" / "good").iterdir())[0]
    Image.fromarray(np.full((40, 72), 128, np.uint8)).save(odd)
    for batch_size, warned in ((4, True), (1, False)):
        caplog.clear()
        datamodule = SyntheticAnomalyDataModule(make_folder_datamodule(tiny_mvtec, eval_batch_size=batch_size),
                                                generator=fake_generator)  # fmt: skip
        with caplog.at_level("WARNING"):
            datamodule.setup()
        assert ("eval_batch_size=1" in caplog.text) is warned


def test_a_classification_datasets_16_bit_test_images_are_scaled_as_in_training(tmp_path: Path) -> None:
    """Test images of a maskless dataset went through anomalib's reader, which clips 16-bit values to white,
    while training read the same files scaled: the detector was tested on images it never saw the like of."""
    import numpy as np
    from anomalib.data import Folder
    from PIL import Image

    from anomaly_synth_aug.data.io import load_image

    rng = np.random.default_rng(0)
    for sub, count in [("train/good", 8), ("test/good", 3), ("test/bad", 3)]:
        (tmp_path / sub).mkdir(parents=True)
        for i in range(count):
            wide = (20000 + rng.integers(0, 5000, (32, 48))).astype(np.uint16)
            Image.fromarray(wide).save(tmp_path / sub / f"{i}.png")
    folder = Folder(
        name="wide",
        root=tmp_path,
        normal_dir="train/good",
        abnormal_dir="test/bad",
        normal_test_dir="test/good",
        train_batch_size=2,
        eval_batch_size=2,
        num_workers=0,
        val_split_mode="none",
    )
    datamodule = SyntheticAnomalyDataModule(folder, generator=FakeSquareGenerator())
    datamodule.setup()
    test_data = datamodule.test_data
    assert test_data.task == TaskType.CLASSIFICATION
    item = test_data[0]
    assert item.gt_mask is None  # no masks to read, as anomalib's own items
    assert torch.equal(item.image, load_image(item.image_path)) and float(item.image.max()) < 0.5
    batch = next(iter(datamodule.test_dataloader()))
    labels = [int(label) for label in test_data.samples.label_index[:2]]
    assert batch.gt_mask is None and batch.gt_label.tolist() == labels


def test_an_unlabelled_image_of_a_maskless_dataset_has_no_label(tmp_path: Path) -> None:
    """anomalib gives an UNKNOWN row no label; the package's reader gave it the label -1."""
    import numpy as np
    import pandas as pd
    from PIL import Image

    from anomaly_synth_aug.data.dataset import EvaluationDataset

    Image.fromarray(np.zeros((8, 8), np.uint8)).save(tmp_path / "unlabelled.png")
    samples = pd.DataFrame({"image_path": [str(tmp_path / "unlabelled.png")], "label_index": [-1]})
    dataset = EvaluationDataset(SimpleNamespace(samples=samples, task=TaskType.CLASSIFICATION), masks=False)
    assert dataset[0].gt_label is None

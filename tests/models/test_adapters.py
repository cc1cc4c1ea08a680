from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.models import GeneratorAugmenter, GeneratorDraem, GeneratorGlass, SupervisedSupersimplenet


def test_augmenter_matches_perlin_augmenter_contract(fake_generator) -> None:
    images = torch.rand(4, 3, 32, 40)
    augmented, masks = GeneratorAugmenter(fake_generator, probability=1.0)(images)
    assert augmented.shape == images.shape and masks.shape == (4, 1, 32, 40)
    assert masks.dtype == images.dtype and masks.flatten(1).any(1).all()
    changed = (augmented != images).any(1, keepdim=True)
    assert not (changed & (masks == 0)).any()  # untouched outside the mask
    assert fake_generator.calls == [4]  # one generator call per batch


def test_augmenter_probability_zero_leaves_batch_alone(fake_generator) -> None:
    images = torch.rand(3, 3, 16, 16)
    augmented, masks = GeneratorAugmenter(fake_generator, probability=0.0)(images)
    assert torch.equal(augmented, images) and not masks.any() and fake_generator.calls == []


def test_augmenter_unbatched_and_seeded(fake_generator) -> None:
    augmenter = GeneratorAugmenter(fake_generator, probability=1.0)
    torch.manual_seed(0)
    first = augmenter(torch.full((3, 24, 24), 0.5))
    torch.manual_seed(0)
    second = augmenter(torch.full((3, 24, 24), 0.5))
    assert first[0].shape == (3, 24, 24) and first[1].shape == (1, 24, 24)
    assert torch.equal(first[0], second[0]) and torch.equal(first[1], second[1])


def test_augmenter_rejects_bad_probability(fake_generator) -> None:
    with pytest.raises(InvalidInputError, match="probability"):
        GeneratorAugmenter(fake_generator, probability=2.0)


def test_draem_builds_offline_and_trains_on_generator_defects(tmp_path: Path, monkeypatch, fake_generator) -> None:
    monkeypatch.chdir(tmp_path)  # Draem's default ./datasets/dtd would land here
    model = GeneratorDraem(fake_generator, probability=1.0, evaluator=False, visualizer=False)
    assert isinstance(model.augmenter, GeneratorAugmenter) and not (tmp_path / "datasets").exists()
    assert set(model.hparams) == {"probability", "enable_sspcab", "sspcab_lambda", "base_width"}
    model.log = lambda *args, **kwargs: None  # no trainer attached
    loss = model.training_step(SimpleNamespace(image=torch.rand(2, 3, 32, 32)))["loss"]
    assert torch.isfinite(loss) and fake_generator.calls == [2]


@pytest.mark.parametrize("enable_sspcab", [False, True])
def test_draem_base_width_narrows_both_subnetworks(tmp_path: Path, monkeypatch, fake_generator, enable_sspcab) -> None:
    monkeypatch.chdir(tmp_path)
    model = GeneratorDraem(
        fake_generator, probability=1.0, base_width=16, enable_sspcab=enable_sspcab, evaluator=False, visualizer=False
    )
    assert model.hparams["base_width"] == 16
    assert model.model.reconstructive_subnetwork.encoder.block1[0].out_channels == 16
    assert model.model.discriminative_subnetwork.encoder_segment.block1[0].out_channels == 8
    assert sum(p.numel() for p in model.parameters()) < 2_000_000  # anomalib's widths: 97 M
    model.log = lambda *args, **kwargs: None
    loss = model.training_step(SimpleNamespace(image=torch.rand(2, 3, 32, 32)))["loss"]
    assert torch.isfinite(loss)
    if enable_sspcab:  # the SSPCAB hooks watch the new network, not the replaced one
        assert model.sspcab_activations["input"].shape[1] == 16 * 8


def test_draem_rejects_an_odd_base_width(fake_generator) -> None:
    with pytest.raises(InvalidInputError, match="base_width"):
        GeneratorDraem(fake_generator, base_width=15)


def test_glass_uses_the_generator_as_augmentor(fake_generator) -> None:
    model = GeneratorGlass(
        fake_generator,
        input_shape=(32, 32),
        backbone="resnet18",
        pre_trained=False,
        pretrain_embed_dim=32,
        target_embed_dim=32,
        discriminator_hidden=16,
        step=1,
        evaluator=False,
        visualizer=False,
    )
    assert isinstance(model.model.augmentor, GeneratorAugmenter) and model.model.augmentor.probability == 1.0
    images = torch.rand(2, 3, 32, 32)
    model.model.calculate_center([SimpleNamespace(image=images)], torch.device("cpu"))
    model.model.train()
    loss = model.model(images)[-1]
    assert torch.isfinite(loss) and fake_generator.calls == [2]


def test_glass_refuses_texture_download(fake_generator) -> None:
    with pytest.raises(InvalidInputError, match="anomaly_source_path"):
        GeneratorGlass(fake_generator, anomaly_source_path="./dtd", pre_trained=False)


def test_supersimplenet_learns_from_injected_masks(tiny_folder, fake_generator) -> None:
    model = SupervisedSupersimplenet(
        backbone="resnet18",
        pre_trained=False,
        pre_processor=SupervisedSupersimplenet.configure_pre_processor((128, 128)),
        evaluator=False,
        visualizer=False,
    )
    assert model.supervised and model.hparams["backbone"] == "resnet18"
    assert isinstance(SupervisedSupersimplenet(**model.hparams), SupervisedSupersimplenet)  # as load_from_checkpoint does
    datamodule = SyntheticAnomalyDataModule(tiny_folder, generator=fake_generator, anomaly_ratio=0.5, seed=1)
    datamodule.trainer = SimpleNamespace(model=model)  # lets the datamodule append the model's Resize
    datamodule.setup()
    batch = next(iter(datamodule.train_dataloader()))
    assert batch.image.shape[-2:] == (128, 128) and 0 < int(batch.gt_label.sum()) < 4

    model.train()
    _, _, target_masks, target_labels = model.model(batch.image, masks=batch.gt_mask, labels=batch.gt_label)
    injected = model.model.downsample_mask(batch.gt_mask, *target_masks.shape[-2:])
    assert (target_masks[: len(batch)] >= injected).all()  # our defects are the model's targets
    assert (target_labels[: len(batch)] >= batch.gt_label).all()
    model.log = lambda *args, **kwargs: None
    assert torch.isfinite(model.training_step(batch)["loss"])

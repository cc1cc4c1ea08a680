from pathlib import Path
from types import SimpleNamespace

import pytest
from shared_fixtures import assert_ranking_metrics
import torch
from anomalib import LearningType
from anomalib.engine import Engine

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.models.segmenter import DefectSegmenter, MemorySource, SegmenterModel


def toy_batch(count: int, generator: torch.Generator) -> SimpleNamespace:
    """Dark noisy images, half with a bright 8x8 square: a trivially separable segmentation task."""
    images = torch.rand(count, 3, 32, 32, generator=generator) * 0.3
    masks = torch.zeros(count, 32, 32, dtype=torch.bool)
    for index in range(0, count, 2):
        top, left = torch.randint(0, 24, (2,), generator=generator).tolist()
        masks[index, top : top + 8, left : left + 8] = True
    images[masks.unsqueeze(1).expand_as(images)] = 0.9
    return SimpleNamespace(image=images, gt_mask=masks, gt_label=masks.flatten(1).any(1))


def test_learns_a_trivially_separable_task() -> None:
    torch.manual_seed(0)
    rng = torch.Generator().manual_seed(0)
    model = DefectSegmenter(encoder=None, base_width=4, learning_rate=1e-2, evaluator=False, visualizer=False)
    model.log = lambda *args, **kwargs: None  # no trainer attached
    optimizer = model.configure_optimizers()
    model.train()
    losses = []
    for _ in range(40):
        loss = model.training_step(toy_batch(8, rng))["loss"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert sum(losses[-5:]) / 5 < 0.5 * sum(losses[:5]) / 5

    model.eval()
    batch = toy_batch(8, rng)
    with torch.no_grad():
        predictions = model.model(batch.image)
    assert predictions.anomaly_map.shape == (8, 32, 32) and predictions.pred_score.shape == (8,)
    inside = predictions.anomaly_map[batch.gt_mask].mean()
    outside = predictions.anomaly_map[~batch.gt_mask].mean()
    assert inside > 0.3 and outside < 0.05  # the map lights up on the squares, nowhere else
    anomalous = batch.gt_label
    assert predictions.pred_score[anomalous].min() > predictions.pred_score[~anomalous].max()


def test_image_score_is_top_fraction_mean() -> None:
    anomaly_map = torch.zeros(2, 10, 10)
    anomaly_map[0, 0, :5] = 1.0  # 5 hot pixels of 100
    assert SegmenterModel(encoder=None, base_width=2, score_top_fraction=0.0).image_score(anomaly_map).tolist() == [1.0, 0.0]
    assert SegmenterModel(encoder=None, base_width=2, score_top_fraction=0.1).image_score(anomaly_map).tolist() == [0.5, 0.0]


@pytest.mark.parametrize("encoder", [None, "efficientnet_lite0"])
def test_predicts_whole_images_of_any_size(encoder: str | None) -> None:
    """Inputs are padded to a multiple of 32 and the map cropped back: native resolution, fully convolutional."""
    model = SegmenterModel(encoder=encoder, pretrained=False, base_width=2, normal_prior=False).eval()
    if model.memory is not None:
        model.memory.collect(model.memory_features(torch.rand(2, 3, 64, 64)))
        model.memory.build(size=16)
    with torch.no_grad():
        predictions = model(torch.rand(2, 3, 47, 101))
    assert predictions.anomaly_map.shape == (2, 47, 101) and predictions.pred_score.shape == (2,)
    assert model.train()(torch.rand(1, 3, 33, 40)).shape == (1, 1, 33, 40)


def test_rejects_bad_arguments() -> None:
    with pytest.raises(InvalidInputError, match="score_top_fraction"):
        DefectSegmenter(score_top_fraction=1.0)
    segmenter = DefectSegmenter(encoder=None, base_width=2, evaluator=False, visualizer=False)
    with pytest.raises(InvalidInputError, match="gt_mask"):
        segmenter.training_step(SimpleNamespace(image=torch.rand(1, 3, 32, 32), gt_mask=None))


def test_anomalib_components_and_hparams() -> None:
    model = DefectSegmenter(encoder=None, base_width=4, pre_processor=DefectSegmenter.configure_pre_processor((64, 96)))
    assert model.learning_type == LearningType.ONE_CLASS  # anomalib 2.7 has no supervised type
    assert tuple(model.input_size) == (64, 96)
    assert not model.post_processor.enable_normalization and model.post_processor.enable_thresholding
    assert set(model.hparams) == {
        "encoder",
        "pretrained",
        "frozen_stages",
        "decoder_channels",
        "encoder_lr_scale",
        "base_width",
        "learning_rate",
        "weight_decay",
        "focal_gamma",
        "dice_weight",
        "score_top_fraction",
        "normal_memory",
        "memory_source",
        "memory_images",
        "memory_size",
        "normal_prior",
    }
    assert isinstance(DefectSegmenter(**model.hparams), DefectSegmenter)  # as load_from_checkpoint does


def test_engine_fit_and_test_on_tiny_dataset(tiny_folder, fake_generator, tmp_path: Path) -> None:
    datamodule = SyntheticAnomalyDataModule(tiny_folder, generator=fake_generator, anomaly_ratio=0.5, seed=0)
    model = DefectSegmenter(
        encoder=None, base_width=4, pre_processor=DefectSegmenter.configure_pre_processor((64, 64)), visualizer=False
    )
    engine = Engine(
        max_epochs=2,
        accelerator="cpu",
        default_root_dir=tmp_path,
        enable_progress_bar=False,
        logger=False,
    )
    engine.fit(model, datamodule=datamodule)
    (results,) = engine.test(model, datamodule=datamodule, ckpt_path=engine.best_model_path, verbose=False)
    assert_ranking_metrics(results, ("image_AUROC", "pixel_AUROC"))
    assert not torch.isnan(model.post_processor.image_threshold)  # picked on the synthetic validation set
    assert Path(engine.best_model_path).is_file()
    reloaded = DefectSegmenter.load_from_checkpoint(engine.best_model_path)
    assert reloaded.hparams["base_width"] == 4


def test_normal_memory_is_on_with_an_encoder_and_refused_without_one() -> None:
    assert SegmenterModel(encoder="efficientnet_lite0", pretrained=False).memory is not None
    assert SegmenterModel(encoder=None, base_width=2).memory is None
    assert SegmenterModel(encoder="efficientnet_lite0", pretrained=False, normal_memory=False).memory is None
    with pytest.raises(InvalidInputError, match="pretrained encoder"):
        SegmenterModel(encoder=None, normal_memory=True)
    with pytest.raises(InvalidInputError, match="frozen_stages >= 2"):
        SegmenterModel(encoder="efficientnet_lite0", pretrained=False, frozen_stages=1)


def test_memory_stages_stay_imagenet_while_the_encoder_fine_tunes() -> None:
    """The memory's stages are frozen copies: a training step moves the encoder's blocks.2, not theirs."""
    torch.manual_seed(0)
    model = SegmenterModel(encoder="efficientnet_lite0", pretrained=False)
    model.memory.collect(model.memory_features(torch.rand(2, 3, 64, 64)))
    model.memory.build(size=32)
    copy_before = [p.clone() for p in model._memory_stages.parameters()]
    encoder_block = model.network.encoder.model.get_submodule("blocks.2")
    encoder_before = [p.clone() for p in encoder_block.parameters()]
    optimizer = torch.optim.SGD([p for p in model.parameters() if p.requires_grad], lr=1.0)
    model.train()(torch.rand(2, 3, 64, 64)).mean().backward()
    optimizer.step()
    assert all(torch.equal(a, b) for a, b in zip(copy_before, model._memory_stages.parameters(), strict=True))
    assert any(not torch.equal(a, b) for a, b in zip(encoder_before, encoder_block.parameters(), strict=True))


def test_the_decoder_sees_the_memory_distance() -> None:
    """Same image, different memories: a memory built on that very image gives other logits than a foreign one."""
    torch.manual_seed(0)
    model = SegmenterModel(encoder="efficientnet_lite0", pretrained=False, normal_prior=False).eval()
    image = torch.rand(1, 3, 64, 64)
    model.memory.collect(model.memory_features(image))
    model.memory.build(size=10_000)  # every patch of the image: distance 0 everywhere
    assert model.memory.distance_map(model.memory_features(image)).abs().max() < 1e-2
    with torch.no_grad():
        familiar = model(image).anomaly_map
    model.memory.collect(model.memory_features(torch.zeros(1, 3, 64, 64)))
    model.memory.build(size=10_000)
    with torch.no_grad():
        foreign = model(image).anomaly_map
    assert not torch.allclose(familiar, foreign)


def test_engine_builds_the_memory_from_training_normals(tiny_folder, fake_generator, tmp_path: Path) -> None:
    """``fit`` fills the memory before the first step; the checkpoint carries it into a fresh model."""
    datamodule = SyntheticAnomalyDataModule(tiny_folder, generator=fake_generator, anomaly_ratio=0.5, seed=0)
    # an enum member in the hyperparameters would stop the checkpoint loading with weights_only
    model = DefectSegmenter(
        pretrained=False, memory_source=MemorySource.normals, memory_images=4, memory_size=64, visualizer=False
    )
    assert not model.model.memory.is_built
    engine = Engine(max_steps=2, accelerator="cpu", default_root_dir=tmp_path, enable_progress_bar=False, logger=False)
    engine.fit(model, datamodule=datamodule)
    assert model.model.memory.memory_bank.shape[0] == 64
    reloaded = DefectSegmenter.load_from_checkpoint(engine.best_model_path)
    assert torch.equal(reloaded.model.memory.memory_bank, model.model.memory.memory_bank)
    assert reloaded.model.memory.is_built


def _fit_recording_memory(
    model: DefectSegmenter, datamodule, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> list[tuple[int, ...]]:
    """Fit one step; the shape of every stride-8 feature map the memory collected."""
    collected: list[tuple[int, ...]] = []
    original = model.model.memory.collect
    monkeypatch.setattr(
        model.model.memory, "collect", lambda features: (collected.append(tuple(features[0].shape)), original(features))
    )
    engine = Engine(max_steps=1, accelerator="cpu", default_root_dir=tmp_path, enable_progress_bar=False, logger=False)
    engine.fit(model, datamodule=datamodule)
    assert model.model.memory.is_built
    return collected


def test_the_memory_holds_every_training_normal_whole(
    tiny_mvtec: Path, fake_generator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Training batches are 32 px crops; the memory reads each of the training normals once, whole (48 x 64)."""
    from shared_fixtures import make_folder_datamodule

    from anomaly_synth_aug.data.transforms import native_crop_augmentations

    folder = make_folder_datamodule(tiny_mvtec, train_augmentations=native_crop_augmentations(32))
    datamodule = SyntheticAnomalyDataModule(folder, generator=fake_generator, anomaly_ratio=0.5, seed=0)
    model = DefectSegmenter(pretrained=False, memory_size=64, visualizer=False)
    collected = _fit_recording_memory(model, datamodule, tmp_path, monkeypatch)
    assert len(collected) == len(datamodule.train_normal_paths())
    assert set(collected) == {(1, 40, 8, 8)}  # 48 x 64 padded to 64 x 64, stride 8; a crop would give 4 x 4


def test_memory_crops_larger_than_one_pass_fill_from_further_passes(
    tiny_folder, fake_generator, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One pass holds about half of the 12 training normals; asking for 20 crops takes further passes."""
    datamodule = SyntheticAnomalyDataModule(tiny_folder, generator=fake_generator, anomaly_ratio=0.5, seed=0)
    model = DefectSegmenter(
        pretrained=False, memory_source="training_crops", memory_images=20, memory_size=64, visualizer=False
    )
    collected = _fit_recording_memory(model, datamodule, tmp_path, monkeypatch)
    assert sum(shape[0] for shape in collected) >= 20


def test_memory_options_are_checked() -> None:
    with pytest.raises(InvalidInputError, match="memory_source"):
        DefectSegmenter(pretrained=False, memory_source="test_images")
    with pytest.raises(InvalidInputError, match="memory_images"):
        DefectSegmenter(pretrained=False, memory_images=0)
    for size in (0, 1):  # failed only when training started, naming a PatchCore option or blaming the data
        with pytest.raises(InvalidInputError, match="memory_size must be >= 2"):
            DefectSegmenter(pretrained=False, memory_size=size)


def test_more_frozen_stages_than_the_encoder_has_are_refused_by_name() -> None:
    """A raw AttributeError ("Sequential has no attribute '7'") came out of the network's construction."""
    with pytest.raises(InvalidInputError, match="frozen_stages=9, but the encoder has 7 stages"):
        SegmenterModel(encoder="efficientnet_lite0", pretrained=False, frozen_stages=9)
    SegmenterModel(encoder="efficientnet_lite0", pretrained=False, frozen_stages=7)  # every stage frozen


def test_filling_the_memory_moves_no_batch_norm_statistics() -> None:
    """Memory features are read in eval mode: one small image in training mode neither fails nor updates a BN."""
    model = SegmenterModel(encoder="efficientnet_lite0", pretrained=False).train()
    before = {k: v.clone() for k, v in model.state_dict().items() if "running_mean" in k}
    model.memory_features(torch.rand(1, 3, 32, 32))  # stride 32: 1 x 1 maps, a batch of one
    after = model.state_dict()
    assert all(torch.equal(value, after[key]) for key, value in before.items())
    assert model.training


@pytest.mark.parametrize("normal_memory", [False, True])
def test_frozen_stages_keep_their_imagenet_statistics_from_construction_on(normal_memory: bool) -> None:
    """Lightning trains a module in the modes it finds (it calls no ``train()``): frozen stages must start in eval."""
    torch.manual_seed(0)
    model = SegmenterModel(encoder="efficientnet_lite0", pretrained=False, normal_memory=normal_memory)
    assert model.training and model._frozen and not any(module.training for module in model._frozen)
    if not normal_memory:  # with a memory, a forward needs it built, and building it sets the modes again
        stem = model.network.encoder.model.bn1
        before = stem.running_mean.clone()
        model(torch.rand(2, 3, 64, 64))  # a training forward, in the mode it was built in
        assert torch.equal(stem.running_mean, before)


def test_a_reloaded_segmenter_tests_without_fitting_the_generator_again(tiny_mvtec: Path, tmp_path: Path) -> None:
    """Calibrating the prior read the validation normals through ``val_dataloader``, which fitted the learned
    generator from scratch: testing a checkpoint in a new session repeated the whole generator fit."""
    from shared_fixtures import FakeLearnedGenerator, make_folder_datamodule

    def engine() -> Engine:
        options = {"enable_progress_bar": False, "logger": False}
        return Engine(max_steps=1, accelerator="cpu", default_root_dir=tmp_path, **options)

    model = DefectSegmenter(pretrained=False, memory_images=4, memory_size=64, visualizer=False)
    assert model.model.prior is not None
    trained = engine()
    training = SyntheticAnomalyDataModule(make_folder_datamodule(tiny_mvtec), FakeLearnedGenerator())
    trained.fit(model, datamodule=training)
    reloaded = DefectSegmenter.load_from_checkpoint(trained.best_model_path)
    generator = FakeLearnedGenerator()
    fresh = SyntheticAnomalyDataModule(make_folder_datamodule(tiny_mvtec), generator)
    (results,) = engine().test(reloaded, datamodule=fresh, verbose=False)
    assert not generator.is_fitted
    assert_ranking_metrics(results, ("image_AUROC",))


def test_a_plain_lightning_trainer_fits_it_through_the_sanity_check(tiny_folder, fake_generator, tmp_path) -> None:
    """A plain ``Trainer`` validates two batches before training; the memory, built at train start, was empty."""
    import lightning.pytorch as pl

    datamodule = SyntheticAnomalyDataModule(tiny_folder, generator=fake_generator, anomaly_ratio=0.5, seed=0)
    model = DefectSegmenter(pretrained=False, memory_images=4, memory_size=64, visualizer=False)
    options = {"enable_progress_bar": False, "logger": False, "enable_checkpointing": False}
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", default_root_dir=tmp_path, **options)
    assert trainer.num_sanity_val_steps == 2
    trainer.fit(model, datamodule=datamodule)
    assert model.model.memory.memory_bank.shape[0] == 64 and model.model.prior.is_calibrated


def test_a_sanity_check_before_a_memory_of_training_crops_names_the_fix(tiny_folder, fake_generator, tmp_path) -> None:
    import lightning.pytorch as pl

    datamodule = SyntheticAnomalyDataModule(tiny_folder, generator=fake_generator, anomaly_ratio=0.5, seed=0)
    model = DefectSegmenter(pretrained=False, memory_source="training_crops", memory_size=64, visualizer=False)
    options = {"enable_progress_bar": False, "logger": False, "enable_checkpointing": False}
    trainer = pl.Trainer(max_steps=1, accelerator="cpu", default_root_dir=tmp_path, **options)
    with pytest.raises(InvalidInputError, match="num_sanity_val_steps=0"):
        trainer.fit(model, datamodule=datamodule)

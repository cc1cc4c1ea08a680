from pathlib import Path

import pytest
import torch
from anomalib.engine import Engine

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
from anomaly_synth_aug.errors import InvalidInputError, NotFittedError
from anomaly_synth_aug.models.normal_prior import NormalPrior
from anomaly_synth_aug.models.segmenter import DefectSegmenter, SegmenterModel


def test_statistics_are_the_normal_pixels_mean_and_std() -> None:
    torch.manual_seed(0)
    logits = [torch.randn(2, 1, 5, 7) * 3 - 4, torch.randn(1, 1, 5, 7) * 3 - 4]
    distances = [torch.rand(2, 1, 5, 7) + 1, torch.rand(1, 1, 5, 7) + 1]
    prior = NormalPrior()
    for logit, distance in zip(logits, distances, strict=True):
        prior.accumulate(logit, distance)
    prior.finish()
    every_logit, every_distance = torch.cat([x.flatten() for x in logits]), torch.cat([x.flatten() for x in distances])
    assert torch.isclose(prior.pixel_logit.mean, every_logit.mean(), atol=1e-5)
    assert torch.isclose(prior.pixel_logit.std, every_logit.std(unbiased=False), atol=1e-5)
    assert torch.isclose(prior.pixel_distance.mean, every_distance.mean(), atol=1e-5)
    assert torch.isclose(prior.pixel_distance.std, every_distance.std(unbiased=False), atol=1e-5)
    fused = prior.fuse(logits[0], distances[0])
    expected = (logits[0] - every_logit.mean()) / every_logit.std(unbiased=False) + (
        distances[0] - every_distance.mean()
    ) / every_distance.std(unbiased=False)
    assert torch.allclose(fused, expected, atol=1e-4)


def test_image_statistics_are_those_of_the_normal_images_scores() -> None:
    torch.manual_seed(0)
    logits, distances = torch.randn(6, 1, 10, 10), torch.rand(6, 1, 10, 10)
    prior = NormalPrior(score_top_fraction=0.05)  # the top 5 of 100 pixels
    prior.accumulate(logits[:4], distances[:4])
    prior.accumulate(logits[4:], distances[4:])
    prior.finish()
    logit_scores = logits.flatten(1).topk(5, dim=1).values.mean(dim=1)
    distance_scores = distances.flatten(1).topk(5, dim=1).values.mean(dim=1)
    assert torch.isclose(prior.image_logit.mean, logit_scores.mean(), atol=1e-5)
    assert torch.isclose(prior.image_distance.std, distance_scores.std(unbiased=False), atol=1e-5)
    expected = (logit_scores - logit_scores.mean()) / logit_scores.std(unbiased=False) + (
        distance_scores - distance_scores.mean()
    ) / distance_scores.std(unbiased=False)
    assert torch.allclose(prior.fuse_scores(logits, distances), expected, atol=1e-4)


def test_a_false_positive_spot_common_on_normals_does_not_outrank_a_defect_the_memory_sees() -> None:
    """Half the normal images carry a segmenter spot; a defect shows only in the memory's distance.

    Per pixel the spot is extreme (spots are rare among pixels), so the top of the pixel-fused map
    ranks the spotted normal first. Per image the spot is ordinary, and the distance is not.
    """
    torch.manual_seed(0)
    normals = 16
    logits = torch.full((normals, 1, 32, 32), -8.0) + 0.1 * torch.randn(normals, 1, 32, 32)
    logits[::2, :, 10:12, 10:12] = 4.0 + torch.rand(normals // 2, 1, 1, 1)  # spots on every other normal
    distances = 1.0 + 0.1 * torch.randn(normals, 1, 32, 32)
    prior = NormalPrior(score_top_fraction=0.001)
    prior.accumulate(logits, distances)
    prior.finish()
    spotted_logits = torch.full((1, 1, 32, 32), -8.0)
    spotted_logits[..., 20:22, 20:22] = 5.0
    spotted = (spotted_logits, torch.ones(1, 1, 32, 32))
    defect_distance = torch.ones(1, 1, 32, 32)
    defect_distance[..., 4:8, 4:8] = 2.0  # ten standard deviations above the normal pixels
    defect = (torch.full((1, 1, 32, 32), -8.0), defect_distance)
    assert prior.fuse(*spotted).max() > prior.fuse(*defect).max()  # what a pixel-fused image score would say
    assert prior.fuse_scores(*defect) > prior.fuse_scores(*spotted) + 3.0


def test_refuses_to_fuse_uncalibrated_or_without_normals() -> None:
    prior = NormalPrior()
    with pytest.raises(NotFittedError, match="not calibrated"):
        prior.fuse(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    with pytest.raises(NotFittedError, match="not calibrated"):
        prior.fuse_scores(torch.zeros(1, 1, 2, 2), torch.zeros(1, 1, 2, 2))
    with pytest.raises(InvalidInputError, match="no normal image"):
        prior.finish()
    with pytest.raises(InvalidInputError, match="upsample"):
        prior.accumulate(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2, 2))


def test_one_normal_image_standardises_its_scores_with_the_pixel_statistics(caplog) -> None:
    prior = NormalPrior()
    with caplog.at_level("WARNING"):
        prior.accumulate(torch.tensor([[[[0.0, 2.0]]]]), torch.tensor([[[[1.0, 5.0]]]]))
        prior.finish()  # one image has no spread of image scores
    assert "one normal image" in caplog.text
    assert prior.is_calibrated
    assert prior.image_distance.mean.item() == pytest.approx(3.0) and prior.image_distance.std.item() == pytest.approx(2.0)


def test_a_new_measurement_forgets_the_old_one() -> None:
    prior = NormalPrior()
    prior.accumulate(torch.full((2, 1, 2, 2), 100.0), torch.full((2, 1, 2, 2), 100.0))
    prior.reset()
    prior.accumulate(torch.tensor([[[[0.0, 2.0]]], [[[0.0, 2.0]]]]), torch.tensor([[[[1.0, 3.0]]], [[[1.0, 3.0]]]]))
    prior.finish()
    assert prior.pixel_logit.mean.item() == pytest.approx(1.0) and prior.pixel_distance.mean.item() == pytest.approx(2.0)
    assert prior.image_logit.mean.item() == pytest.approx(2.0)


def test_needs_the_normal_memory() -> None:
    with pytest.raises(InvalidInputError, match="normal_prior"):
        SegmenterModel(encoder="efficientnet_lite0", pretrained=False, normal_memory=False, normal_prior=True)
    with pytest.raises(InvalidInputError, match="normal_prior"):
        SegmenterModel(encoder=None, normal_prior=True)


def test_the_map_keeps_a_deviation_the_decoder_never_learned() -> None:
    """A decoder that says "no defect" everywhere still leaves the bright square above the surface in the map."""
    torch.manual_seed(0)
    model = SegmenterModel(encoder="efficientnet_lite0", pretrained=True, normal_prior=True).eval()
    for parameter in model.network.segmentation_head.parameters():
        torch.nn.init.zeros_(parameter)  # logits 0 on every pixel: the segmenter sees nothing
    model.memory.collect(model.memory_features(0.5 + 0.05 * torch.randn(4, 3, 128, 128)))
    model.memory.build(size=512)
    held_back = 0.5 + 0.05 * torch.randn(4, 3, 128, 128)  # other normals, as the validation ones are
    with torch.no_grad():
        model.prior.accumulate(*model.signals(held_back, with_distance=True))
    model.prior.finish()
    image = 0.5 + 0.05 * torch.randn(1, 3, 128, 128)
    image[..., 56:72, 56:72] = 1.0
    square = torch.zeros(128, 128, dtype=torch.bool)
    square[56:72, 56:72] = True
    with torch.no_grad():
        prediction, normal_predictions = model(image), model(held_back)
    fused = prediction.anomaly_map[0]
    assert prediction.pred_score[0] > normal_predictions.pred_score.max() + 3.0  # the image verdict follows
    corner = fused[:32, :32]  # far from the square: a normal surface, near 0
    assert corner.abs().mean() < 2.0
    assert fused[square].mean() > corner.mean() + 3.0  # standard-score units
    model.prior = None  # without the prior the map is the segmenter's probability alone: flat
    with torch.no_grad():
        assert model(image).anomaly_map.unique().tolist() == [0.5]


def _fit_with_prior(
    tiny_folder, fake_generator, tmp_path: Path, *, max_epochs: int
) -> tuple[SyntheticAnomalyDataModule, DefectSegmenter, Engine]:
    """A small prior-trained segmenter fitted by the Engine, with a validation set and a saved checkpoint."""
    datamodule = SyntheticAnomalyDataModule(tiny_folder, generator=fake_generator, anomaly_ratio=0.5, seed=0)
    model = DefectSegmenter(pretrained=False, memory_images=4, memory_size=64, normal_prior=True, visualizer=False)
    engine = Engine(
        max_epochs=max_epochs, accelerator="cpu", default_root_dir=tmp_path, enable_progress_bar=False, logger=False
    )
    engine.fit(model, datamodule=datamodule)
    return datamodule, model, engine


def test_engine_calibrates_on_validation_normals_and_the_checkpoint_keeps_it(
    tiny_folder, fake_generator, tmp_path: Path
) -> None:
    """Several validations; the saved statistics are those of the saved weights on the validation normals."""
    datamodule, model, engine = _fit_with_prior(tiny_folder, fake_generator, tmp_path, max_epochs=3)
    assert model.model.prior.is_calibrated
    reloaded = DefectSegmenter.load_from_checkpoint(engine.best_model_path)
    assert reloaded.hparams["normal_prior"] and reloaded.model.prior.is_calibrated
    stored = {name: buffer.clone() for name, buffer in reloaded.model.prior.named_buffers()}
    reloaded._calibrate_prior([datamodule.val_dataloader()], "validation")  # again, by hand, for those weights
    for name, buffer in reloaded.model.prior.named_buffers():
        assert torch.allclose(buffer, stored[name], rtol=1e-5), name
    # A prior measured on the training normals instead would differ: the check above can fail.
    reloaded._calibrate_prior([datamodule.train_dataloader()], "training")
    assert not torch.allclose(reloaded.model.prior.pixel_distance.mean, stored["pixel_distance.mean"])
    (results,) = engine.test(model, datamodule=datamodule, ckpt_path=engine.best_model_path, verbose=False)
    assert all(torch.isfinite(torch.tensor(float(value))) for value in results.values())


def test_a_checkpoint_loaded_with_the_prior_switched_the_other_way_is_refused_by_name(
    tiny_folder, fake_generator, tmp_path: Path
) -> None:
    """It failed in load_state_dict on keys it did not explain; its thresholds are on the fused scale anyway."""
    _, _, engine = _fit_with_prior(tiny_folder, fake_generator, tmp_path, max_epochs=1)
    with pytest.raises(InvalidInputError, match="holds a normal prior and the model it is loaded into has none") as refused:
        DefectSegmenter.load_from_checkpoint(engine.best_model_path, normal_prior=False)
    assert "load_from_checkpoint(path, normal_prior=True)" in refused.value.fix
    with pytest.raises(InvalidInputError, match="holds a normal memory"):
        DefectSegmenter.load_from_checkpoint(engine.best_model_path, normal_memory=False, normal_prior=False)
    assert DefectSegmenter.load_from_checkpoint(engine.best_model_path).model.prior.is_calibrated


def test_without_validation_it_calibrates_on_training_normals(tiny_folder, fake_generator, tmp_path: Path, caplog) -> None:
    datamodule = SyntheticAnomalyDataModule(
        tiny_folder, generator=fake_generator, anomaly_ratio=0.5, seed=0, val_split="none"
    )
    model = DefectSegmenter(pretrained=False, memory_images=4, memory_size=64, normal_prior=True, visualizer=False)
    engine = Engine(max_steps=2, accelerator="cpu", default_root_dir=tmp_path, enable_progress_bar=False, logger=False)
    engine.fit(model, datamodule=datamodule)
    assert not model.model.prior.is_calibrated  # no validation ran
    with caplog.at_level("WARNING"):
        engine.test(model, datamodule=datamodule, verbose=False)
    assert model.model.prior.is_calibrated
    assert "training normals" in caplog.text


def test_last_components_are_the_two_parts_of_the_fused_image_score() -> None:
    torch.manual_seed(0)
    prior = NormalPrior(score_top_fraction=0.1)
    prior.accumulate(torch.randn(4, 1, 8, 8), torch.rand(4, 1, 8, 8))
    prior.finish()
    assert prior.last_components is None
    logits, distance = torch.randn(3, 1, 8, 8), torch.rand(3, 1, 8, 8)
    fused = prior.fuse_scores(logits, distance)
    parts = prior.last_components
    assert set(parts) == {"segmenter", "memory"} and parts["segmenter"].shape == (3,)
    assert torch.allclose(parts["segmenter"] + parts["memory"], fused)
    assert "last_components" not in prior.state_dict()


def test_the_fused_map_is_shown_scaled_per_image() -> None:
    """Standard scores run far outside [0, 1]; anomalib's default visualizer would clip them to one colour."""
    from anomaly_synth_aug.models.segmenter import DefectSegmenter

    for fused in (DefectSegmenter(pretrained=False, normal_prior=True), DefectSegmenter(pretrained=False)):
        assert fused.visualizer.fields_config["anomaly_map"]["normalize"] is True
    plain = DefectSegmenter(pretrained=False, normal_prior=False)  # a probability map: anomalib's default
    assert plain.visualizer.fields_config["anomaly_map"]["normalize"] is False


@pytest.mark.parametrize(
    ("options", "memory", "prior"),
    [
        ({}, True, True),  # the default: the strongest detector measured
        ({"normal_prior": False}, True, False),
        ({"normal_memory": False}, False, False),
        ({"encoder": None, "base_width": 2}, False, False),  # the from-scratch U-Net has no memory to add
    ],
)
def test_the_prior_is_on_by_default_wherever_the_memory_is(options: dict, memory: bool, prior: bool) -> None:
    from anomaly_synth_aug.models.segmenter import DefectSegmenter

    model = DefectSegmenter(pretrained=False, visualizer=False, **options).model
    assert (model.memory is not None, model.prior is not None) == (memory, prior)

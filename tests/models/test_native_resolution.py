"""Fixed-input detectors are scored at native resolution: image resized for the model, map resized back."""

from __future__ import annotations

import torch
from anomalib.data import ImageBatch

from anomaly_synth_aug.models.native_resolution import NativeResolutionPreProcessor


def test_the_model_sees_its_size_and_the_metrics_see_the_native_one() -> None:
    pre_processor = NativeResolutionPreProcessor((64, 64))
    mask = torch.zeros(1, 48, 80, dtype=torch.bool)
    mask[0, 10:20, 30:50] = True
    batch = ImageBatch(image=torch.rand(1, 3, 48, 80), gt_mask=mask, gt_label=torch.tensor([1]))
    pre_processor.on_test_batch_start(None, None, batch, 0)
    assert batch.image.shape == (1, 3, 64, 64) and batch.gt_mask.shape == (1, 48, 80)
    assert abs(float(batch.image.mean())) < 1.0  # ImageNet-normalised
    model_map = torch.zeros(1, 64, 64)
    model_map[0, 13:27, 24:40] = 1.0  # the defect box in the model's 64 x 64 frame
    batch.update(anomaly_map=model_map, pred_score=torch.tensor([1.0]))
    pre_processor.on_test_batch_end(None, None, batch, batch, 0)
    assert batch.anomaly_map.shape == (1, 48, 80)
    assert batch.anomaly_map[mask].mean() > 0.8 and batch.anomaly_map[~mask].mean() < 0.1


def test_no_resize_is_handed_to_the_datasets_and_training_batches_are_only_normalised() -> None:
    """anomalib appends a pre-processor's Resize to the datasets' augmentations, which would shrink the masks."""
    from anomalib.data.transforms.utils import extract_transforms_by_type
    from torchvision.transforms.v2 import Resize

    pre_processor = NativeResolutionPreProcessor((64, 64))
    assert not extract_transforms_by_type(pre_processor.transform, Resize)
    batch = ImageBatch(image=torch.full((2, 3, 64, 64), 0.5))
    pre_processor.on_train_batch_start(None, None, batch, 0)
    assert batch.image.shape == (2, 3, 64, 64) and not torch.allclose(batch.image, torch.full_like(batch.image, 0.5))
    raw = NativeResolutionPreProcessor((64, 64), imagenet_normalization=False)
    assert raw.transform is None


def test_the_checkpoint_config_brings_back_the_size_and_still_resizes_in_a_plain_pre_processor() -> None:
    """The saved transform was the normalisation alone: a model reloaded with its default ``PreProcessor`` saw
    native-size images (a shape error in PaDiM, silently wrong scores in PatchCore)."""
    from anomalib.pre_processing import PreProcessor

    config = NativeResolutionPreProcessor((32, 40)).checkpoint_config()
    plain = PreProcessor()
    plain.load_checkpoint_config(config)
    batch = torch.rand(2, 3, 48, 80)
    assert plain.transform(batch).shape == (2, 3, 32, 40)
    restored = NativeResolutionPreProcessor((256, 256), imagenet_normalization=False)
    restored.load_checkpoint_config(config)
    assert restored.image_size == (32, 40) and restored.imagenet_normalization
    assert torch.allclose(restored.transform(batch), NativeResolutionPreProcessor((32, 40)).transform(batch))
    raw = NativeResolutionPreProcessor((16, 16), imagenet_normalization=False).checkpoint_config()
    restored.load_checkpoint_config(raw)
    assert restored.image_size == (16, 16) and restored.transform is None


def test_a_reloaded_padim_scores_as_the_live_one(tmp_path) -> None:
    from anomalib.engine import Engine
    from anomalib.models import Padim
    from shared_fixtures import make_folder_datamodule, make_mvtec_layout
    from torchvision.transforms.v2 import Resize

    root = make_mvtec_layout(tmp_path / "wide", size=(48, 80))
    datamodule = make_folder_datamodule(root, val_split_mode="same_as_test", train_augmentations=Resize((32, 32)))

    def padim(pre_processor: NativeResolutionPreProcessor | None = None) -> dict:
        options = {"pre_processor": pre_processor} if pre_processor is not None else {}
        base = {"backbone": "resnet18", "pre_trained": False, "layers": ["layer1"], "n_features": 20}
        return {**base, "visualizer": False, **options}

    model = Padim(**padim(NativeResolutionPreProcessor((32, 32))))
    engine = Engine(max_epochs=1, accelerator="cpu", default_root_dir=tmp_path, enable_progress_bar=False, logger=False)
    engine.fit(model, datamodule=datamodule)
    (live,) = engine.test(model, datamodule=datamodule, verbose=False)
    native = Padim.load_from_checkpoint(engine.best_model_path, **padim(NativeResolutionPreProcessor((99, 99))))
    assert native.pre_processor.image_size == (32, 32)
    (reloaded,) = engine.test(native, datamodule=datamodule, verbose=False)
    assert reloaded == live
    plain = Padim.load_from_checkpoint(engine.best_model_path, **padim())
    (at_model_size,) = engine.test(plain, datamodule=datamodule, verbose=False)  # resizes: no shape error
    assert 0.0 <= at_model_size["image_AUROC"] <= 1.0

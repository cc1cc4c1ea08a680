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

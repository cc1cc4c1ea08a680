"""``frozen_feature_extractor``: one shared inference-only pyramid; ``imagenet_input``: the detectors' normalisation."""

import pytest
import torch

from anomaly_synth_aug.backbones import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    frozen_feature_extractor,
    imagenet_input,
    pretrained_timm_model,
)
from anomaly_synth_aug.backbones.frozen_features import DETECTOR_FEATURE_INDICES, fold_batch_norms
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators.diffusion.realism import ShotRealism
from anomaly_synth_aug.generators.diffusion.visibility import FeatureContrast


def test_the_visibility_and_realism_measures_share_one_frozen_backbone() -> None:
    extractor = frozen_feature_extractor("efficientnet_lite0", DETECTOR_FEATURE_INDICES)
    assert FeatureContrast().extractor is extractor
    assert ShotRealism().extractor is extractor
    assert not extractor.training
    assert not any(parameter.requires_grad for parameter in extractor.parameters())
    strides = [8, 16]
    maps = extractor(torch.zeros(1, 3, 64, 64))
    assert [64 // m.shape[-1] for m in maps] == strides


def test_the_faster_frozen_pyramid_computes_what_the_plain_model_does() -> None:
    """Folded batch norms and channels-last change nothing but float rounding, at any input size."""
    plain = pretrained_timm_model("efficientnet_lite0", features_only=True, out_indices=(2, 3))
    fast = frozen_feature_extractor("efficientnet_lite0", DETECTOR_FEATURE_INDICES)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in fast.modules())  # every one folded
    with torch.no_grad():
        for size in ((64, 64), (77, 131)):
            images = imagenet_input(torch.rand(2, 3, *size, generator=torch.Generator().manual_seed(0)))
            for expected, got in zip(plain(images), fast(images), strict=True):
                assert torch.allclose(got, expected, atol=1e-3, rtol=1e-4)


def test_the_shared_pyramid_refuses_training_and_keeps_only_the_blocks_it_needs() -> None:
    fast = frozen_feature_extractor("efficientnet_lite0", DETECTOR_FEATURE_INDICES)
    assert fast.feature_info.module_name() == ["blocks.2", "blocks.4"]
    assert len(fast.model.blocks) == 5  # blocks 5 and 6 feed no requested map
    with pytest.raises(InvalidInputError, match="inference only"):
        fast.train()
    assert fast.eval() is fast and not fast.training


def test_fold_batch_norms_skips_a_norm_of_another_width() -> None:
    block = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(5)).eval()
    assert fold_batch_norms(block) == 0
    assert isinstance(block[1], torch.nn.BatchNorm2d)


def test_fold_batch_norms_keeps_the_activation_of_a_fused_norm_act() -> None:
    from timm.layers import BatchNormAct2d

    block = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), BatchNormAct2d(4, act_layer=torch.nn.ReLU))
    block[1].running_mean.normal_(generator=torch.Generator().manual_seed(1))
    block.eval()
    images = torch.randn(1, 3, 8, 8)
    with torch.no_grad():
        expected = block(images)
        assert fold_batch_norms(block) == 1
        got = block(images)
    assert torch.allclose(got, expected, atol=1e-5) and bool((got >= 0).all())


def test_imagenet_input_normalises_grey_rgb_and_rgba_alike() -> None:
    grey = torch.full((1, 4, 5), 0.5)
    expected = (0.5 - torch.tensor(IMAGENET_MEAN)) / torch.tensor(IMAGENET_STD)
    out = imagenet_input(grey)
    assert out.shape == (3, 4, 5)
    assert torch.allclose(out[:, 0, 0], expected)
    rgba = torch.cat([grey.expand(3, -1, -1), torch.zeros(1, 4, 5)])
    assert torch.equal(imagenet_input(rgba), out)
    assert torch.equal(imagenet_input(grey[None].expand(2, -1, -1, -1))[1], out)  # batched


def test_imagenet_input_names_a_bad_shape() -> None:
    with pytest.raises(InvalidInputError, match="1, 3 or 4 channels"):
        imagenet_input(torch.zeros(2, 4, 5))

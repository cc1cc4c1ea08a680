"""``frozen_feature_extractor``: one shared inference-only pyramid; ``imagenet_input``: the detectors' normalisation."""

import pytest
import torch

from anomaly_synth_aug.backbones import IMAGENET_MEAN, IMAGENET_STD, frozen_feature_extractor, imagenet_input
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators.diffusion.realism import ShotRealism
from anomaly_synth_aug.generators.diffusion.visibility import FeatureContrast


def test_the_visibility_and_realism_measures_share_one_frozen_backbone() -> None:
    extractor = frozen_feature_extractor("efficientnet_lite0", (2, 3))
    assert FeatureContrast().extractor is extractor
    assert ShotRealism().extractor is extractor
    assert not extractor.training
    assert not any(parameter.requires_grad for parameter in extractor.parameters())
    strides = [8, 16]
    maps = extractor(torch.zeros(1, 3, 64, 64))
    assert [64 // m.shape[-1] for m in maps] == strides


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

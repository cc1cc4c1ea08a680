"""Shared fixtures: offline mode, thread count, tiny on-disk datasets, the real dataset when present."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from pathlib import Path

import pytest
import torch
from anomalib.data import Folder
from shared_fixtures import MAGNETIC_TILE, MVTEC_SCREW, FakeSquareGenerator, make_folder_datamodule, make_mvtec_layout

# One intra-op thread: tests are small, and two threads fight over the 2 CI cores
# (measured: small torchvision ops 100x slower when cores are busy).
torch.set_num_threads(1)


@pytest.fixture(scope="session")
def magnetic_tile_root() -> Path:
    """The real Magnetic Tile dataset beside the project, or a skip that says where it was looked for."""
    if not (MAGNETIC_TILE / "train" / "good").is_dir():
        pytest.skip(f"Magnetic Tile dataset not found at {MAGNETIC_TILE} (integration test; needs ../shared/data)")
    return MAGNETIC_TILE


@pytest.fixture(scope="session")
def mvtec_screw_root() -> Path:
    """MVTec AD's screw beside the project, or a skip that says where it was looked for."""
    if not (MVTEC_SCREW / "train" / "good").is_dir():
        pytest.skip(f"MVTec screw not found at {MVTEC_SCREW} (integration test; needs ../shared/data)")
    return MVTEC_SCREW


@pytest.fixture
def tiny_mvtec(tmp_path: Path) -> Path:
    """A tiny MVTec-layout dataset (2 defect types, 48x64 grayscale PNGs, soft masks)."""
    return make_mvtec_layout(tmp_path / "tiny")


@pytest.fixture
def fake_generator() -> FakeSquareGenerator:
    return FakeSquareGenerator()


@pytest.fixture
def tiny_folder(tiny_mvtec: Path) -> Folder:
    """A ``Folder`` datamodule (not set up) over ``tiny_mvtec``: batch 4, no workers, no val split."""
    return make_folder_datamodule(tiny_mvtec)

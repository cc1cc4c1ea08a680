"""Shared fixtures: offline mode, thread count, tiny on-disk datasets, the real dataset when present."""

from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

MAGNETIC_TILE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "magnetic_tile"


@pytest.fixture(scope="session")
def magnetic_tile_root() -> Path:
    """The real Magnetic Tile dataset beside the project, or a skip that says where it was looked for."""
    if not (MAGNETIC_TILE / "train" / "good").is_dir():
        pytest.skip(f"Magnetic Tile dataset not found at {MAGNETIC_TILE} (integration test; needs ../shared/data)")
    return MAGNETIC_TILE


def _texture(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth grayscale texture with a little noise: a stand-in for a product surface."""
    yy, xx = np.mgrid[0:height, 0:width]
    base = 120 + 30 * np.sin(xx / (3 + rng.random() * 3)) * np.cos(yy / (4 + rng.random() * 3))
    return np.clip(base + rng.normal(0, 6, (height, width)), 0, 255).astype(np.uint8)


def make_mvtec_layout(
    root: Path,
    *,
    n_train: int = 12,
    n_test_good: int = 4,
    defects: dict[str, int] | None = None,
    size: tuple[int, int] = (48, 64),
    soft_masks: bool = True,
    ext: str = ".png",
    seed: int = 0,
) -> Path:
    """Write a tiny MVTec-layout dataset: train/good, test/good, test/<type>, ground_truth/<type>.

    Defects are dark blobs (``scratch``: a line) with masks that have soft (anti-aliased) edges
    when ``soft_masks`` so the >127 binarisation rule is exercised.
    """
    defects = defects if defects is not None else {"blob": 6, "scratch": 6}
    rng = np.random.default_rng(seed)
    height, width = size

    def save(img: np.ndarray, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(path)

    for i in range(n_train):
        save(_texture(rng, height, width), root / "train" / "good" / f"{i:03d}{ext}")
    for i in range(n_test_good):
        save(_texture(rng, height, width), root / "test" / "good" / f"{i:03d}{ext}")
    yy, xx = np.mgrid[0:height, 0:width]
    for defect, count in defects.items():
        for i in range(count):
            img = _texture(rng, height, width).astype(np.float32)
            cy, cx = rng.integers(10, height - 10), rng.integers(10, width - 10)
            if defect == "scratch":
                dist = np.abs((yy - cy) - 0.5 * (xx - cx)) / np.sqrt(1.25)
                inside = (dist < 2.5) & (np.abs(xx - cx) < 12)
                soft = np.clip(3.0 - dist, 0, 1) * (np.abs(xx - cx) < 12)
            else:
                dist = np.sqrt((yy - cy) ** 2 + (xx - cx) ** 2)
                r = 4 + rng.random() * 3
                inside = dist < r
                soft = np.clip(r + 1 - dist, 0, 1)
            img[inside] *= 0.35
            save(img.astype(np.uint8), root / "test" / defect / f"{i:03d}{ext}")
            mask = (soft * 255).astype(np.uint8) if soft_masks else (inside * 255).astype(np.uint8)
            save(mask, root / "ground_truth" / defect / f"{i:03d}_mask.png")
    return root


@pytest.fixture
def tiny_mvtec(tmp_path: Path) -> Path:
    """A tiny MVTec-layout dataset (2 defect types, 48x64 grayscale PNGs, soft masks)."""
    return make_mvtec_layout(tmp_path / "tiny")

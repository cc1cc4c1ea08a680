"""Test helpers shared across test folders: tiny MVTec-layout writer, fake generators, Folder factory.

Imported as ``from shared_fixtures import ...`` (``tests/`` is on ``pythonpath``); a module with a
unique name, because ``from conftest import`` picks whichever conftest.py was imported first.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType
from typing import ClassVar

import numpy as np
import torch
from anomalib.data import Folder
from PIL import Image

from safetensors.torch import load_file, save_file

from anomaly_synth_aug.data.sample import AnomalySample
from anomaly_synth_aug.generators.base import AnomalyGenerator, GeneratedBatch

MAGNETIC_TILE = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "magnetic_tile"
MVTEC_SCREW = MAGNETIC_TILE.with_name("mvtec_screw")
BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


def load_script(name: str) -> ModuleType:
    """A benchmark script (``benchmarks/<name>.py``, not a package) as a module."""
    spec = importlib.util.spec_from_file_location(f"benchmarks_{name}", BENCHMARKS / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


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


def paint_squares(
    images: list[torch.Tensor],
    side: int,
    value: torch.Tensor,
    generator: torch.Generator | list[torch.Generator] | None,
) -> GeneratedBatch:
    """Each image with a ``side``-px square of ``value`` at a seeded random place; type "square".

    ``generator`` may be one stream for all images or one per image.
    """
    out_images, out_masks = [], []
    for index, image in enumerate(images):
        stream = generator[index] if isinstance(generator, list) else generator
        height, width = image.shape[-2:]
        side_here = min(side, height, width)
        top = int(torch.randint(0, height - side_here + 1, (1,), generator=stream))
        left = int(torch.randint(0, width - side_here + 1, (1,), generator=stream))
        mask = torch.zeros(height, width, dtype=torch.bool)
        mask[top : top + side_here, left : left + side_here] = True
        out_images.append(torch.where(mask, value.expand_as(image), image))
        out_masks.append(mask)
    return GeneratedBatch(out_images, out_masks, ["square"] * len(images))


class FakeSquareGenerator(AnomalyGenerator):
    """A tiny deterministic generator for wrapper tests: paints a white square, records each call's batch size."""

    per_sample_generators = True

    def __init__(self, side: int = 6) -> None:
        super().__init__()
        self.side = side
        self.calls: list[int] = []

    @property
    def defect_types(self) -> list[str]:
        return ["square"]

    def _generate(
        self,
        images: list[torch.Tensor],
        masks: list[torch.Tensor | None],
        defect_types: list[str | None],
        generator: torch.Generator | None,
    ) -> GeneratedBatch:
        self.calls.append(len(images))
        return paint_squares(images, self.side, torch.ones(1), generator)


class FakeLearnedGenerator(FakeSquareGenerator):
    """``FakeSquareGenerator`` that must be fitted first; records what ``fit`` received."""

    requires_fit = True

    def _fit(
        self, normal_images: list[torch.Tensor], shots: list[AnomalySample], generator: torch.Generator | None
    ) -> None:
        self.fit_normals = len(normal_images)
        self.fit_shot_paths = [shot.image_path for shot in shots]


class CountingLearnedGenerator(AnomalyGenerator):
    """Learns one brightness from the shots (saved with safetensors) and counts its ``fit`` calls."""

    requires_fit = True
    fit_calls: ClassVar[int] = 0

    def __init__(self, side: int = 6) -> None:
        super().__init__()
        self.side = side
        self.brightness = torch.zeros(1)

    @property
    def defect_types(self) -> list[str]:
        return ["square"]

    def _fit(self, normal_images, shots, generator) -> None:
        type(self).fit_calls += 1
        self.brightness = torch.stack([shot.image[:, shot.mask].mean() for shot in shots]).mean().reshape(1)

    def _save_state(self, directory: Path) -> None:
        save_file({"brightness": self.brightness}, directory / "state.safetensors")

    def _load_state(self, directory: Path) -> None:
        self.brightness = load_file(directory / "state.safetensors")["brightness"]

    def _generate(self, images, masks, defect_types, generator) -> GeneratedBatch:
        return paint_squares(images, self.side, self.brightness, generator)


def make_folder_datamodule(root: Path, *, defect_types: list[str] | None = None, **kwargs) -> Folder:
    """An anomalib ``Folder`` datamodule over an MVTec-layout folder (train/good, test/<type>, ground_truth/<type>).

    ``defect_types`` defaults to every ``test/<type>`` folder; keyword arguments go to ``Folder``.
    """
    if defect_types is None:
        defect_types = sorted(p.name for p in (root / "test").iterdir() if p.is_dir() and p.name != "good")
    options = {
        "normal_test_dir": "test/good",
        "train_batch_size": 4,
        "eval_batch_size": 4,
        "num_workers": 0,
        "val_split_mode": "none",
        **kwargs,
    }
    return Folder(
        name=root.name,
        root=root,
        normal_dir="train/good",
        abnormal_dir=[f"test/{t}" for t in defect_types],
        mask_dir=[f"ground_truth/{t}" for t in defect_types],
        **options,
    )


#: The metrics every benchmark run reports on test (``benchmark_evaluator``'s test metrics).
TEST_METRICS = frozenset(
    {"image_AUROC", "image_AUPR", "pixel_AUROC", "pixel_AUPR", "pixel_AUPRO", "image_F1Score", "pixel_F1Score"}
)


def assert_ranking_metrics(metrics: dict, names=("image_AUROC", "image_AUPR", "pixel_AUROC", "pixel_AUPR")) -> None:
    """Each named metric is present and a real number in [0, 1]: a missing, renamed or NaN metric fails."""
    import math

    for name in names:
        value = metrics.get(name)
        assert value is not None, f"{name} missing from {sorted(metrics)}"
        assert math.isfinite(float(value)) and 0.0 <= float(value) <= 1.0, f"{name} = {value}"

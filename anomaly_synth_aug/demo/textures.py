"""An embedded demo dataset: scikit-image's texture photos with drawn defects, in MVTec layout.

The demo must run offline on a fresh machine, so its data comes from images that
``scikit-image`` ships inside its wheel (``skimage.data.brick/grass/gravel``, 512x512
grayscale). Normal images are random crops (with flips) of one texture; defects are
*drawn* with OpenCV on other crops -- scratches, blobs and cracks -- so every mask is
exact. It is a toy stand-in for a product surface, labelled ``DEMO`` everywhere
(folder names and a README in the dataset), never to be confused with real results.
"""

from __future__ import annotations

import json
import shutil
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from PIL import Image
from skimage import data as skimage_data

from anomaly_synth_aug.errors import InvalidInputError

DEMO_TEXTURES: tuple[str, ...] = ("brick", "grass", "gravel")
DEMO_DEFECT_TYPES: tuple[str, ...] = ("blob", "crack", "scratch")
DEMO_DATASET_PREFIX = "DEMO_textures"
#: Written last into a demo dataset: the arguments it was built with (and the mark that it is one).
SPEC_FILE = "demo_dataset.json"
SPEC_VERSION = 1

_README = """DEMO DATASET -- NOT REAL INSPECTION DATA

Built by `anomaly-synth-aug demo` from the '{texture}' texture that scikit-image ships
(skimage.data.{texture}). Normal images are random crops/flips of the texture; the
defects ({defects}) are drawn with OpenCV, so the masks are exact. Numbers measured on
this dataset show that the pipeline runs end to end; they say nothing about real defects.
"""


def load_texture(name: str) -> np.ndarray:
    """A scikit-image texture as uint8 grayscale ``[H, W]`` (no download: the files ship in the wheel)."""
    if name not in DEMO_TEXTURES:
        raise InvalidInputError(f"unknown demo texture {name!r}", fix=f"use one of {list(DEMO_TEXTURES)}")
    image = getattr(skimage_data, name)()
    if image.ndim == 3:
        image = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
    return np.ascontiguousarray(image, dtype=np.uint8)


def random_crop(texture: np.ndarray, size: int, rng: np.random.Generator) -> np.ndarray:
    """A random ``size`` x ``size`` crop, randomly flipped: one "normal" product image."""
    height, width = texture.shape
    if size > min(height, width):
        raise InvalidInputError(
            f"image_size {size} is larger than the texture ({height}x{width})",
            fix=f"use image_size <= {min(height, width)}",
        )
    top = int(rng.integers(0, height - size + 1))
    left = int(rng.integers(0, width - size + 1))
    crop = texture[top : top + size, left : left + size]
    if rng.random() < 0.5:
        crop = crop[:, ::-1]
    if rng.random() < 0.5:
        crop = crop[::-1, :]
    return np.ascontiguousarray(crop)


def _random_points(rng: np.random.Generator, size: int, count: int, step: float) -> np.ndarray:
    """A random walk of ``count`` points with steps of about ``step`` pixels, kept inside the image."""
    margin = size // 8
    points = [rng.uniform(margin, size - margin, 2)]
    heading = rng.uniform(0, 2 * np.pi)
    for _ in range(count - 1):
        heading += rng.normal(0, 0.5)
        points.append(points[-1] + step * np.array([np.cos(heading), np.sin(heading)]))
    return np.clip(np.round(points), 0, size - 1).astype(np.int32)


def draw_scratch(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A thin, slightly curved bright line."""
    size = image.shape[0]
    mask = np.zeros_like(image)
    points = _random_points(rng, size, count=4, step=size / 8)
    cv2.polylines(mask, [points.reshape(-1, 1, 2)], False, 255, thickness=max(1, size // 64), lineType=cv2.LINE_8)
    bright = 0.35 * image.astype(np.float32) + 0.65 * 235
    return np.where(mask > 0, bright, image).astype(np.uint8), mask


def draw_blob(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark stain: a filled ellipse that keeps some of the texture underneath."""
    size = image.shape[0]
    mask = np.zeros_like(image)
    center = tuple(int(c) for c in rng.integers(size // 6, size - size // 6, 2))
    axes = tuple(int(a) for a in rng.integers(max(2, size // 20), max(3, size // 9), 2))
    cv2.ellipse(mask, center, axes, float(rng.uniform(0, 180)), 0, 360, 255, thickness=-1)
    stained = 0.45 * image.astype(np.float32) + 10
    return np.where(mask > 0, stained, image).astype(np.uint8), mask


def draw_crack(image: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A dark, jagged line with one branch."""
    size = image.shape[0]
    mask = np.zeros_like(image)
    trunk = _random_points(rng, size, count=7, step=size / 14)
    branch_start = trunk[len(trunk) // 2].astype(np.float64)
    branch = [branch_start]
    heading = rng.uniform(0, 2 * np.pi)
    for _ in range(3):
        heading += rng.normal(0, 0.6)
        branch.append(branch[-1] + size / 16 * np.array([np.cos(heading), np.sin(heading)]))
    branch_points = np.clip(np.round(branch), 0, size - 1).astype(np.int32)
    thickness = max(1, size // 96)
    for line in (trunk, branch_points):
        cv2.polylines(mask, [line.reshape(-1, 1, 2)], False, 255, thickness=thickness, lineType=cv2.LINE_8)
    dark = 0.25 * image.astype(np.float32)
    return np.where(mask > 0, dark, image).astype(np.uint8), mask


DEFECT_PAINTERS: dict[str, Callable[[np.ndarray, np.random.Generator], tuple[np.ndarray, np.ndarray]]] = {
    "blob": draw_blob,
    "crack": draw_crack,
    "scratch": draw_scratch,
}


def demo_category_name(texture: str) -> str:
    """The demo category's folder name, e.g. ``DEMO_textures_brick``."""
    return f"{DEMO_DATASET_PREFIX}_{texture}"


def _saved_spec(category: Path) -> dict[str, Any] | None:
    spec_path = category / SPEC_FILE
    return json.loads(spec_path.read_text()) if spec_path.is_file() else None


def build_texture_dataset(
    root: str | Path,
    texture: str = "brick",
    *,
    image_size: int = 128,
    n_train: int = 60,
    n_test_good: int = 12,
    n_per_defect: int = 9,
    defect_types: Sequence[str] = DEMO_DEFECT_TYPES,
    seed: int = 0,
) -> Path:
    """Write one demo category ``root/DEMO_textures_<texture>`` in MVTec layout and return its path.

    ``n_per_defect`` images per defect type go to ``test/<type>`` (the few-shot split later
    gives the first third to the generator as shots, the rest are held-out test anomalies),
    with binary masks in ``ground_truth/<type>/<stem>_mask.png``. Same arguments, same files:
    an existing folder built with the same arguments is kept as is (caches key on file times),
    one built with other arguments is replaced. The folder appears complete or not at all.
    """
    unknown = sorted(set(defect_types) - set(DEFECT_PAINTERS))
    if unknown:
        raise InvalidInputError(f"unknown demo defect types {unknown}", fix=f"use some of {sorted(DEFECT_PAINTERS)}")
    if min(n_train, n_test_good, n_per_defect) < 1:
        raise InvalidInputError(
            "n_train, n_test_good and n_per_defect must all be >= 1",
            fix="the few-shot split needs normals, test normals and at least one defect per type",
        )
    texture_image = load_texture(texture)
    random_crop(texture_image, image_size, np.random.default_rng(0))  # checks image_size before writing anything
    spec = {
        "format_version": SPEC_VERSION,
        "texture": texture,
        "image_size": image_size,
        "n_train": n_train,
        "n_test_good": n_test_good,
        "n_per_defect": n_per_defect,
        "defect_types": list(defect_types),
        "seed": seed,
    }
    category = Path(root) / demo_category_name(texture)
    if category.exists():
        saved = _saved_spec(category)
        if saved == spec:
            return category
        if saved is None:
            raise InvalidInputError(
                "folder exists but is not a demo dataset; refusing to replace it",
                path=category,
                fix="choose another output folder",
            )
        shutil.rmtree(category)
    category.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{category.name}.tmp-", dir=category.parent))
    try:
        _write_dataset(staging, texture_image, spec)
        staging.rename(category)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return category


def _write_dataset(folder: Path, texture_image: np.ndarray, spec: dict[str, Any]) -> None:
    rng = np.random.default_rng(spec["seed"])
    size = spec["image_size"]

    def save(array: np.ndarray, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(array).save(path)

    for index in range(spec["n_train"]):
        save(random_crop(texture_image, size, rng), folder / "train" / "good" / f"{index:03d}.png")
    for index in range(spec["n_test_good"]):
        save(random_crop(texture_image, size, rng), folder / "test" / "good" / f"{index:03d}.png")
    for defect_type in spec["defect_types"]:
        for index in range(spec["n_per_defect"]):
            image, mask = DEFECT_PAINTERS[defect_type](random_crop(texture_image, size, rng), rng)
            save(image, folder / "test" / defect_type / f"{index:03d}.png")
            save(mask, folder / "ground_truth" / defect_type / f"{index:03d}_mask.png")
    (folder / "README.txt").write_text(
        _README.format(texture=spec["texture"], defects=", ".join(spec["defect_types"]))
    )
    (folder / SPEC_FILE).write_text(json.dumps(spec, indent=2))

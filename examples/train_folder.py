"""Train and test an anomalib model on Magnetic Tile with synthetic defects, fully offline.

anomalib's ``Folder`` datamodule finds the files; ``SyntheticAnomalyDataModule`` wraps it:
a third of each defect type's real images become shots for the generator (and leave the
test set), half of the training normals get a pasted real-shot defect with its mask, and
validation uses held-back normals with fixed synthetic defects. ``DefectSegmenter`` (a U-Net over
EfficientNet-Lite0 with ImageNet weights that install with the package: nothing downloads) learns
from those masks on defect-centred crops at native resolution and predicts on whole images.

Run from the project root::

    python examples/train_folder.py --max-steps 600
    # on a fresh clone without ../shared, on the demo's dataset (run `anomaly-synth-aug demo` first):
    python examples/train_folder.py --root results/demo/data/DEMO_textures_brick --defect-types blob crack scratch
"""

from __future__ import annotations

import argparse
import os
import warnings
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for remote weights
warnings.filterwarnings("ignore", message=r"Importing from timm.models.layers is deprecated")  # anomalib's imports
warnings.filterwarnings("ignore", message=r"The anomalib.models.components.dinov2 package is deprecated")

from anomalib.data import Folder  # noqa: E402
from anomalib.engine import Engine  # noqa: E402

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule  # noqa: E402
from anomaly_synth_aug.data.mvtec_folder import scan_mvtec_folder  # noqa: E402
from anomaly_synth_aug.data.transforms import native_crop_augmentations  # noqa: E402
from anomaly_synth_aug.generators.real_paste import RealShotPasteGenerator  # noqa: E402
from anomaly_synth_aug.errors import AnomalySynthError  # noqa: E402
from anomaly_synth_aug.models import DefectSegmenter  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MAGNETIC_TILE = PROJECT_ROOT.parent / "shared" / "data" / "magnetic_tile"
DEFECT_TYPES = ("blowhole", "break", "crack", "fray", "uneven")


def build_datamodule(
    root: Path, defect_types: tuple[str, ...], batch_size: int, crop_size: int
) -> SyntheticAnomalyDataModule:
    """Folder over an MVTec-layout category, wrapped to inject real-shot pastes into training."""
    folder = Folder(
        name=root.name,
        root=root,
        normal_dir="train/good",
        abnormal_dir=[f"test/{defect}" for defect in defect_types],
        normal_test_dir="test/good",
        mask_dir=[f"ground_truth/{defect}" for defect in defect_types],
        extensions=(".jpg", ".png"),  # Folder filters the mask folders with these too: masks are PNG
        val_split_mode="none",  # the wrapper validates on held-back normals with synthetic defects
        train_batch_size=batch_size,
        eval_batch_size=1,  # whole images at native resolution differ in size
        num_workers=2,
        train_augmentations=native_crop_augmentations(crop_size),
    )
    return SyntheticAnomalyDataModule(folder, generator=RealShotPasteGenerator(), anomaly_ratio=0.5, seed=0)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=MAGNETIC_TILE, help="MVTec-layout category folder")
    parser.add_argument("--defect-types", nargs="+", default=list(DEFECT_TYPES))
    parser.add_argument("--crop-size", type=int, default=256, help="training crop side (a multiple of 32)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--max-steps", type=int, default=600, help="optimiser steps (a budget independent of load)")
    parser.add_argument("--val-every", type=int, default=100, help="steps between validations")
    parser.add_argument("--limit-batches", type=float, default=1.0, help="share (or count) of val/test batches")
    parser.add_argument(
        "--memory-images", type=int, default=None, help="training normals in the normal memory (default: all)"
    )
    parser.add_argument("--output", type=Path, default=PROJECT_ROOT / "results")
    args = parser.parse_args(argv)

    limit = int(args.limit_batches) if args.limit_batches > 1 else args.limit_batches
    scan_mvtec_folder(args.root)  # a missing or broken dataset fails here, naming the file, before any training
    datamodule = build_datamodule(args.root, tuple(args.defect_types), args.batch_size, args.crop_size)
    model = DefectSegmenter(memory_images=args.memory_images)
    engine = Engine(
        max_steps=args.max_steps,
        max_epochs=-1,
        val_check_interval=args.val_every,
        check_val_every_n_epoch=None,
        limit_val_batches=limit,
        limit_test_batches=limit,
        accelerator="cpu",
        default_root_dir=args.output,
    )
    engine.fit(model, datamodule=datamodule)
    (results,) = engine.test(model, datamodule=datamodule)
    return results


if __name__ == "__main__":
    try:
        main()
    except AnomalySynthError as error:  # bad input (e.g. no ../shared on a fresh clone): one clear line
        raise SystemExit(f"train_folder.py: error: {error}") from None

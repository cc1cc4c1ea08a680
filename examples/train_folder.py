"""Train and test an anomalib model on Magnetic Tile with synthetic defects, fully offline.

anomalib's ``Folder`` datamodule finds the files; ``SyntheticAnomalyDataModule`` wraps it:
a third of each defect type's real images become shots for the generator (and leave the
test set), half of the training normals get a pasted real-shot defect with its mask, and
validation uses held-back normals with fixed synthetic defects. SuperSimpleNet in supervised
mode learns from those masks. The backbone is randomly initialised (``pre_trained=False``)
so nothing downloads; pass ``--pre-trained`` when ImageNet weights are available.

Run from the project root::

    python examples/train_folder.py --max-epochs 5
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for remote weights

from anomalib.data import Folder  # noqa: E402
from anomalib.engine import Engine  # noqa: E402

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule  # noqa: E402
from anomaly_synth_aug.generators.real_paste import RealShotPasteGenerator  # noqa: E402
from anomaly_synth_aug.models import SupervisedSupersimplenet  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
MAGNETIC_TILE = PROJECT_ROOT.parent / "shared" / "data" / "magnetic_tile"
DEFECT_TYPES = ("blowhole", "break", "crack", "fray", "uneven")


def build_datamodule(root: Path, defect_types: tuple[str, ...], batch_size: int) -> SyntheticAnomalyDataModule:
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
        eval_batch_size=batch_size,
        num_workers=2,
    )
    return SyntheticAnomalyDataModule(folder, generator=RealShotPasteGenerator(), anomaly_ratio=0.5, seed=0)


def main(argv: list[str] | None = None) -> dict[str, float]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--root", type=Path, default=MAGNETIC_TILE, help="MVTec-layout category folder")
    parser.add_argument("--defect-types", nargs="+", default=list(DEFECT_TYPES))
    parser.add_argument("--image-size", type=int, default=256, help="model input size (>= 128 for SuperSimpleNet)")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--max-epochs", type=int, default=5)
    parser.add_argument("--limit-batches", type=float, default=1.0, help="share (or count) of batches per stage")
    parser.add_argument("--pre-trained", action="store_true", help="load ImageNet backbone weights (downloads)")
    parser.add_argument("--output", type=Path, default=PROJECT_ROOT / "results")
    args = parser.parse_args(argv)

    limit = int(args.limit_batches) if args.limit_batches > 1 else args.limit_batches
    datamodule = build_datamodule(args.root, tuple(args.defect_types), args.batch_size)
    model = SupervisedSupersimplenet(
        backbone="resnet18",
        pre_trained=args.pre_trained,
        pre_processor=SupervisedSupersimplenet.configure_pre_processor((args.image_size, args.image_size)),
    )
    engine = Engine(
        max_epochs=args.max_epochs,
        limit_train_batches=limit,
        limit_val_batches=limit,
        limit_test_batches=limit,
        accelerator="cpu",
        default_root_dir=args.output,
    )
    engine.fit(model, datamodule=datamodule)
    (results,) = engine.test(model, datamodule=datamodule)
    return results


if __name__ == "__main__":
    main()

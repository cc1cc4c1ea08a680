"""``examples/train_folder.py`` runs offline on Magnetic Tile from Python, as the README promises."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train_folder.py"


def test_train_folder_example_fits_and_tests(magnetic_tile_root: Path, tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("example_train_folder", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    results = example.main(
        [
            f"--root={magnetic_tile_root}",
            "--max-steps=2",
            "--val-every=1",
            "--limit-batches=2",
            "--crop-size=128",
            "--batch-size=4",
            f"--output={tmp_path}",
        ]
    )
    assert {"image_AUROC", "pixel_AUROC"} <= set(results)
    assert all(0.0 <= float(results[name]) <= 1.0 for name in ("image_AUROC", "pixel_AUROC"))

"""``examples/train_folder.py`` runs offline on Magnetic Tile from Python, as the README promises."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
from shared_fixtures import assert_ranking_metrics

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train_folder.py"


def _load_example():
    spec = importlib.util.spec_from_file_location("example_train_folder", EXAMPLE)
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    return example


@pytest.mark.integration
@pytest.mark.slow
def test_train_folder_example_fits_and_tests(magnetic_tile_root: Path, tmp_path: Path) -> None:
    example = _load_example()
    results = example.main(
        [
            f"--root={magnetic_tile_root}",
            "--max-steps=2",
            "--val-every=1",
            "--limit-batches=2",
            "--crop-size=128",
            "--batch-size=4",
            "--memory-images=16",  # the memory of all 648 normals takes minutes; the path is what is tested
            f"--output={tmp_path}",
        ]
    )
    assert {"image_AUROC", "pixel_AUROC"} <= set(results)
    assert_ranking_metrics(results, ("image_AUROC", "pixel_AUROC"))


def test_train_folder_runs_on_any_mvtec_folder_without_shared_data(tiny_mvtec: Path, tmp_path: Path) -> None:
    """On a fresh clone there is no ../shared: the example must run on other data (e.g. the demo's)."""
    example = _load_example()
    results = example.main(
        [f"--root={tiny_mvtec}", "--defect-types", "blob", "scratch", "--max-steps=1", "--val-every=1",
         "--crop-size=32", "--batch-size=2", f"--output={tmp_path}"]
    )  # fmt: skip
    assert "image_AUROC" in results


@pytest.mark.slow
def test_train_folder_without_its_data_fails_in_one_clear_line(tmp_path: Path) -> None:
    """It used to print a 245-line FileNotFoundError traceback."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, str(EXAMPLE), f"--root={tmp_path / 'absent'}"], capture_output=True, text=True, timeout=300
    )
    assert done.returncode != 0
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"train_folder.py: error: {tmp_path / 'absent'}: data folder not found")
    assert "Traceback" not in done.stderr

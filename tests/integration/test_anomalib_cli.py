"""The anomalib CLI builds the wrapper from ``examples/magnetic_tile.yaml`` and trains through it."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

PROJECT_ROOT = Path(__file__).resolve().parents[2]
CONFIG = PROJECT_ROOT / "examples" / "magnetic_tile.yaml"


@pytest.mark.slow
def test_anomalib_fit_with_example_config(magnetic_tile_root: Path, tmp_path: Path) -> None:
    command = [
        sys.executable,
        "-c",
        "from anomalib.cli.cli import main; main()",  # the `anomalib` console script, in this interpreter
        "fit",
        f"--config={CONFIG}",
        "--trainer.max_steps=2",
        "--trainer.val_check_interval=2",
        "--trainer.limit_val_batches=2",  # an integer count: "1" would parse as the fraction 1.0
        "--trainer.enable_progress_bar=false",
        f"--default_root_dir={tmp_path}",
        "--data.init_args.datamodule.init_args.train_batch_size=4",
        "--data.init_args.datamodule.init_args.train_augmentations.init_args.size=128",
        "--data.init_args.datamodule.init_args.num_workers=0",
        "--model.init_args.memory_images=16",  # a memory of all 648 normals takes minutes; the CLI path is tested
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    completed = subprocess.run(command, cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-4000:]
    checkpoints = list(tmp_path.glob("DefectSegmenter/magnetic_tile/**/*.ckpt"))
    assert checkpoints, f"no checkpoint under {tmp_path}: {completed.stderr[-2000:]}"
    saved_config = next(tmp_path.glob("DefectSegmenter/magnetic_tile/**/config.yaml")).read_text()
    assert "SyntheticAnomalyDataModule" in saved_config and "RealShotPasteGenerator" in saved_config


@pytest.mark.slow
def test_example_config_without_its_data_fails_first_with_one_clear_line(tmp_path: Path) -> None:
    """On a fresh clone ``../shared`` is absent: the first error printed names the folder and the fix."""
    command = [
        sys.executable,
        "-c",
        "from anomalib.cli.cli import main; main()",
        "fit",
        f"--config={CONFIG}",
        f"--data.init_args.datamodule.init_args.root={tmp_path / 'absent'}",
        f"--default_root_dir={tmp_path}",
    ]
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "2"}
    completed = subprocess.run(  # one stream, in the order a user sees it
        command, cwd=PROJECT_ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=600
    )
    assert completed.returncode != 0
    output = completed.stdout
    first_error = next(line for line in output.splitlines() if "ERROR" in line or "Error" in line)
    assert f"{tmp_path / 'absent'}: the Folder datamodule's data folder does not exist" in first_error, output[-3000:]
    assert "Fix: point its root at an existing dataset folder" in first_error
    assert "GPU available" not in output  # refused while the classes are built, before the Trainer starts

"""SyntheticSampleLogger: grids reach TensorBoard and file loggers on the configured epochs."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from callback_helpers import TinyModule, synthetic_datamodule, tiny_trainer
from shared_fixtures import FakeSquareGenerator
from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
from PIL import Image
from tensorboard.backend.event_processing.event_accumulator import IMAGES, EventAccumulator

from anomaly_synth_aug.callbacks.sample_logger import SyntheticSampleLogger
from anomaly_synth_aug.errors import InvalidInputError

TILE = 32
PADDING = 2  # render_sample_grid's default


def test_grids_go_to_tensorboard_and_csv_logger_every_n_epochs(tmp_path: Path, tiny_mvtec: Path) -> None:
    tensorboard = TensorBoardLogger(tmp_path / "tb", name="run")
    csv = CSVLogger(tmp_path / "csv", name="run")
    sample_logger = SyntheticSampleLogger(every_n_epochs=2, num_samples=4, pairs_per_row=2, tile_size=TILE)
    datamodule = synthetic_datamodule(tiny_mvtec, FakeSquareGenerator(side=8))
    trainer = tiny_trainer(tmp_path, [sample_logger], max_epochs=4, logger=[tensorboard, csv])
    trainer.fit(TinyModule(), datamodule=datamodule)

    # file logger: one PNG per logged epoch (epochs 1 and 3 of 0..3), two rows of (plain | overlay) pairs
    pngs = sorted((Path(csv.log_dir) / "synthetic_samples").glob("*.png"))
    assert [p.name for p in pngs] == ["epoch=001.png", "epoch=003.png"]
    assert sample_logger.saved_paths == pngs
    grid = np.asarray(Image.open(pngs[0]).convert("RGB"))
    assert grid.shape == (2 * (TILE + PADDING) + PADDING, 4 * (TILE + PADDING) + PADDING, 3)
    plain = grid[PADDING : PADDING + TILE, PADDING : PADDING + TILE].astype(int)
    overlay = grid[PADDING : PADDING + TILE, 2 * PADDING + TILE : 2 * (PADDING + TILE)].astype(int)
    reddened = (overlay[..., 0] - plain[..., 0] > 10) & (plain[..., 1] - overlay[..., 1] > 10)
    assert 0 < reddened.mean() < 0.5  # the mask overlay covers the square defect, not the whole tile
    assert not np.array_equal(np.asarray(Image.open(pngs[0])), np.asarray(Image.open(pngs[1])))  # fresh defects

    # TensorBoard: the same grids as image summaries, at the steps of those epochs
    events = EventAccumulator(tensorboard.log_dir, size_guidance={IMAGES: 0})
    events.Reload()
    assert "synthetic_samples" in events.Tags()[IMAGES]
    images = events.Images("synthetic_samples")
    assert len(images) == 2
    assert (images[0].height, images[0].width) == grid.shape[:2]
    assert images[0].step < images[1].step


def test_needs_the_synthetic_datamodule(tmp_path: Path) -> None:
    from lightning.pytorch.demos.boring_classes import BoringDataModule, BoringModel

    trainer = tiny_trainer(
        tmp_path, [SyntheticSampleLogger()], logger=CSVLogger(tmp_path), limit_val_batches=0
    )
    with pytest.raises(InvalidInputError, match="SyntheticAnomalyDataModule"):
        trainer.fit(BoringModel(), datamodule=BoringDataModule())


@pytest.mark.parametrize("arguments", [{"every_n_epochs": 0}, {"num_samples": 0}])
def test_rejects_non_positive_counts(arguments: dict[str, int]) -> None:
    with pytest.raises(InvalidInputError):
        SyntheticSampleLogger(**arguments)

"""Log grids of generated defects (with their masks) while a detector trains.

Watching what the generator feeds the detector is the fastest way to notice a broken
generator (empty masks, defects off the product, colour shifts). Every ``every_n_epochs``
the callback generates defects on a fixed set of training normals -- with a seed that
changes per epoch, as the training data does -- and logs a (plain | mask overlay) grid
to every logger of the trainer: TensorBoard gets ``add_image``, loggers that write to a
local folder (CSV, ...) get a PNG under their ``log_dir``.
"""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.loggers import Logger, TensorBoardLogger
from lightning.pytorch.utilities import rank_zero_warn

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
from anomaly_synth_aug.data.io import load_image
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.utils.random import mixed_seed
from anomaly_synth_aug.visualization.grid import render_sample_grid, save_grid


class SyntheticSampleLogger(Callback):
    """Every ``every_n_epochs`` training epochs, log a grid of generated defects with mask overlays.

    Args:
        every_n_epochs: log after epochs ``n-1, 2n-1, ...`` (i.e. every n-th completed epoch).
        num_samples: how many generated defects per grid (taken from evenly spaced training normals).
        pairs_per_row: samples per grid row; each sample is a (plain, overlay) pair of tiles.
        tile_size: side of each square tile in pixels; None keeps the first image's size.
        seed: base seed; the grid of epoch ``e`` uses a seed mixed from ``(seed, e)``.
        tag: TensorBoard tag, and the sub-folder of ``log_dir`` that receives the PNGs.
    """

    def __init__(
        self,
        every_n_epochs: int = 1,
        num_samples: int = 8,
        pairs_per_row: int = 4,
        tile_size: int | None = 128,
        seed: int = 0,
        tag: str = "synthetic_samples",
    ) -> None:
        super().__init__()
        if every_n_epochs < 1 or num_samples < 1:
            raise InvalidInputError(
                f"every_n_epochs and num_samples must be >= 1, got {every_n_epochs} and {num_samples}",
                fix="use e.g. every_n_epochs=1, num_samples=8",
            )
        self.every_n_epochs = every_n_epochs
        self.num_samples = num_samples
        self.pairs_per_row = pairs_per_row
        self.tile_size = tile_size
        self.seed = seed
        self.tag = tag
        #: Files written for file-based loggers, in order (for users and tests).
        self.saved_paths: list[Path] = []

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        epoch = trainer.current_epoch
        if (epoch + 1) % self.every_n_epochs != 0 or not trainer.is_global_zero or not trainer.loggers:
            return
        datamodule = trainer.datamodule
        if not isinstance(datamodule, SyntheticAnomalyDataModule):
            raise InvalidInputError(
                f"SyntheticSampleLogger needs a SyntheticAnomalyDataModule, got {type(datamodule).__name__}",
                fix="pass datamodule=SyntheticAnomalyDataModule(your_datamodule, generator=...) to Trainer.fit",
            )
        grid = self.render(datamodule, epoch)
        for experiment_logger in trainer.loggers:
            self._log_grid(experiment_logger, grid, epoch, trainer.global_step)

    def render(self, datamodule: SyntheticAnomalyDataModule, epoch: int) -> torch.Tensor:
        """The uint8 ``[3, H, W]`` grid for ``epoch``: same normals every epoch, fresh defects."""
        paths = datamodule.train_normal_paths()
        if not paths:
            raise InvalidInputError("the datamodule has no training normals to draw defects on")
        count = min(self.num_samples, len(paths))
        chosen = torch.linspace(0, len(paths) - 1, count).round().long().tolist()
        images = [load_image(paths[index]) for index in chosen]
        datamodule.prepare_generator()
        batch = datamodule.generator.generate(
            images, generator=torch.Generator().manual_seed(mixed_seed(self.seed, epoch))
        )
        size = None if self.tile_size is None else (self.tile_size, self.tile_size)
        return render_sample_grid(batch.images, batch.masks, tile_size=size, pairs_per_row=self.pairs_per_row)

    def _log_grid(self, experiment_logger: Logger, grid: torch.Tensor, epoch: int, step: int) -> None:
        if isinstance(experiment_logger, TensorBoardLogger):
            experiment_logger.experiment.add_image(self.tag, grid, global_step=step, dataformats="CHW")
            return
        log_dir = getattr(experiment_logger, "log_dir", None)
        if log_dir is None:
            rank_zero_warn(
                f"SyntheticSampleLogger: {type(experiment_logger).__name__} is not a TensorBoardLogger and has no "
                "local log_dir; its sample grids are skipped."
            )
            return
        self.saved_paths.append(save_grid(grid, Path(log_dir) / self.tag / f"epoch={epoch:03d}.png"))

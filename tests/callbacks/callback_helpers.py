"""Helpers for the callback tests: a tiny model and a tiny Trainer (the learned toy generator is in shared_fixtures)."""

from __future__ import annotations

from pathlib import Path

import lightning.pytorch as pl
import torch
from shared_fixtures import CountingLearnedGenerator, make_folder_datamodule  # noqa: F401 (re-exported to the tests)

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
from anomaly_synth_aug.generators.base import AnomalyGenerator


class TinyModule(pl.LightningModule):
    """The smallest model that consumes anomalib ``ImageBatch``es."""

    def __init__(self) -> None:
        super().__init__()
        self.weight = torch.nn.Parameter(torch.zeros(1))

    def training_step(self, batch, batch_idx: int) -> torch.Tensor:
        return (batch.image.mean() - self.weight).pow(2).sum()

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def synthetic_datamodule(root: Path, generator: AnomalyGenerator) -> SyntheticAnomalyDataModule:
    """``SyntheticAnomalyDataModule`` over an MVTec-layout folder (category = folder name), no validation."""
    return SyntheticAnomalyDataModule(make_folder_datamodule(root), generator=generator, val_split="none")


def tiny_trainer(tmp_path: Path, callbacks: list[pl.Callback], **kwargs) -> pl.Trainer:
    options = {
        "max_epochs": 1,
        "limit_train_batches": 1,
        "logger": False,
        "enable_checkpointing": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "accelerator": "cpu",
        "devices": 1,
        "limit_val_batches": 0,
        "default_root_dir": tmp_path,
        **kwargs,
    }
    return pl.Trainer(callbacks=callbacks, **options)

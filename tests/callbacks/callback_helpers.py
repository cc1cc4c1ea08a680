"""Helpers for the callback tests: a learned toy generator with real saved state, a tiny model, a tiny Trainer."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import lightning.pytorch as pl
import torch
from shared_fixtures import make_folder_datamodule, paint_squares
from safetensors.torch import load_file, save_file

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
from anomaly_synth_aug.generators.base import AnomalyGenerator, GeneratedBatch


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

"""Speed and memory measurements: generation throughput, fit time, training epoch time, peak RSS.

Small, honest stopwatches: wall-clock ``perf_counter`` around the real calls (no synthetic
inputs), throughput at the images' native resolution, epoch time measured by a Lightning
callback from the first to the last batch of each training epoch (data loading, generation
and optimisation together), and peak resident memory as the OS reports it.
"""

from __future__ import annotations

import os
import resource
import statistics
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from lightning.pytorch import Callback, LightningDataModule, LightningModule, Trainer, seed_everything

from anomaly_synth_aug.generators.base import AnomalyGenerator
from anomaly_synth_aug.utils.random import make_generator


def peak_rss_mb() -> dict[str, float]:
    """Peak resident set size so far (MiB) of this process and of its finished children (workers)."""
    scale = 1 / 1024 if sys.platform != "darwin" else 1 / 1024**2  # Linux reports KiB, macOS bytes
    return {
        "self": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale,
        "children": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * scale,
    }


def load_average() -> float | None:
    """1-minute load average: how busy the machine was (other processes slow every timing)."""
    return os.getloadavg()[0] if hasattr(os, "getloadavg") else None


@dataclass(frozen=True)
class Throughput:
    """Images generated per second over ``count`` images (after ``warmup`` untimed images)."""

    images_per_s: float
    seconds: float
    count: int
    pixels_per_image: float


def generation_throughput(
    generator: AnomalyGenerator,
    images: Sequence[torch.Tensor],
    *,
    batch_size: int = 16,
    warmup: int = 1,
    seed: int = 0,
) -> Throughput:
    """Time ``generator.generate`` on ``images`` (native sizes) in batches of ``batch_size``.

    The first ``warmup`` images are generated untimed first (lazy initialisation, allocator warm-up).
    """
    if warmup:
        generator.generate(list(images[:warmup]), generator=make_generator(seed))
    rng = make_generator(seed + 1)
    start = time.perf_counter()
    for first in range(0, len(images), batch_size):
        generator.generate(list(images[first : first + batch_size]), generator=rng)
    seconds = time.perf_counter() - start
    pixels = statistics.fmean(img.shape[-2] * img.shape[-1] for img in images) if images else 0.0
    return Throughput(
        images_per_s=len(images) / seconds if seconds > 0 else float("inf"),
        seconds=seconds,
        count=len(images),
        pixels_per_image=pixels,
    )


class EpochTimer(Callback):
    """Wall-clock seconds of each training epoch (loading, generation and steps together)."""

    def __init__(self) -> None:
        self.seconds: list[float] = []
        self._start = 0.0

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self._start = time.perf_counter()

    def on_train_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        self.seconds.append(time.perf_counter() - self._start)


def train_epoch_seconds(
    model: LightningModule,
    datamodule: LightningDataModule,
    *,
    epochs: int = 3,
    limit_train_batches: int | float = 1.0,
    seed: int = 0,
) -> dict[str, Any]:
    """Train ``epochs`` epochs without validation; per-epoch seconds and their steady-state median.

    The first epoch pays one-off costs (worker start-up, lazy setup) and is left out of the
    median when there are later epochs.
    """
    seed_everything(seed, workers=True)
    timer = EpochTimer()
    trainer = Trainer(
        max_epochs=epochs,
        limit_train_batches=limit_train_batches,
        limit_val_batches=0,
        num_sanity_val_steps=0,
        accelerator="cpu",
        devices=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        callbacks=[timer],
    )
    trainer.fit(model, datamodule=datamodule)
    steady = timer.seconds[1:] or timer.seconds
    return {"epochs_s": timer.seconds, "median_epoch_s": statistics.median(steady), "batches": trainer.num_training_batches}

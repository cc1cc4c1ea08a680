"""Fine-tune a learned generator once per category, configuration and data, and reuse the fit on every later run.

``GeneratorFineTuneCallback`` is the Lightning face of ``FitStore``: at fit start it loads the
fit of the datamodule's generator on the datamodule's data from the store, or fits the generator
and stores it. The store keys fits by content (generator class, configuration without sampling
options, the files learned from, the seed), so a fit made by the callback is found again by the
benchmark, the CLI (``fit-generator``, ``generate``) and the demo, and theirs by it.

Example:
    >>> engine = Engine(callbacks=[GeneratorFineTuneCallback("runs/generators")], max_steps=600)
    >>> engine.fit(model, datamodule=SyntheticAnomalyDataModule(folder, DiffusionAnomalyGenerator()))
"""

from __future__ import annotations

import logging
from pathlib import Path

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators.fit_store import Action, FitKey, FitStore

logger = logging.getLogger(__name__)


class GeneratorFineTuneCallback(Callback):
    """Load or fine-tune the datamodule's generator at fit start, through a ``FitStore`` in ``checkpoint_dir``.

    Use with a ``SyntheticAnomalyDataModule``. For a multi-category run pass the same
    ``checkpoint_dir`` for every category: fits live in ``checkpoint_dir/<category>/<Class>-<key>/``,
    and a second run on the same data and configuration loads instead of training. Classic
    generators need no fitting and are left alone.

    Args:
        checkpoint_dir: the store's folder.
    """

    def __init__(self, checkpoint_dir: str | Path) -> None:
        super().__init__()
        self.store = FitStore(checkpoint_dir)
        #: What happened per category in this process ("loaded", "fitted" or "not_needed").
        self.actions: dict[str, Action] = {}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        del pl_module  # unused
        datamodule = trainer.datamodule
        if not isinstance(datamodule, SyntheticAnomalyDataModule):
            raise InvalidInputError(
                f"GeneratorFineTuneCallback needs a SyntheticAnomalyDataModule, got {type(datamodule).__name__}",
                fix="pass datamodule=SyntheticAnomalyDataModule(your_datamodule, generator=...) to Trainer.fit",
            )
        self.prepare(datamodule, trainer)

    def fit_folder(self, datamodule: SyntheticAnomalyDataModule) -> Path:
        """The store folder of the datamodule's generator on its data."""
        return self.store.folder(FitKey.of(datamodule.generator, datamodule.fit_data()))

    def prepare(self, datamodule: SyntheticAnomalyDataModule, trainer: pl.Trainer | None = None) -> Action:
        """Make ``datamodule.generator`` fitted for its data; usable without a Trainer.

        With a distributed ``trainer`` only global rank zero fits and stores; the other ranks wait
        at a barrier and then load the stored fit (an error naming the folder if they cannot see it:
        each rank fitting its own would cost the fit again on every node, and need not give the same weights).
        """
        generator = datamodule.generator
        data = datamodule.fit_data()
        action: Action
        if not generator.requires_fit:
            action = "not_needed"
        elif trainer is None or trainer.is_global_zero:
            action = self.store.fit_or_load(generator, data)
        else:
            action = "loaded"  # after the barrier below, from what rank zero stored
        if trainer is not None and trainer.world_size > 1 and generator.requires_fit:
            trainer.strategy.barrier("generator_finetune")
            if not generator.is_fitted:
                self.store.fit_or_load(generator, data, fit_missing=False)
        self.actions[data.category] = action
        return action


__all__ = ["GeneratorFineTuneCallback"]

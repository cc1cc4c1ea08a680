"""``ScoreFractionScores``: the image AUROC that each image-score rule would give, on validation and on test.

A detector's image score here is the mean of its anomaly map's highest ``fraction`` of pixels
(``top_fraction_mean``; 0 is the maximum). A fraction larger than a category's smallest defects
averages them with the background around them and dilutes them; a very small one follows single
noisy pixels. Which is right depends on the category, so this callback records, at every validation
and at test, the image AUROC of several fractions computed from the same maps. The record lets a
fraction be chosen on the synthetic validation set (at the checkpoint's step) and its effect read
on test, with no choice made on test data (``score_fraction_markdown``).

Example:
    >>> fractions = ScoreFractionScores()
    >>> engine = Engine(callbacks=[fractions])
    >>> engine.fit(model, datamodule=datamodule); engine.test(model, datamodule=datamodule)
    >>> fractions.record()["test"]["0.001"]  # image AUROC of the top-0.1 % mean on the test set
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from lightning.pytorch import Callback, LightningModule, Trainer

from anomaly_synth_aug.evaluation.metrics import image_auroc
from anomaly_synth_aug.evaluation.reporting import format_cell, mean_std, ordered
from anomaly_synth_aug.models.native_resolution import resize_maps
from anomaly_synth_aug.models.normal_prior import top_fraction_mean

#: The fractions compared: the maximum, then a half-decade grid around the segmenter's default 0.001.
SCORE_FRACTIONS: tuple[float, ...] = (0.0, 0.0001, 0.0003, 0.001, 0.003, 0.01)


def fraction_key(fraction: float) -> str:
    """The JSON key of a fraction: ``0.001 -> "0.001"``."""
    return f"{fraction:g}"


def _at_mask_size(maps: torch.Tensor, masks: torch.Tensor | None) -> torch.Tensor:
    """The maps at the masks' size, as the evaluator scores them.

    Callbacks given to ``Engine`` run before the model's own: a detector that predicts at its input
    size and whose pre-processor resizes the maps back to the native size afterwards hands this
    callback the smaller map, whose top fraction covers other pixels than the scored one's.
    """
    if masks is None or tuple(masks.shape[-2:]) == tuple(maps.shape[-2:]):
        return maps
    return resize_maps(maps.detach(), tuple(masks.shape[-2:]))


class ScoreFractionScores(Callback):
    """Image AUROC of each top-fraction image score, at every validation and at test.

    Args:
        fractions: shares of the map's highest pixels averaged into an image score.
    """

    def __init__(self, fractions: Sequence[float] = SCORE_FRACTIONS) -> None:
        self.fractions = tuple(fractions)
        self.validation: list[dict[str, Any]] = []
        self.test: dict[str, float] | None = None
        self._labels: list[int] = []
        self._scores: list[torch.Tensor] = []

    def _start(self) -> None:
        self._labels, self._scores = [], []

    def _collect(self, outputs: Any) -> None:
        maps, labels = getattr(outputs, "anomaly_map", None), getattr(outputs, "gt_label", None)
        if maps is None or labels is None:
            return
        maps = _at_mask_size(maps, getattr(outputs, "gt_mask", None))
        flat = maps.detach().reshape(maps.shape[0], -1).float().cpu()
        self._scores.append(torch.stack([top_fraction_mean(flat, fraction) for fraction in self.fractions], dim=1))
        self._labels.extend(int(label) for label in labels.reshape(-1).tolist())

    def _aurocs(self) -> dict[str, float]:
        labels = torch.tensor(self._labels).long()
        if labels.numel() == 0 or labels.min() == labels.max():
            return {}
        scores = torch.cat(self._scores)
        return {fraction_key(f): image_auroc(scores[:, i], labels) for i, f in enumerate(self.fractions)}

    def on_validation_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        del trainer, pl_module  # unused
        self._start()

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        del trainer, pl_module, batch, batch_idx, dataloader_idx  # unused
        self._collect(outputs)

    def on_validation_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        del pl_module  # unused
        if not trainer.sanity_checking and (aurocs := self._aurocs()):
            self.validation.append({"step": trainer.global_step, "image_AUROC": aurocs})

    # Test collects the same way: a fresh start, every batch's maps.
    on_test_epoch_start = on_validation_epoch_start
    on_test_batch_end = on_validation_batch_end

    def on_test_epoch_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        del trainer, pl_module  # unused
        self.test = self._aurocs() or None

    def record(self) -> dict[str, Any]:
        """``{"fractions": [...], "validation": [{"step", "image_AUROC": {fraction: x}}], "test": {fraction: x}}``."""
        return {"fractions": list(self.fractions), "validation": self.validation, "test": self.test}


def chosen_on_validation(record: dict[str, Any], step: int | None, default: float) -> float | None:
    """The fraction with the best validation image AUROC at ``step`` (the checkpoint's); ties keep ``default``.

    None when that validation was not recorded (runs without a validation set).
    """
    entries = [entry for entry in record.get("validation", []) if entry["step"] == step]
    if not entries or not entries[-1]["image_AUROC"]:
        return None
    aurocs: dict[str, float] = entries[-1]["image_AUROC"]
    best = max(aurocs.values())
    if aurocs.get(fraction_key(default)) == best:
        return default
    return next(float(key) for key, value in aurocs.items() if value == best)


def score_fraction_markdown(
    runs: Sequence[dict[str, Any]], default: float = 0.001, detector_order: Sequence[str] = ()
) -> str:
    """Per detector and source: test image AUROC of the default fraction and of the one chosen on validation.

    The choice is made per run at its checkpoint's step (``chosen_on_validation``); Δ is paired by
    run. Runs recorded before the fractions were kept, or without a validation set, are left out.
    """
    rows: dict[tuple[str, str], list[tuple[float, float, float]]] = {}
    for run in runs:
        record = run.get("image_AUROC_by_score_fraction") or {}
        test = record.get("test") or {}
        chosen = chosen_on_validation(record, run.get("best_step"), default) if test else None
        if chosen is None or fraction_key(default) not in test:
            continue
        key = (run["detector"], run["generator"])
        rows.setdefault(key, []).append((chosen, test[fraction_key(default)], test[fraction_key(chosen)]))
    if not rows:
        return ""
    headers = ["detector", "training defects", "runs", f"top {default:g}", "chosen on validation", "chosen", "Δ"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    detectors = ordered({detector for detector, _ in rows}, detector_order)
    for detector, source in sorted(rows, key=lambda key: (detectors.index(key[0]), key[1])):
        values = rows[(detector, source)]
        picks = ", ".join(f"{chosen:g}" for chosen, _, _ in values)
        cells = [
            detector,
            source,
            str(len(values)),
            format_cell(*mean_std([at_default for _, at_default, _ in values])),
            picks,
            format_cell(*mean_std([at_chosen for _, _, at_chosen in values])),
            format_cell(*mean_std([at_chosen - at_default for _, at_default, at_chosen in values]), signed=True),
        ]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


__all__ = [
    "SCORE_FRACTIONS",
    "ScoreFractionScores",
    "chosen_on_validation",
    "fraction_key",
    "score_fraction_markdown",
]

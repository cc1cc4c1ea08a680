"""Detection metrics from anomalib's metric classes: one definition for Engine runs and offline scoring.

Threshold-free ranking metrics (what the benchmark compares):

* image level: AUROC and AP (anomalib's ``AUPR`` is the step-wise average precision);
* pixel level: AUROC, AP and AUPRO (per-region overlap up to 30 % false-positive rate).

Threshold metrics (F1 of ``pred_label`` / ``pred_mask``) use the thresholds the
``PostProcessor`` picked on the *validation* set, so they say how well a threshold chosen
without test data transfers; they are undefined (None) when validation had no anomalies.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import torch
from anomalib.metrics import AUPR, AUROC, AnomalibMetric, Evaluator, F1Score
from anomalib.metrics.aupro import _AUPRO
from anomalib.metrics.pro import connected_components_cpu

IMAGE_FIELDS: tuple[str, str] = ("pred_score", "gt_label")
PIXEL_FIELDS: tuple[str, str] = ("anomaly_map", "gt_mask")
#: AUPRO integrates the per-region overlap up to this false-positive rate (the MVTec AD convention).
AUPRO_FPR_LIMIT = 0.3
#: Validation metric that picks the checkpoint: pixel AP on the synthetic validation set
#: (it keeps improving after image AUROC saturates at 1.0 on easy synthetic defects).
CHECKPOINT_MONITOR = "val_pixel_AUPR"
#: Threshold metrics, reported as None when validation had no anomalies to pick a threshold on.
THRESHOLD_METRICS: tuple[str, ...] = ("image_F1Score", "pixel_F1Score")
#: Run-record flag: labels came from the validation thresholds (``RawScorePostProcessor``). Older
#: records were labelled by anomalib at raw score 0.5 whatever the threshold, so their F1 is not shown.
LABELS_AT_THRESHOLD = "labels_at_validation_threshold"


class _UndefinedOnOneClass:
    """Ranking metrics are undefined (NaN, recorded as None) when the targets hold one class only.

    torchmetrics returns 0 with a warning instead: a test split with no normal image, no anomalous
    one, or no defect pixel would record an AUROC of 0.0 as if the detector had ranked every case
    backwards. The targets are the curve's own (after DDP sync); AUPRO's are region labels, 0 outside.
    """

    target: list[torch.Tensor] | torch.Tensor

    def compute(self) -> torch.Tensor:
        targets = getattr(self, "target", None)
        if isinstance(targets, list):
            targets = torch.cat([t.reshape(-1) for t in targets]) if targets else None
        if targets is not None and targets.numel():
            defect = targets > 0
            if bool(defect.all()) or not bool(defect.any()):
                return torch.tensor(float("nan"))
        return super().compute()  # type: ignore[misc]


class DefinedAUROC(_UndefinedOnOneClass, AUROC):  # type: ignore[misc]
    """anomalib's ``AUROC``, NaN on one class (``_UndefinedOnOneClass``); logged as ``<prefix>AUROC``."""

    def __init__(self, fields: list[str] | None = None, prefix: str = "", **kwargs: object) -> None:
        super().__init__(fields=fields, prefix=prefix, **kwargs)
        self.name = f"{prefix}AUROC"


class DefinedAUPR(_UndefinedOnOneClass, AUPR):  # type: ignore[misc]
    """anomalib's ``AUPR``, NaN on one class (``_UndefinedOnOneClass``); logged as ``<prefix>AUPR``."""

    def __init__(self, fields: list[str] | None = None, prefix: str = "", **kwargs: object) -> None:
        super().__init__(fields=fields, prefix=prefix, **kwargs)
        self.name = f"{prefix}AUPR"


class _NativeSizeAUPRO(_AUPRO):
    """anomalib's AUPRO for images of different sizes (native-resolution evaluation).

    anomalib's ``_AUPRO`` concatenates all masks into one ``[N, H, W]`` tensor, which fails once test
    images differ in size. This one labels each batch's connected regions when it arrives, offsets the
    labels so that regions stay distinct across batches, and keeps labels and scores flattened; the
    PRO curve itself is anomalib's ``compute_pro``, unchanged.
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)
        self._regions = 0

    def update(self, preds: torch.Tensor, target: torch.Tensor) -> None:
        target = target.reshape(-1, *target.shape[-2:])
        preds = preds.reshape(target.shape)
        if target.min() < 0 or target.max() > 1:
            raise ValueError(f"AUPRO masks must lie in [0, 1], found [{target.min()}, {target.max()}]")
        labels = connected_components_cpu(target.unsqueeze(1).float().cpu()).long().reshape(-1)
        count = int(labels.max()) if labels.numel() else 0
        labels[labels > 0] += self._regions
        self._regions += count
        self.target.append(labels.to(preds.device))
        self.preds.append(preds.reshape(-1))

    def reset(self) -> None:
        super().reset()
        self._regions = 0

    def perform_cca(self) -> torch.Tensor:
        return torch.cat(self.target) if self.target else torch.zeros(0, dtype=torch.long)

    def _compute(self) -> tuple[torch.Tensor, torch.Tensor]:
        preds = torch.cat(self.preds) if self.preds else torch.zeros(0)
        return self.compute_pro(cca=self.perform_cca(), preds=preds)


class NativeSizeAUPRO(_UndefinedOnOneClass, AnomalibMetric, _NativeSizeAUPRO):  # type: ignore[misc]
    """AUPRO over images of any sizes (``_NativeSizeAUPRO``), with anomalib's field binding.

    Logged as ``<prefix>AUPRO``, the name anomalib's own AUPRO gets, so results keep their keys.
    """

    def __init__(self, fields: list[str] | None = None, prefix: str = "", **kwargs: object) -> None:
        super().__init__(fields=fields, prefix=prefix, **kwargs)
        self.name = f"{prefix}AUPRO"


#: torchmetrics treats scores outside [0, 1] as logits and passes them through a sigmoid, which in
#: float32 saturates to 1.0 above about 17: raw PaDiM/PatchCore scores (2 to 50) then tie and their
#: AUROC collapses towards 0.5. Normalisation is off in the benchmark, so the curves must take the
#: scores as they are (a rank metric needs no squashing).
RAW_SCORES: dict[str, None] = {"normalization": None}


def ranking_metrics(prefix: str = "", *, pixel: bool = True) -> list[AnomalibMetric]:
    """Image AUROC and AP, and (``pixel``) pixel AUROC, AP and AUPRO, named ``<prefix>image_AUROC`` etc.

    Pixel metrics are non-strict: a batch without masks or anomaly maps is skipped, not an error.
    """
    metrics: list[AnomalibMetric] = [
        DefinedAUROC(fields=IMAGE_FIELDS, prefix=f"{prefix}image_", **RAW_SCORES),
        DefinedAUPR(fields=IMAGE_FIELDS, prefix=f"{prefix}image_", **RAW_SCORES),
    ]
    if pixel:
        metrics += [
            DefinedAUROC(fields=PIXEL_FIELDS, prefix=f"{prefix}pixel_", strict=False, **RAW_SCORES),
            DefinedAUPR(fields=PIXEL_FIELDS, prefix=f"{prefix}pixel_", strict=False, **RAW_SCORES),
            NativeSizeAUPRO(fields=PIXEL_FIELDS, prefix=f"{prefix}pixel_", strict=False, fpr_limit=AUPRO_FPR_LIMIT),
        ]
    return metrics


def threshold_metrics(prefix: str = "") -> list[AnomalibMetric]:
    """Image and pixel F1 at the post-processor's thresholds (skipped when no threshold was set)."""
    return [
        F1Score(fields=["pred_label", "gt_label"], prefix=f"{prefix}image_", strict=False),
        F1Score(fields=["pred_mask", "gt_mask"], prefix=f"{prefix}pixel_", strict=False),
    ]


def benchmark_evaluator() -> Evaluator:
    """Evaluator for the benchmark: validation metrics for checkpointing, full metrics on test."""
    validation = [
        AUROC(fields=IMAGE_FIELDS, prefix="val_image_", **RAW_SCORES),
        AUPR(fields=PIXEL_FIELDS, prefix="val_pixel_", strict=False, **RAW_SCORES),
    ]
    return Evaluator(val_metrics=validation, test_metrics=[*ranking_metrics(), *threshold_metrics()])


def compute_detection_metrics(
    pred_scores: torch.Tensor,
    gt_labels: torch.Tensor,
    anomaly_maps: torch.Tensor | None = None,
    gt_masks: torch.Tensor | None = None,
) -> dict[str, float]:
    """Ranking metrics of saved predictions, with the same metric classes the Engine uses.

    Args:
        pred_scores: ``[N]`` image scores (higher = more anomalous).
        gt_labels: ``[N]`` 0/1 (or bool) image labels.
        anomaly_maps: ``[N, H, W]`` pixel scores; with ``gt_masks``, adds the pixel metrics.
        gt_masks: ``[N, H, W]`` bool defect masks.
    """
    with_pixels = anomaly_maps is not None and gt_masks is not None
    batch = SimpleNamespace(
        pred_score=pred_scores.float(),
        gt_label=gt_labels.long(),
        anomaly_map=anomaly_maps.float() if with_pixels else None,
        gt_mask=gt_masks.bool() if with_pixels else None,
    )
    results: dict[str, float] = {}
    for metric in ranking_metrics(pixel=with_pixels):
        metric.update(batch)
        results[metric.name] = float(metric.compute())
    return results


def image_auroc(scores: torch.Tensor, labels: torch.Tensor) -> float:
    """AUROC of raw scores of any range (anomalib's, as in the Engine's metrics).

    torchmetrics' ``binary_auroc`` passes scores outside [0, 1] through a sigmoid, which saturates in
    float32 above about 17: raw PaDiM scores, the prior's standard scores or a classifier's confident
    logits all tie at 1.0 there, and the AUROC falls towards 0.5.
    """
    return compute_detection_metrics(scores.flatten(), labels.flatten())["image_AUROC"]


def metric_value(value: float | torch.Tensor | None) -> float | None:
    """A logged metric as a plain float, or None when it is missing or undefined (NaN)."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number

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
from anomalib.metrics import AUPR, AUPRO, AUROC, AnomalibMetric, Evaluator, F1Score

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


def ranking_metrics(prefix: str = "", *, pixel: bool = True) -> list[AnomalibMetric]:
    """Image AUROC and AP, and (``pixel``) pixel AUROC, AP and AUPRO, named ``<prefix>image_AUROC`` etc.

    Pixel metrics are non-strict: a batch without masks or anomaly maps is skipped, not an error.
    """
    metrics: list[AnomalibMetric] = [
        AUROC(fields=IMAGE_FIELDS, prefix=f"{prefix}image_"),
        AUPR(fields=IMAGE_FIELDS, prefix=f"{prefix}image_"),
    ]
    if pixel:
        metrics += [
            AUROC(fields=PIXEL_FIELDS, prefix=f"{prefix}pixel_", strict=False),
            AUPR(fields=PIXEL_FIELDS, prefix=f"{prefix}pixel_", strict=False),
            AUPRO(fields=PIXEL_FIELDS, prefix=f"{prefix}pixel_", strict=False, fpr_limit=AUPRO_FPR_LIMIT),
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
        AUROC(fields=IMAGE_FIELDS, prefix="val_image_"),
        AUPR(fields=PIXEL_FIELDS, prefix="val_pixel_", strict=False),
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


def metric_value(value: float | torch.Tensor | None) -> float | None:
    """A logged metric as a plain float, or None when it is missing or undefined (NaN)."""
    if value is None:
        return None
    number = float(value)
    return None if math.isnan(number) else number

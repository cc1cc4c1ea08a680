import math
from types import SimpleNamespace

import pytest
import torch

from anomaly_synth_aug.evaluation.metrics import (
    CHECKPOINT_MONITOR,
    NativeSizeAUPRO,
    benchmark_evaluator,
    compute_detection_metrics,
    metric_value,
)


def test_image_metrics_on_known_predictions() -> None:
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8])
    labels = torch.tensor([0, 0, 1, 1])
    results = compute_detection_metrics(scores, labels)
    assert set(results) == {"image_AUROC", "image_AUPR"}
    assert results["image_AUROC"] == pytest.approx(0.75)  # 3 of 4 (anomalous, normal) pairs ranked right
    assert results["image_AUPR"] == pytest.approx(0.5 * 1.0 + 0.5 * 2 / 3)  # step-wise average precision
    assert compute_detection_metrics(-scores, labels)["image_AUROC"] == pytest.approx(0.25)


def test_pixel_metrics_perfect_and_inverted_maps() -> None:
    masks = torch.zeros(4, 16, 16, dtype=torch.bool)
    masks[2, 2:6, 2:6] = True
    masks[3, 8:12, 4:14] = True
    labels = masks.flatten(1).any(1)
    perfect = compute_detection_metrics(labels.float(), labels, masks.float(), masks)
    for name in ("image_AUROC", "image_AUPR", "pixel_AUROC", "pixel_AUPR", "pixel_AUPRO"):
        assert perfect[name] == pytest.approx(1.0), name
    inverted = compute_detection_metrics(-labels.float(), labels, 1 - masks.float(), masks)
    assert inverted["pixel_AUROC"] == pytest.approx(0.0) and inverted["pixel_AUPRO"] < 0.01


def test_aupro_weights_regions_not_pixels() -> None:
    masks = torch.zeros(3, 32, 32, dtype=torch.bool)
    masks[0, 2:4, 2:4] = True  # a small region, missed
    masks[1, 8:24, 8:24] = True  # a large region, found
    anomaly_map = torch.zeros(3, 32, 32)
    anomaly_map[1, 8:24, 8:24] = 1.0
    labels = torch.tensor([1, 1, 0])
    results = compute_detection_metrics(labels.float(), labels, anomaly_map, masks)
    assert results["pixel_AUROC"] > 0.9  # pixels: almost all defect pixels are in the found region
    assert 0.5 <= results["pixel_AUPRO"] < 0.6  # regions: one of two found (the other only by ties)


@pytest.mark.parametrize("labels", [[0, 0, 0, 0], [1, 1, 1, 1]])
def test_ranking_metrics_on_one_class_are_undefined_not_zero(labels: list[int]) -> None:
    """torchmetrics returned 0.0 with a warning: a test split without normals (or without anomalies, or without
    defect pixels) recorded an AUROC of 0.0, as if every case had been ranked backwards."""
    scores = torch.tensor([0.1, 0.4, 0.35, 0.8])
    results = compute_detection_metrics(scores, torch.tensor(labels), torch.rand(4, 8, 8), torch.zeros(4, 8, 8))
    for name in ("image_AUROC", "image_AUPR", "pixel_AUROC", "pixel_AUPR", "pixel_AUPRO"):
        assert math.isnan(results[name]) and metric_value(results[name]) is None, name


def test_benchmark_evaluator_names() -> None:
    evaluator = benchmark_evaluator()
    assert CHECKPOINT_MONITOR in {metric.name for metric in evaluator.val_metrics}
    assert {metric.name for metric in evaluator.test_metrics} == {
        "image_AUROC",
        "image_AUPR",
        "pixel_AUROC",
        "pixel_AUPR",
        "pixel_AUPRO",
        "image_F1Score",
        "pixel_F1Score",
    }


def test_metric_value() -> None:
    assert metric_value(torch.tensor(0.5)) == 0.5
    assert metric_value(None) is None and metric_value(math.nan) is None


def test_native_size_aupro_equals_anomalib_on_one_size_and_accepts_mixed_sizes() -> None:
    """anomalib's AUPRO concatenates all masks, which fails once test images differ in size (native resolution)."""
    from anomalib.metrics import AUPRO

    generator = torch.Generator().manual_seed(0)
    masks = torch.zeros(6, 40, 50, dtype=torch.bool)
    for index in range(6):
        masks[index, 5 + index : 15 + index, 10 : 20 + index] = True
        masks[index, 30:35, 30 + index : 40] = index % 2 == 0
    maps = torch.rand(6, 40, 50, generator=generator) + masks * 0.5 * torch.rand(6, 1, 1, generator=generator)
    ours, theirs = NativeSizeAUPRO(fields=["anomaly_map", "gt_mask"]), AUPRO(fields=["anomaly_map", "gt_mask"])
    for start in range(0, 6, 2):
        batch = SimpleNamespace(anomaly_map=maps[start : start + 2], gt_mask=masks[start : start + 2])
        ours.update(batch)
        theirs.update(batch)
    assert float(ours.compute()) == pytest.approx(float(theirs.compute()), abs=1e-6)

    mixed, anomalib_mixed = NativeSizeAUPRO(fields=["anomaly_map", "gt_mask"]), AUPRO(fields=["anomaly_map", "gt_mask"])
    for metric in (mixed, anomalib_mixed):
        metric.update(SimpleNamespace(anomaly_map=maps[:1], gt_mask=masks[:1]))
        metric.update(SimpleNamespace(anomaly_map=maps[1:2, :30], gt_mask=masks[1:2, :30]))
    assert 0.0 < float(mixed.compute()) < 1.0
    with pytest.raises(RuntimeError):
        anomalib_mixed.compute()
    mixed.reset()
    mixed.update(SimpleNamespace(anomaly_map=masks[:1].float(), gt_mask=masks[:1]))
    assert float(mixed.compute()) == pytest.approx(1.0)  # reset clears the region count too


def test_raw_scores_above_one_are_ranked_as_they_are() -> None:
    """torchmetrics squashed scores outside [0, 1] with a sigmoid, which saturates in float32: PaDiM's raw
    scores (2 to 50) tied at 1.0 and its AUROC fell towards 0.5."""
    scores = torch.tensor([20.0, 21.0, 30.0, 40.0])
    labels = torch.tensor([0, 0, 1, 1])
    masks = labels[:, None, None].expand(-1, 4, 4).bool()
    results = compute_detection_metrics(scores, labels, scores[:, None, None].expand(-1, 4, 4), masks)
    for name in ("image_AUROC", "image_AUPR", "pixel_AUROC", "pixel_AUPR"):
        assert results[name] == pytest.approx(1.0), name
    evaluator = benchmark_evaluator()
    validation_auroc = next(m for m in evaluator.val_metrics if m.name == "val_image_AUROC")
    validation_auroc.update(SimpleNamespace(pred_score=scores, gt_label=labels))
    assert float(validation_auroc.compute()) == pytest.approx(1.0)


def test_image_auroc_ranks_raw_scores_without_a_sigmoid() -> None:
    """Scores far above 1 (PaDiM's, the prior's standard scores, confident logits) keep their order."""
    from anomaly_synth_aug.evaluation.metrics import image_auroc

    labels = torch.tensor([0, 0, 1, 1])
    assert image_auroc(torch.tensor([80.0, 90.0, 200.0, 250.0]), labels) == pytest.approx(1.0)
    assert image_auroc(torch.tensor([[0.9], [0.8], [0.2], [0.1]]), labels) == pytest.approx(0.0)  # [N, 1] too

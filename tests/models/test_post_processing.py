"""RawScorePostProcessor: the validation thresholds label raw scores (anomalib's would compare with 0.5)."""

import pytest
import torch
from anomalib.data import ImageBatch

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.evaluation.downstream import DETECTORS, PRESETS
from anomaly_synth_aug.models import RawScorePostProcessor
from anomaly_synth_aug.models.segmenter import DefectSegmenter


def _batch(scores: list[float], labels: list[int] | None = None) -> ImageBatch:
    """PaDiM-like raw scores (well above 1) with maps equal to each image's score."""
    score = torch.tensor(scores)
    maps = score[:, None, None].expand(-1, 4, 4).clone()
    kwargs = {}
    if labels is not None:
        label = torch.tensor(labels)
        kwargs = {"gt_label": label, "gt_mask": label[:, None, None].expand(-1, 4, 4).bool()}
    return ImageBatch(image=torch.zeros(len(scores), 3, 4, 4), pred_score=score, anomaly_map=maps, **kwargs)


def _learn_thresholds(post_processor) -> None:
    """Validation: normals score 2-3, anomalies 6-7, so any threshold in [3, 6) separates them."""
    post_processor.on_validation_batch_end(None, None, _batch([2.0, 3.0, 6.0, 7.0], [0, 0, 1, 1]))
    post_processor.on_validation_epoch_end(None, None)


def test_labels_come_from_the_learned_raw_threshold() -> None:
    post_processor = RawScorePostProcessor()
    _learn_thresholds(post_processor)
    assert 3.0 <= float(post_processor.image_threshold) <= 6.0
    test = _batch([2.5, 9.0])
    post_processor.post_process_batch(test)
    assert test.pred_label.tolist() == [False, True]  # anomalib's PostProcessor: [True, True]
    assert not test.pred_mask[0].any() and test.pred_mask[1].all()
    assert test.pred_score.tolist() == [2.5, 9.0]  # scores are not normalised


def test_refuses_to_normalise() -> None:
    with pytest.raises(InvalidInputError, match="never normalises"):
        RawScorePostProcessor(enable_normalization=True)


def test_benchmark_detectors_and_the_segmenter_use_it() -> None:
    """Before the fix the benchmark's PaDiM labelled every test image anomalous (raw scores > 0.5)."""
    assert isinstance(DefectSegmenter(encoder=None, base_width=2).post_processor, RawScorePostProcessor)
    padim = DETECTORS["padim"].build(PRESETS["smoke"], None)
    _learn_thresholds(padim.post_processor)
    test = _batch([2.5, 9.0])
    padim.post_processor.post_process_batch(test)
    assert test.pred_label.tolist() == [False, True]

"""Benchmark reporting: which recorded values reach the tables."""

from anomaly_synth_aug.evaluation.metrics import LABELS_AT_THRESHOLD
from anomaly_synth_aug.evaluation.reporting import detection_markdown, per_seed


def _run(generator: str, seed: int, auroc: float, f1: float | None, *, flagged: bool) -> dict:
    record = {
        "generator": generator,
        "detector": "padim",
        "seed": seed,
        "metrics": {"image_AUROC": auroc, "image_F1Score": f1},
    }
    if flagged:
        record[LABELS_AT_THRESHOLD] = True
    return record


def test_f1_of_runs_labelled_at_raw_score_half_is_left_out() -> None:
    runs = [
        _run("none", 0, 0.70, None, flagged=False),
        _run("perlin", 0, 0.71, 0.7346, flagged=False),  # recorded before RawScorePostProcessor
        _run("perlin", 1, 0.72, 0.6000, flagged=True),
    ]
    assert per_seed(runs, "padim", "perlin", "image_AUROC") == {0: 0.71, 1: 0.72}  # ranking metrics stay
    assert per_seed(runs, "padim", "perlin", "image_F1Score") == {1: 0.6}
    perlin_row = next(line for line in detection_markdown(runs).splitlines() if line.startswith("| perlin"))
    assert "0.600" in perlin_row and "0.735" not in perlin_row

"""Benchmark reporting: which recorded values reach the tables."""

from anomaly_synth_aug.evaluation.metrics import LABELS_AT_THRESHOLD
from anomaly_synth_aug.evaluation.reporting import ablation_markdown, detection_markdown, per_seed


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


def _ranked(generator: str, seed: int, auroc: float) -> dict:
    return {"generator": generator, "detector": "segmenter", "seed": seed, "metrics": {"image_AUROC": auroc}}


def test_ablation_table_pairs_each_ablation_with_its_full_generator_by_seed() -> None:
    runs = [
        _ranked("diffusion", 0, 0.70),
        _ranked("diffusion", 1, 0.80),
        _ranked("diffusion_no_filter", 0, 0.60),  # -0.10
        _ranked("diffusion_no_filter", 1, 0.75),  # -0.05
        _ranked("diffusion_no_filter", 2, 0.99),  # no seed-2 reference: not paired
        _ranked("diffusion_no_inversion", 5, 0.90),  # no reference at all: no row
    ]
    ablations = {
        "diffusion_no_filter": ("diffusion", "quality filter"),
        "diffusion_no_inversion": ("diffusion", "inversion"),
    }
    table = ablation_markdown(runs, ablations)
    row = next(line for line in table.splitlines() if line.startswith("| diffusion_no_filter"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:4] == ["diffusion_no_filter", "quality filter", "diffusion", "2"]
    assert cells[4] == "-0.075 ± 0.035"  # mean and sample std of (-0.10, -0.05)
    assert "diffusion_no_inversion" not in table
    assert ablation_markdown([_ranked("perlin", 0, 0.7)], ablations) == ""

"""``report_file``: the per-dataset report and the fit cost each headline row is charged."""

from pathlib import Path

from anomaly_synth_aug.evaluation.downstream.report_file import fit_costs, run_seconds, write_report_files
from anomaly_synth_aug.evaluation.reporting import ResultsStore


def test_fit_costs_charge_a_loaded_fit_and_a_with_shots_row_their_sources_fit(tmp_path: Path) -> None:
    store = ResultsStore(tmp_path / "results.json")
    store.quality = [{"generator": "diffusion", "seed": 0, "generator_fit_s": 540.0}]  # the quality stage fitted it
    store.runs = [
        {"generator": "diffusion", "seed": 0, "timings": {"generator_fit_s": 0.0}},  # loaded
        {"generator": "real_paste", "seed": 0, "timings": {"generator_fit_s": 0.2}},
    ]
    costs = fit_costs(store)
    assert costs[("diffusion", 0)] == costs[("diffusion_with_shots", 0)] == 540.0
    assert costs[("real_paste_with_shots", 0)] == 0.2 and ("perlin", 0) not in costs


def test_a_fit_made_by_a_with_shots_row_is_charged_to_every_recipe_of_its_source(tmp_path: Path) -> None:
    """The core matrix never runs ``diffusion`` itself: the fit was kept under ``diffusion_with_shots`` only, so
    ``shots_plus_diffusion``, which loaded it, was charged no fit at all."""
    store = ResultsStore(tmp_path / "results.json")
    store.runs = [
        {"generator": "diffusion_with_shots", "seed": 1, "timings": {"generator_fit_s": 480.0}},
        {"generator": "shots_plus_diffusion", "seed": 1, "timings": {"generator_fit_s": 0.0}},  # loaded it
    ]
    costs = fit_costs(store)
    assert costs[("shots_plus_diffusion", 1)] == costs[("diffusion_with_shots", 1)] == 480.0
    store.runs.append({"generator": "diffusion", "seed": 1, "timings": {"generator_fit_s": 300.0}})
    assert fit_costs(store)[("shots_plus_diffusion", 1)] == 300.0  # the source ran: its fit


def test_the_report_keeps_every_recorded_row_under_the_given_headline(tmp_path: Path) -> None:
    metrics = {"image_AUROC": 0.9, "pixel_AUROC": 0.8}
    store = ResultsStore(tmp_path / "results.json")
    store.meta = {"data": "tiles", "environment": {}}
    store.runs = [
        {"generator": g, "detector": "segmenter", "seed": 0, "preset": "quick", "metrics": metrics,
         "timings": {"generator_fit_s": 60.0, "train_s": 60.0, "test_s": 0.0}}
        for g in ("perlin", "none")
    ]  # fmt: skip
    write_report_files(store, tmp_path, "quick", "HEADLINE TABLE\n")
    text = (tmp_path / "downstream_quick.md").read_text()
    assert "HEADLINE TABLE" in text and "Runs: 2; summed run time 4.0 min." in text
    assert text.index("| none") < text.index("| perlin")  # canonical order, not the order recorded
    assert run_seconds(store.runs[0]) == 120.0

"""The learning curve's budgets, points and report (``benchmarks/learning_curve.py`` runs them)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shared_fixtures import load_script

from anomaly_synth_aug.evaluation.downstream import PRESETS
from anomaly_synth_aug.evaluation.learning_curve import (
    budget_preset,
    curve_points,
    learning_curve_figure,
    learning_curve_markdown,
    reference_values,
)


def _run(generator: str, seed: int, pixel_ap: float, *, fit_s: float = 10.0, loaded: bool = False) -> dict:
    metrics = {"image_AUROC": 0.8, "pixel_AUPR": pixel_ap, "pixel_AUPRO": 0.5}
    return {
        "generator": generator,
        "detector": "segmenter",
        "seed": seed,
        "metrics": metrics,
        "timings": {"generator_fit_s": fit_s, "generator_loaded": loaded},
    }


def test_the_default_budget_is_the_base_preset_and_others_are_named_variants() -> None:
    full = PRESETS["full"]
    assert budget_preset(full, 500, default_steps=500) is full
    variant = budget_preset(full, 1000, default_steps=500)
    assert variant.name == "full_diffusion1000steps" and variant.diffusion["max_steps"] == 1000
    assert {k: v for k, v in vars(variant).items() if k not in ("name", "diffusion")} == {
        k: v for k, v in vars(full).items() if k not in ("name", "diffusion")
    }  # nothing else changes
    smoke = PRESETS["smoke"]  # its own diffusion budget is the base
    assert budget_preset(smoke, smoke.diffusion["max_steps"], default_steps=500) is smoke


def test_points_average_seeds_per_budget_and_report_what_the_fit_cost() -> None:
    runs = {
        1000: [_run("diffusion", 0, 0.3, fit_s=700.0), _run("diffusion", 1, 0.5, fit_s=720.0)],
        250: [_run("diffusion", 0, 0.1, fit_s=0.0, loaded=True), _run("perlin", 0, 0.9)],
        2000: [_run("perlin", 0, 0.9)],  # no diffusion run yet: no point
    }
    points = curve_points(runs, "segmenter", "diffusion")
    assert [p.steps for p in points] == [250, 1000]
    assert points[0].fit_seconds is None and points[1].fit_seconds == 720.0
    mean, std = points[1].metrics["pixel_AUPR"]
    assert mean == pytest.approx(0.4) and std == pytest.approx(0.1414, abs=1e-3)
    references = reference_values([_run("real_paste", 0, 0.32), _run("none", 0, 0.05)], "segmenter", ["real_paste"])
    assert references == {"real_paste": {"image_AUROC": 0.8, "pixel_AUPR": 0.32, "pixel_AUPRO": 0.5}}
    table = learning_curve_markdown(points, references)
    assert "| 250 | 1 |" in table and "reused" in table and "| (real_paste) |" in table and "0.320" in table
    assert learning_curve_figure(points, references, "t") is not None
    assert learning_curve_figure([], references, "t") is None


@pytest.mark.slow
def test_the_script_runs_each_budget_and_writes_the_curve(tiny_mvtec: Path, tmp_path: Path) -> None:
    script = load_script("learning_curve")
    out = tmp_path / "out"
    argv = [
        "--data", str(tiny_mvtec), "--preset", "smoke", "--steps", "1", "2",
        "--out", str(out), "--work-dir", str(tmp_path / "work"),
    ]  # fmt: skip
    assert script.main(argv) == 0
    results = out / "tiny"
    variant = json.loads((results / "downstream_smoke_diffusion1steps.json").read_text())
    assert [(r["generator"], r["generator_training_steps"]) for r in variant["runs"]] == [("diffusion", 1)]
    base = json.loads((results / "downstream_smoke.json").read_text())  # the preset's own budget: shared
    assert [r["generator_training_steps"] for r in base["runs"]] == [2]
    table = (results / "learning_curve.md").read_text()
    assert "| 1 | 1 |" in table and "| 2 | 1 |" in table
    assert (results / "learning_curve.png").stat().st_size > 0

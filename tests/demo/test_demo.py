"""``anomaly-synth-aug demo --quick``: the README's main command, end to end on the embedded DEMO dataset."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from shared_fixtures import assert_ranking_metrics

from anomaly_synth_aug.cache import verify
from anomaly_synth_aug.cli.main import EXIT_BAD_INPUT, main

ARMS = ["none", "diffusion", "real_paste"]
RANKING_METRICS = ["image_AUROC", "image_AUPR", "pixel_AUROC", "pixel_AUPR"]


@pytest.mark.slow
def test_quick_demo_runs_end_to_end_and_reuses_its_generator(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "demo"
    assert main(["demo", "--quick", "true", "--output", str(output)]) == 0
    printed = capsys.readouterr().out
    assert "DEMO DATASET" in printed and "AUROC" in printed and "AUPRO" in printed and "total" in printed
    assert "6 held-out defect images and 4 normal images" in " ".join(printed.split())  # the test set's size

    results = json.loads((output / "results.json").read_text())
    assert results["demo_dataset"] is True
    assert Path(results["data"]).name == "DEMO_textures_brick"
    assert list(results["records"]) == ARMS
    for arm in ARMS:
        record = results["records"][arm]
        assert record["detector"] == "segmenter_prior" and record["generator"] == arm
        assert_ranking_metrics(record["metrics"], RANKING_METRICS)
        assert record["data"]["test_anomalies"] == 6  # two held-out drawn defects per type; shots excluded
    assert results["records"]["diffusion"]["timings"]["generator_loaded"] is True  # the fine-tuned one
    assert set(results["stage_seconds"]) == {
        "1/4 data",
        "2/4 fine-tune the diffusion generator",
        "3/4 generate samples",
        "4/4 train and test the detector",
    }

    cache = output / "cache" / "DEMO_textures_brick"
    report = verify(cache)
    assert report.complete and len(report.entries) == 6  # 2 per defect type
    assert (output / "samples_DEMO_textures_brick.png").stat().st_size > 0

    (checkpoint,) = (output / "generators" / "DEMO_textures_brick").glob("DiffusionAnomalyGenerator-*/fit.json")
    fitted_at = checkpoint.stat().st_mtime_ns
    assert main(["demo", "--quick", "true", "--output", str(output), "--classic_baseline", "null"]) == 0
    assert checkpoint.stat().st_mtime_ns == fitted_at  # second run: loaded, not fine-tuned again
    assert "loaded" in capsys.readouterr().out
    assert list(json.loads((output / "results.json").read_text())["records"]) == ["none", "diffusion"]


def test_missing_data_folder_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["demo", "--quick", "true", "--data", str(tmp_path / "nope"), "--output", str(tmp_path / "out")])
    assert status == EXIT_BAD_INPUT
    assert "nope" in capsys.readouterr().err


def test_a_detector_the_demo_cannot_train_is_refused_before_any_work(tmp_path: Path) -> None:
    from dataclasses import replace

    from anomaly_synth_aug.demo.pipeline import DemoSettings, run_demo
    from anomaly_synth_aug.errors import InvalidInputError

    with pytest.raises(InvalidInputError, match="patchcore"):
        run_demo(tmp_path / "out", settings=replace(DemoSettings.quick(), detector_name="patchcore"))
    assert not (tmp_path / "out").exists()  # refused before the dataset was built

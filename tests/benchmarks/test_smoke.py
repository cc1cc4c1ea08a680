"""Tiny end-to-end runs of the benchmark scripts (smoke preset, tiny dataset): they run, write, resume."""

import json
import math
from pathlib import Path

import pytest
import torch
from shared_fixtures import TEST_METRICS, assert_ranking_metrics, load_script

from anomaly_synth_aug.data.mvtec_folder import scan_mvtec_folder
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.evaluation.downstream import ABLATIONS, WITH_SHOTS


@pytest.mark.slow
def test_downstream_writes_results_and_resumes(tiny_mvtec: Path, tmp_path: Path, monkeypatch) -> None:
    downstream = load_script("downstream")
    out = tmp_path / "out"
    argv = [
        "--data", str(tiny_mvtec), "--preset", "smoke", "--generators", "none", "perlin",
        "--detectors", "segmenter", "--seeds", "0", "--out", str(out), "--work-dir", str(tmp_path / "work"),
    ]  # fmt: skip
    assert downstream.main(argv) == 0

    out = out / "tiny"  # one results folder per dataset
    results = json.loads((out / "downstream_smoke.json").read_text())
    assert [(r["generator"], r["detector"], r["seed"]) for r in results["runs"]] == [
        ("none", "segmenter", 0),
        ("perlin", "segmenter", 0),
    ]
    perlin = results["runs"][1]
    assert set(perlin["metrics"]) == TEST_METRICS and perlin["thresholds"]["image"] is not None
    assert_ranking_metrics(perlin["metrics"])
    assert results["runs"][0]["metrics"]["image_F1Score"] is None  # "none" has no validation threshold
    assert perlin["labels_at_validation_threshold"] is True  # F1 used the validation threshold
    assert perlin["detector_steps"] == 2 and perlin["validation_history"][-1]["step"] == 2  # a step budget
    assert perlin["data"]["shots"] == 4 and perlin["data"]["test_anomalies"] == 8  # shots left the test set
    (quality,) = results["quality"]
    assert quality["generator"] == "perlin" and quality["c2st_test_size"] > 0  # c2st's values: test_generation_quality
    assert math.isfinite(quality["c2st_auroc"])
    assert quality["background_psnr_min_db"] == "inf"  # strict JSON for a bit-exact background
    assert quality["generator_training_steps"] is None  # classic generators do not train
    assert set(quality["contrast_by_type"]["real"]) == set(quality["contrast_by_type"]["shots"]) == {"blob", "scratch"}
    assert all(value > 0 for value in quality["contrast_by_type"]["generated"].values())
    table = (out / "downstream_smoke.md").read_text()
    assert "| perlin | 1 |" in table and "Δ image AUROC vs none" in table
    assert "| segmenter | perlin | 1 |" in table  # the headline table
    assert "| shots (what generators learn from) |" in table  # beside the held-out defects' contrast
    assert (out / "downstream_smoke_gains.png").stat().st_size > 0
    assert (out / "samples" / "smoke" / "perlin.png").stat().st_size > 0

    def must_not_run(*args, **kwargs):
        raise AssertionError("a recorded run was run again")

    monkeypatch.setattr(downstream, "run_experiment", must_not_run)
    monkeypatch.setattr(downstream, "measure_generation_quality", must_not_run)
    assert downstream.main(argv) == 0  # everything is already recorded: nothing reruns
    assert json.loads((out / "downstream_smoke.json").read_text())["runs"] == results["runs"]
    (out / "downstream_smoke.md").unlink()
    assert downstream.main([*argv, "--report-only"]) == 0  # the tables again, from the JSON alone
    assert (out / "downstream_smoke.md").read_text() == table
    readme = tmp_path / "README.md"
    readme.write_text("intro\n<!-- headline:tiny -->\nstale\n<!-- /headline:tiny -->\nend\n")
    assert downstream.main([*argv, "--report-only", "--readme", str(readme)]) == 0
    copied = readme.read_text()
    assert "stale" not in copied and "| segmenter | perlin | 1 |" in copied and copied.endswith("end\n")

    # A later invocation limited to one generator still reports every recorded row, baseline first.
    limited = [*argv[:5], "perlin", *argv[7:]]
    assert downstream.main(limited) == 0
    table = (out / "downstream_smoke.md").read_text()
    assert table.index("| none | 1 |") < table.index("| perlin | 1 |")
    assert "[perlin](samples/smoke/perlin.png)" in table


def test_downstream_caps_the_shots_and_keeps_the_test_set(tiny_mvtec: Path, tmp_path: Path) -> None:
    downstream = load_script("downstream")
    argv = [
        "--data", str(tiny_mvtec), "--preset", "smoke", "--generators", "perlin", "--detectors", "segmenter",
        "--seeds", "0", "--out", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"), "--no-quality",
    ]  # fmt: skip
    assert downstream.main([*argv, "--max-shots-per-type", "1"]) == 0
    results = json.loads((tmp_path / "out" / "tiny" / "downstream_smoke.json").read_text())
    (run,) = results["runs"]
    assert run["data"]["shots"] == 2 and run["data"]["test_anomalies"] == 8  # 1 of 2 per type; the same test set
    assert results["meta"]["preset"]["max_shots_per_type"] == 1
    smoke = downstream.resolve_preset("smoke")
    capped = downstream.dataclasses.replace(smoke, max_shots_per_type=1)
    assert downstream.preset_work_dir(tmp_path, tiny_mvtec, smoke) == tmp_path / "tiny" / "smoke"
    assert downstream.preset_work_dir(tmp_path, tiny_mvtec, capped) == tmp_path / "tiny" / "smoke-shots1"  # own pools
    half = downstream.dataclasses.replace(smoke, shot_fraction=0.5)  # other shots too: its pools were shared
    assert downstream.preset_work_dir(tmp_path, tiny_mvtec, half) == tmp_path / "tiny" / "smoke-fraction0.5"
    with pytest.raises(InvalidInputError, match="another dataset or preset values"):
        downstream.main(argv)  # the uncapped benchmark may not add to the capped results
    with pytest.raises(InvalidInputError, match="max_shots_per_type must be >= 1"):
        downstream.main([*argv, "--max-shots-per-type", "0", "--out", str(tmp_path / "other")])

    assert results["meta"]["data_digest"] == scan_mvtec_folder(tiny_mvtec, decode=False).digest()
    (tiny_mvtec / "train" / "good" / "000.png").unlink()  # the dataset changed: its runs are not done any more
    with pytest.raises(InvalidInputError, match="another version of"):
        downstream.main([*argv, "--max-shots-per-type", "1"])


def test_downstream_refuses_to_mix_datasets(tiny_mvtec: Path, tmp_path: Path) -> None:
    downstream = load_script("downstream")
    out = tmp_path / "out"
    (out / "tiny").mkdir(parents=True)
    (out / "tiny" / "downstream_smoke.json").write_text(
        json.dumps({"meta": {"data": "/elsewhere"}, "runs": [{"preset": "smoke"}], "quality": []})
    )
    with pytest.raises(ValueError, match="another dataset or preset"):
        downstream.main(["--data", str(tiny_mvtec), "--preset", "smoke", "--out", str(out)])


def test_downstream_resumes_one_folder_named_relatively_or_absolutely(tmp_path: Path, monkeypatch) -> None:
    """A run started with ``--data /abs/cat`` resumes under ``--data ../x/cat``: one folder, not "another dataset"."""
    from anomaly_synth_aug.evaluation.downstream.presets import preset_record, resolve_preset
    from anomaly_synth_aug.evaluation.reporting import ResultsStore

    downstream = load_script("downstream")
    data = tmp_path / "datasets" / "cat"
    data.mkdir(parents=True)
    store = ResultsStore(tmp_path / "results.json")
    store.meta = {"data": str(data), "preset": preset_record("smoke")}
    store.runs = [{"preset": "smoke"}]
    (tmp_path / "elsewhere").mkdir()
    monkeypatch.chdir(tmp_path / "elsewhere")
    downstream.check_resumable(store, Path("../datasets/cat"), resolve_preset("smoke"))  # no error
    with pytest.raises(InvalidInputError, match="another dataset"):
        downstream.check_resumable(store, Path("../datasets"), resolve_preset("smoke"))


def test_speed_measures_generation_and_epoch_overhead(tiny_mvtec: Path, tmp_path: Path) -> None:
    speed = load_script("speed")
    out = tmp_path / "out"
    argv = [
        "--data", str(tiny_mvtec), "--preset", "smoke", "--generators", "perlin", "cutpaste",
        "--threads", "1", "--num-workers", "0", "--out", str(out), "--work-dir", str(tmp_path / "work"),
    ]  # fmt: skip
    assert speed.main(argv) == 0

    report = json.loads((out / "speed_smoke.json").read_text())
    assert set(report["generators"]) == {"perlin", "cutpaste"}
    assert all(g["images_per_s"] > 0 and g["images"] == 4 for g in report["generators"].values())
    epochs = report["epochs"]
    assert epochs["generator"] == "PerlinGenerator"
    for mode in ("plain", "online", "cached"):
        assert len(epochs[mode]["epochs_s"]) == 2 and epochs[mode]["batches"] == 2
    assert epochs["online_ratio"] > 0 and epochs["cached_ratio"] > 0 and epochs["cache_samples"] == 2
    assert report["targets"]["diffusion >= 5 images/s"]["met"] is None  # not measured here
    assert "| cached |" in (out / "speed_smoke.md").read_text()


def test_speed_measures_a_sampling_variant_on_the_fit_it_shares(tiny_mvtec: Path, tmp_path: Path) -> None:
    """``diffusion_7_steps`` differs from ``diffusion`` only in sampling: timing a second fit would be wasted."""
    speed = load_script("speed")
    args = speed.parse_args(
        ["--data", str(tiny_mvtec), "--preset", "smoke", "--generators", "diffusion", "diffusion_7_steps",
         "--threads", "1", "--work-dir", str(tmp_path / "work")]
    )  # fmt: skip
    preset = speed.resolve_preset("smoke")
    records, fitted = speed.measure_generators(args, preset, speed.SETTINGS["smoke"])
    assert records["diffusion"]["fit_s"] > 0 and not records["diffusion"]["fit_reused"]
    variant = records["diffusion_7_steps"]
    assert variant["fit_s"] is None and variant["fit_reused"] and variant["images_per_s"] > 0
    assert fitted["diffusion_7_steps"].num_inference_steps == 7
    assert fitted["diffusion_7_steps"].denoiser is not fitted["diffusion"].denoiser  # loaded, not aliased
    assert torch.equal(
        fitted["diffusion_7_steps"].denoiser.tokens.weight, fitted["diffusion"].denoiser.tokens.weight
    )
    report = {**_report({}), "generators": records}
    assert "| diffusion_7_steps | a shared fit |" in speed.markdown(report)


def test_quality_record_counts_the_diffusion_training_steps(tiny_mvtec: Path, tmp_path: Path) -> None:
    """A time-budgeted fit must say how far it got, or the quality numbers cannot be interpreted."""
    from anomaly_synth_aug.evaluation.downstream import measure_generation_quality

    record, _ = measure_generation_quality(tiny_mvtec, "diffusion", 0, "smoke", fit_store=tmp_path / "gen")
    assert record["generator_training_steps"] == 2  # the smoke preset's max_steps
    reloaded, _ = measure_generation_quality(tiny_mvtec, "diffusion", 0, "smoke", fit_store=tmp_path / "gen")
    assert reloaded["generator_loaded"] and reloaded["generator_training_steps"] == 2  # kept with the saved model


def test_a_capped_fit_does_not_count_as_meeting_the_fine_tune_target() -> None:
    """A 60-step quick fit is trivially under 10 minutes; reporting it as "met" would be a false claim."""
    speed = load_script("speed")
    generators = {"diffusion": {"fit_s": 62.0, "images_per_s": 6.0}}
    capped = speed.targets_report(generators, None, fit_steps=60)["diffusion fine-tune <= 10 min"]
    assert capped["met"] is None and capped["capped_at_steps"] == 60
    full = speed.targets_report(generators, None, fit_steps=None)["diffusion fine-tune <= 10 min"]
    assert full["met"] is True
    assert "not judged" in speed.markdown(_report(speed.targets_report(generators, None, fit_steps=60)))


def _report(targets: dict) -> dict:
    return {
        "preset": "quick", "data": "d", "threads": 1, "load_average_start": 0.0, "settings": {}, "wall_s": 1.0,
        "targets": targets, "generators": {}, "epochs": None,
    }  # fmt: skip


def test_defect_contrast_script_compares_generated_with_held_out_real(tiny_mvtec: Path, tmp_path: Path) -> None:
    from anomaly_synth_aug.generators.real_paste import RealShotPasteGenerator
    from anomaly_synth_aug.data.fewshot import few_shot_split

    split = few_shot_split(tiny_mvtec)
    generator = RealShotPasteGenerator().fit([], split.load_shots())
    saved = generator.save(tmp_path / "gen")
    out = tmp_path / "contrast.json"
    sheet = tmp_path / "sheet.png"
    result = load_script("defect_contrast").main(
        [str(saved), f"--data={tiny_mvtec}", "--images=3", f"--out={out}", f"--sheet={sheet}"]
    )
    assert set(result["generated"]) == set(result["real"]) == set(result["shots"]) == {"blob", "scratch"}
    from PIL import Image

    width, height = Image.open(sheet).size
    assert width > height > 0  # 2 types x (real row + generated row), 6 pairs per row
    assert json.loads(out.read_text())["real"] == pytest.approx(result["real"])
    assert result["ratio_to_shots"] > 0
    features = result["features"]
    assert set(features["generated"]) == set(features["shots"]) == {"blob", "scratch"}
    assert all(0.0 <= share <= 1.0 for share in features["below_faintest_shot"].values())
    assert features["ratio_to_shots"] > 0
    assert result["generation"]["images"] == 2 * 3 and result["generation"]["images_per_s"] > 0


def test_defect_contrast_script_applies_sampling_options(tiny_mvtec: Path, tmp_path: Path) -> None:
    from anomaly_synth_aug.errors import InvalidInputError
    from anomaly_synth_aug.generators.real_paste import RealShotPasteGenerator
    from anomaly_synth_aug.data.fewshot import few_shot_split

    saved = RealShotPasteGenerator().fit([], few_shot_split(tiny_mvtec).load_shots()).save(tmp_path / "gen")
    script = load_script("defect_contrast")
    assert script.sampling_option("guidance_scale=3") == ("guidance_scale", 3)
    assert script.sampling_option("mode=repaint") == ("mode", "repaint")
    with pytest.raises(InvalidInputError, match="cannot change"):  # real-shot paste has no sampling options
        script.main([str(saved), f"--data={tiny_mvtec}", "--images=2", "--set", "margin=1"])


def test_full_preset_defaults_to_the_core_matrix() -> None:
    """Without --matrix: the four anchors; the prior segmenter on the shots, and on pasted shots and diffusion with the shots."""
    script, matrix = load_script("downstream"), load_script("downstream_matrix")
    assert script.parse_args([]).matrix is None
    core = script.matrix_pairs("full", None, None)
    anchors = {d for g, d in core if g == "real_paste" and d != "segmenter_prior"}
    assert anchors == {"patchcore", "padim", "patchcore_native", "padim_native"}
    core_sources = {"shots_only", "real_paste_with_shots", "diffusion_with_shots"}
    assert {g for g, d in core if d == "segmenter_prior"} == core_sources
    assert "segmenter" not in {d for _, d in core}
    plain = script.matrix_pairs("full", None, None, "segmenter")
    assert plain == [(g, "segmenter") for g, d in core if d == "segmenter_prior"]  # the core's sources, no prior
    prior = script.matrix_pairs("full", None, None, "prior")
    assert prior == [pair for pair in core if pair[1] == "segmenter_prior"]  # the core without its anchors
    sources = script.matrix_pairs("full", None, None, "sources")
    assert set(core) < set(sources) and set(plain) < set(sources)
    assert {g for g, d in sources if d == "segmenter"} == set(matrix.SOURCES)  # every row of the headline table
    prior_sources = script.matrix_pairs("full", None, None, "prior_sources")
    assert set(core) < set(prior_sources) and {d for _, d in prior_sources} - {d for _, d in core} == set()
    assert {("none", "segmenter_prior"), ("shots_plus_diffusion", "segmenter_prior")} < set(prior_sources)
    headline = {(g, d) for d, g, _ in load_script("downstream_reports").HEADLINE_ROWS}
    assert set(prior_sources) < headline  # every row it runs is in the headline table
    prior_ablations = script.matrix_pairs("full", None, None, "prior_ablations")
    assert {d for _, d in prior_ablations} == {"segmenter_prior"}
    compared_with = {ABLATIONS[g][0] for g, _ in prior_ablations}
    assert compared_with == {"diffusion_with_shots", "real_paste_with_shots"}  # core rows: they run on every seed
    assert {"diffusion_no_disentangle_with_shots", "diffusion_no_inversion_with_shots"} < {g for g, _ in prior_ablations}
    assert ("real_paste_context_with_shots", "segmenter_prior") in prior_ablations  # placement judged on both sources
    everything = script.matrix_pairs("full", None, None, "all")
    assert set(sources) < set(everything) and set(prior_ablations) < set(everything)
    assert not {g for g, d in everything if d == "segmenter"} & set(WITH_SHOTS) - set(matrix.SOURCES)
    assert ("diffusion_no_filter", "segmenter") in everything
    assert ("real_paste", "segmenter_image_only") in everything  # what the normal memory adds
    assert ("real_paste", "segmenter_scratch") in everything  # the from-scratch network is an ablation row


def test_generators_and_detectors_limit_the_matrix_or_cross() -> None:
    script = load_script("downstream")
    assert script.matrix_pairs("full", ["real_paste"], None) == [
        ("real_paste", "patchcore"),
        ("real_paste", "padim"),
        ("real_paste", "patchcore_native"),
        ("real_paste", "padim_native"),
    ]
    assert script.matrix_pairs("full", ["real_paste"], None, "sources")[-1] == ("real_paste", "segmenter")
    assert script.matrix_pairs("full", None, ["padim"]) == [("real_paste", "padim")]
    assert script.matrix_pairs("quick", ["cutpaste"], ["segmenter", "padim"]) == [
        ("cutpaste", "segmenter"),
        ("cutpaste", "padim"),
    ]
    assert script.DEFAULT_SEEDS["full"] == [0, 1, 2]
    with pytest.raises(InvalidInputError, match="'core' matrix has no run"):  # ran nothing and exited 0
        script.matrix_pairs("full", ["perlin_with_shots"], None)


def test_default_datasets_are_both_shared_ones_or_a_clear_error(monkeypatch, tmp_path: Path) -> None:
    script = load_script("downstream")
    monkeypatch.setattr(script, "DEFAULT_DATASETS", [tmp_path / "absent_a", tmp_path / "absent_b"])
    with pytest.raises(InvalidInputError, match="--data"):
        script.default_datasets()
    (tmp_path / "absent_b").mkdir()
    assert script.default_datasets() == [tmp_path / "absent_b"]
    assert [p.name for p in load_script("downstream").DEFAULT_DATASETS] == ["magnetic_tile", "mvtec_screw"]


def test_matrix_is_refused_outside_the_full_preset(tmp_path: Path) -> None:
    script = load_script("downstream")
    with pytest.raises(InvalidInputError, match="full preset"):
        script.main(["--quick", "--matrix", "all", "--out", str(tmp_path)])


@pytest.mark.parametrize("name", ["downstream", "speed"])
def test_scripts_default_to_the_full_preset(name: str) -> None:
    script = load_script(name)
    assert script.parse_args([]).preset == "full"
    assert script.parse_args(["--quick"]).preset == "quick"
    assert script.parse_args(["--preset", "quick"]).preset == "quick"
    assert script.parse_args([]).threads == 2  # the budgets and targets are measured on 2 cores


@pytest.mark.slow
def test_normal_memory_script_scores_memories_on_the_validation_set_only(tiny_mvtec: Path, tmp_path: Path) -> None:
    """The whole-image memory reads every training normal once and is scored on the synthetic validation set."""
    from shared_fixtures import make_mvtec_layout

    script = load_script("normal_memory")
    # 12 normals: 15 % would hold back one, with no defect; the split holds back two, one with a pasted shot
    script.main(["--data", str(tiny_mvtec), "--variants", "whole_4096", "--out", str(tmp_path)])
    tiny = json.loads((tmp_path / "tiny_seed0.json").read_text())
    assert (tiny["val_images"], tiny["val_anomalous"]) == (2, 1)
    data = make_mvtec_layout(tmp_path / "larger", n_train=40)
    script.main(["--data", str(data), "--variants", "whole_4096", "--out", str(tmp_path)])
    record = json.loads((tmp_path / "larger_seed0.json").read_text())
    assert set(record["variants"]) == {"whole_4096"}
    assert record["val_anomalous"] * 2 == record["val_images"]  # held-back normals, half with a pasted shot
    whole = record["variants"]["whole_4096"]
    # 48 x 64 images, padded to 64 x 64: 64 stride-8 patches each, all kept (fewer than 4096)
    assert whole["memory_patches"] == 64 * record["train_normals"]
    for variant in record["variants"].values():
        assert 0.0 <= variant["val_image_AUROC_top0.001"] <= 1.0 and 0.0 <= variant["val_image_AUROC_max_patch"] <= 1.0


def test_context_placement_ranks_each_shots_position_among_its_images_positions(tiny_mvtec: Path, tmp_path: Path) -> None:
    """The leave-one-shot-out check of context placement: a percentile per shot type, written to the out folder."""
    from anomaly_synth_aug.data.fewshot import few_shot_split

    out = tmp_path / "context"
    (result,) = load_script("context_placement").main(["--data", str(tiny_mvtec), "--out", str(out), "--threads", "1"])
    counts: dict[str, int] = {}
    for shot in few_shot_split(tiny_mvtec).load_shots():
        counts[shot.defect_type] = counts.get(shot.defect_type, 0) + 1
    assert set(result["by_type"]) == {name for name, count in counts.items() if count >= 2}
    for row in result["by_type"].values():
        assert 0.0 <= row["mean_percentile"] <= 1.0 and 0.0 < row["admitted_share"] <= 1.0
    assert (out / "README.md").is_file() and (out / "results.json").is_file()

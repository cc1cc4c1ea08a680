"""``downstream.py --report-only --readme``: every marked README block of a dataset, from its results file alone."""

import json
import logging
from pathlib import Path

import pytest
from shared_fixtures import load_script


def _run(generator: str, detector: str, seed: int, image: float, pixel: float) -> dict:
    metrics = {"image_AUROC": image, "image_AUPR": image, "pixel_AUROC": 0.9, "pixel_AUPR": pixel, "pixel_AUPRO": 0.8}
    return {"preset": "full", "generator": generator, "detector": detector, "seed": seed, "metrics": metrics,
            "timings": {"generator_fit_s": 0.0, "train_s": 60.0, "test_s": 6.0}}  # fmt: skip


def test_report_only_fills_the_headline_verdict_ablation_and_seed_blocks(tmp_path: Path) -> None:
    downstream = load_script("downstream")
    runs = [
        *(_run("shots_only", "segmenter_prior", s, 0.90, 0.60) for s in range(3)),
        *(_run("diffusion_with_shots", "segmenter_prior", s, 0.91, 0.40 + 0.01 * s) for s in range(3)),
        *(_run("diffusion_no_inversion_with_shots", "segmenter_prior", s, 0.92, 0.35) for s in (1, 2)),
        *(_run("diffusion_no_inversion_with_shots", "segmenter", s, 0.5, 0.1) for s in (1, 2)),  # another detector
        *(_run("real_paste", "padim_native", s, 0.95, 0.20) for s in range(3)),
    ]
    results = tmp_path / "out" / "tiny" / "downstream_full.json"
    results.parent.mkdir(parents=True)
    results.write_text(json.dumps({"meta": {"data": "tiny"}, "runs": runs, "quality": []}))
    readme = tmp_path / "README.md"
    blocks = ("headline", "verdict", "ablations", "seeds")
    readme.write_text("".join(f"<!-- {b}:tiny -->\nstale\n<!-- /{b}:tiny -->\n" for b in blocks) + "end\n")
    argv = ["--data", str(tmp_path / "tiny"), "--out", str(tmp_path / "out"), "--report-only", "--readme", str(readme)]
    assert downstream.main(argv) == 0
    text = readme.read_text()
    assert "stale" not in text and text.endswith("end\n")
    ablations = text[text.index("<!-- ablations:tiny -->") : text.index("<!-- /ablations:tiny -->")]
    assert "| diffusion_no_inversion_with_shots |" in ablations
    assert "| 2 | +0.010 ± 0.000 |" in ablations  # seeds 1 and 2 paired
    assert "###" not in ablations and ablations.count("| diffusion_no_inversion_with_shots |") == 1
    verdict = text[text.index("<!-- verdict:tiny -->") : text.index("<!-- /verdict:tiny -->")]
    assert "`shots_only`" in verdict and "`padim_native`" in verdict
    assert (tmp_path / "out" / "tiny" / "downstream_full_sources.png").stat().st_size > 0
    seeds = text[text.index("<!-- seeds:tiny -->") : text.index("<!-- /seeds:tiny -->")]
    assert "| `diffusion_with_shots` | 3 |" in seeds and "0.400 / 0.410 / 0.420" in seeds
    assert "-0.190 (-0.200, -0.190, -0.180)" in seeds  # paired with the shots alone, seed by seed
    assert "– / 0.350 / 0.350" in seeds and "0.100" not in seeds  # segmenter_prior's runs, not the segmenter's
    assert "| `padim_native` (no defects) | 3 |" in seeds
    report = (tmp_path / "out" / "tiny" / "downstream_full.md").read_text()
    assert "recipe by seed" in report and "0.400 / 0.410 / 0.420" in report


def _choice_record(data: Path, chosen: str, default: str = "diffusion_with_shots", **layout: object) -> dict:
    return {
        "detector": "segmenter_prior",
        "layout": {"source": str(data), **layout},
        "chosen": chosen,
        "candidates": [
            {"name": default, "seeds": 1, "pixel_ap": 0.3, "image_auroc": 0.9},
            {"name": "diffusion_no_inversion_with_shots", "seeds": 1, "pixel_ap": 0.5, "image_auroc": 0.9},
        ],
        "min_gain": 0.01,
    }


def _chosen_setup(tmp_path: Path, choice: dict | str) -> tuple[Path, Path]:
    """A results file where the default beats its variant on test, and a recorded pick; returns (data, results)."""
    data = tmp_path / "tiny"
    runs = [
        *(_run("shots_only", "segmenter_prior", s, 0.90, 0.60) for s in range(3)),
        *(_run("diffusion_with_shots", "segmenter_prior", s, 0.95, 0.70) for s in range(3)),
        *(_run("diffusion_no_inversion_with_shots", "segmenter_prior", s, 0.91, 0.50) for s in range(3)),
    ]
    results = tmp_path / "out" / "tiny" / "downstream_full.json"
    results.parent.mkdir(parents=True)
    meta = {"data": str(data), "preset": {"shot_fraction": 1 / 3}}
    results.write_text(json.dumps({"meta": meta, "runs": runs, "quality": []}))
    (tmp_path / "choices" / "tiny").mkdir(parents=True)
    text = choice if isinstance(choice, str) else json.dumps(choice)
    (tmp_path / "choices" / "tiny" / "choice.json").write_text(text)
    return data, results


def _readme_block(readme: Path, block: str) -> str:
    text = readme.read_text()
    return text[text.index(f"<!-- {block}:tiny -->") : text.index(f"<!-- /{block}:tiny -->")]


def test_the_verdict_judges_the_variant_chosen_on_held_back_shots(tmp_path: Path) -> None:
    downstream = load_script("downstream")
    reports = load_script("downstream_reports")
    data, results = _chosen_setup(tmp_path, _choice_record(tmp_path / "tiny", "diffusion_no_inversion_with_shots"))
    store = downstream.ResultsStore(results)
    assert "met so far" in reports.verdict_table(store, "full")  # the default would have won on test
    assert "met so far" in reports.verdict_table(store, "full", downstream.judged_for(store, None))
    verdict = reports.verdict_table(store, "full", downstream.judged_for(store, tmp_path / "choices"))
    assert verdict.startswith("`diffusion_no_inversion_with_shots` is judged in place of `diffusion_with_shots`")
    assert "| diffusion | `diffusion_no_inversion_with_shots` | 3 |" in verdict and "missed so far" in verdict
    readme = tmp_path / "README.md"
    readme.write_text("".join(f"<!-- {b}:tiny -->\nstale\n<!-- /{b}:tiny -->\n" for b in ("headline", "verdict")))
    out, choices = str(tmp_path / "out"), str(tmp_path / "choices")
    argv = ["--data", str(data), "--out", out, "--choices", choices, "--report-only", "--readme", str(readme)]
    assert downstream.main(argv) == 0
    assert "missed so far" in _readme_block(readme, "verdict") and "is judged in place of" in _readme_block(
        readme, "verdict"
    )
    assert "| diffusion_no_inversion_with_shots (chosen on held-back shots) | 3 |" in _readme_block(readme, "headline")
    report = (tmp_path / "out" / "tiny" / "downstream_full.md").read_text()
    assert "is judged in place of" in report
    default_row = report.index("| segmenter_prior | diffusion_with_shots | 3 |")
    assert report.index("| diffusion_no_inversion_with_shots (chosen on held-back shots) | 3 |") > default_row
    assert "(chosen on held-back shots)" not in reports.headline_table(store, "full")


def test_the_chosen_generator_on_top_of_the_shots_is_judged_and_shown_under_its_default(tmp_path: Path) -> None:
    downstream = load_script("downstream")
    reports = load_script("downstream_reports")
    data, results = _chosen_setup(tmp_path, _choice_record(tmp_path / "tiny", "diffusion_no_inversion_with_shots"))
    record = json.loads(results.read_text())
    record["runs"] += [
        *(_run("shots_plus_diffusion", "segmenter_prior", s, 0.99, 0.90) for s in range(3)),  # would win on test
        *(_run("shots_plus_diffusion_no_inversion", "segmenter_prior", s, 0.92, 0.55) for s in range(3)),
    ]
    results.write_text(json.dumps(record))
    store = downstream.ResultsStore(results)
    assert "met so far" in reports.verdict_table(store, "full")  # without the pick: the default generator wins
    judged = downstream.judged_for(store, tmp_path / "choices")
    verdict = reports.verdict_table(store, "full", judged)
    assert "`shots_plus_diffusion_no_inversion` in place of `shots_plus_diffusion`" in verdict
    assert "| diffusion | `shots_plus_diffusion_no_inversion` | 3 |" in verdict and "missed so far" in verdict
    headline = reports.headline_table(store, "full", judged)
    default_row = headline.index("| segmenter_prior | shots_plus_diffusion | 3 |")
    assert headline.index("| shots_plus_diffusion_no_inversion (chosen on held-back shots) | 3 |") > default_row


def test_a_pick_made_on_another_shot_split_is_not_applied(tmp_path: Path) -> None:
    downstream = load_script("downstream")
    record = _choice_record(tmp_path / "tiny", "diffusion_no_inversion_with_shots", shot_fraction=0.5)
    _, results = _chosen_setup(tmp_path, record)
    judged = downstream.judged_for(downstream.ResultsStore(results), tmp_path / "choices")
    assert judged.note == "" and judged.replaced is None  # some of its held-back shots are this split's test images


@pytest.mark.parametrize(
    "record",
    [
        "{half a file",
        _choice_record(Path("tiny"), "diffusion_no_inversion_with_shots", default="diffusion_visible_with_shots"),
        _choice_record(Path("tiny"), "shots_plus_diffusion"),  # a judged recipe already: would count twice
    ],
    ids=["unreadable", "default not judged", "chosen judged already"],
)
def test_an_unusable_pick_is_skipped_with_a_warning_and_the_reports_are_still_written(
    tmp_path: Path, record: dict | str, caplog: pytest.LogCaptureFixture
) -> None:
    downstream = load_script("downstream")
    if isinstance(record, dict):
        record["layout"]["source"] = str(tmp_path / "tiny")
    data, _ = _chosen_setup(tmp_path, record)
    readme = tmp_path / "README.md"
    readme.write_text("<!-- verdict:tiny -->\nstale\n<!-- /verdict:tiny -->\n")
    argv = ["--data", str(data), "--out", str(tmp_path / "out"), "--choices", str(tmp_path / "choices")]
    with caplog.at_level(logging.WARNING):
        assert downstream.main([*argv, "--report-only", "--readme", str(readme)]) == 0
    assert "Ignoring the variant choice" in caplog.text
    assert "met so far" in _readme_block(readme, "verdict") and "in place of" not in _readme_block(readme, "verdict")


def test_capped_results_fill_their_own_readme_blocks_and_never_the_main_ones(tmp_path: Path) -> None:
    downstream = load_script("downstream")
    runs = [*(_run("shots_only", "segmenter_prior", s, 0.80, 0.30) for s in range(2))]
    results = tmp_path / "out" / "tiny" / "downstream_full.json"
    results.parent.mkdir(parents=True)
    meta = {"data": "tiny", "preset": {"max_shots_per_type": 5}}
    results.write_text(json.dumps({"meta": meta, "runs": runs, "quality": []}))
    readme = tmp_path / "README.md"
    names = ("headline:tiny", "headline:tiny:shots5")
    readme.write_text("".join(f"<!-- {n} -->\nstale {n}\n<!-- /{n} -->\n" for n in names))
    argv = ["--data", str(tmp_path / "tiny"), "--out", str(tmp_path / "out"), "--report-only", "--readme", str(readme)]
    assert downstream.main(argv) == 0  # no --max-shots-per-type: the file's own record decides
    text = readme.read_text()
    assert "stale headline:tiny\n" in text and "stale headline:tiny:shots5" not in text
    assert "| segmenter_prior | shots_only | 2 |" in text

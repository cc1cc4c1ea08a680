"""``downstream.py --report-only --readme``: every marked README block of a dataset, from its results file alone."""

import json
from pathlib import Path

from shared_fixtures import load_script


def _run(generator: str, detector: str, seed: int, image: float, pixel: float) -> dict:
    metrics = {"image_AUROC": image, "image_AUPR": image, "pixel_AUROC": 0.9, "pixel_AUPR": pixel, "pixel_AUPRO": 0.8}
    return {"preset": "full", "generator": generator, "detector": detector, "seed": seed, "metrics": metrics,
            "timings": {"generator_fit_s": 0.0, "train_s": 60.0, "test_s": 6.0}}  # fmt: skip


def test_report_only_fills_the_headline_verdict_and_ablation_blocks(tmp_path: Path) -> None:
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
    blocks = ("headline", "verdict", "ablations")
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


def test_the_verdict_judges_the_variant_chosen_on_held_back_shots(tmp_path: Path) -> None:
    downstream = load_script("downstream")
    data = tmp_path / "tiny"
    runs = [
        *(_run(name, "segmenter_prior", s, 0.90, ap) for s in range(3) for name, ap in [("shots_only", 0.60)]),
        *(_run("diffusion_with_shots", "segmenter_prior", s, 0.95, 0.70) for s in range(3)),
        *(_run("diffusion_no_inversion_with_shots", "segmenter_prior", s, 0.91, 0.50) for s in range(3)),
    ]
    results = tmp_path / "out" / "tiny" / "downstream_full.json"
    results.parent.mkdir(parents=True)
    results.write_text(json.dumps({"meta": {"data": str(data)}, "runs": runs, "quality": []}))
    choice = {
        "detector": "segmenter_prior",
        "layout": {"source": str(data)},
        "chosen": "diffusion_no_inversion_with_shots",
        "candidates": [
            {"name": "diffusion_with_shots", "seeds": 1, "pixel_ap": 0.3, "image_auroc": 0.9},
            {"name": "diffusion_no_inversion_with_shots", "seeds": 1, "pixel_ap": 0.5, "image_auroc": 0.9},
        ],
        "min_gain": 0.01,
    }
    (tmp_path / "choices" / "tiny").mkdir(parents=True)
    (tmp_path / "choices" / "tiny" / "choice.json").write_text(json.dumps(choice))
    store = downstream.ResultsStore(results)
    assert "met so far" in downstream.verdict_table(store, "full", None)  # the default would have won on test
    verdict = downstream.verdict_table(store, "full", tmp_path / "choices")
    assert verdict.startswith("`diffusion_no_inversion_with_shots` is judged in place of `diffusion_with_shots`")
    assert "| diffusion | `diffusion_no_inversion_with_shots` | 3 |" in verdict and "missed so far" in verdict
    argv = ["--data", str(data), "--out", str(tmp_path / "out"), "--choices", str(tmp_path / "choices"), "--report-only"]
    assert downstream.main(argv) == 0
    report = (tmp_path / "out" / "tiny" / "downstream_full.md").read_text()
    assert "is judged in place of" in report
    default_row = report.index("| segmenter_prior | diffusion_with_shots | 3 |")
    assert report.index("| diffusion_no_inversion_with_shots (chosen on held-back shots) | 3 |") > default_row
    assert "(chosen on held-back shots)" not in downstream.headline_table(store, "full", None)

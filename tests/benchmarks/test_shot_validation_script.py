"""``benchmarks/shot_validation.py``: the downstream benchmark on held-back shots, and the pick."""

import json
from pathlib import Path

import pytest
from shared_fixtures import load_script, make_mvtec_layout

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.evaluation.downstream import choose_variant


def test_validates_every_candidate_on_held_back_shots_and_writes_the_choice(tmp_path: Path) -> None:
    category = make_mvtec_layout(tmp_path / "cat", n_train=14, defects={"blob": 12, "scratch": 12})
    script = load_script("shot_validation")
    argv = [
        "--data", str(category), "--candidates", "perlin", "real_paste", "--detector", "segmenter",
        "--preset", "smoke", "--out", str(tmp_path / "out"), "--work-dir", str(tmp_path / "work"), "--threads", "1",
    ]  # fmt: skip
    assert script.main(argv) == 0

    out = tmp_path / "out" / "cat"
    results = json.loads((out / "downstream_smoke.json").read_text())
    assert {(r["generator"], r["seed"]) for r in results["runs"]} == {("perlin", 0), ("real_paste", 0)}
    data = results["runs"][0]["data"]
    # 4 shots per type in the category: 2 fit (a third would be 1), 2 are scored; 2 of the 14 train normals validate
    assert data["shots"] == 4 and data["test_anomalies"] == 4 and data["test_normals"] == 2
    assert results["meta"]["preset"]["shot_fraction"] == 0.5
    choice = json.loads((out / "choice.json").read_text())
    assert choice["chosen"] == choose_variant(results["runs"], ["perlin", "real_paste"], "segmenter").chosen
    assert choice["detector"] == "segmenter"
    assert [c["name"] for c in choice["candidates"]] == ["perlin", "real_paste"]
    assert choice["layout"]["shots_per_type"] == {"blob": 4, "scratch": 4}
    layout = json.loads((out / "layout.json").read_text())  # kept with the results, without this machine's paths
    assert layout["links"] == 14 + 2 * 4 * 2 and str(tmp_path) not in json.dumps(layout["links"])
    assert f"Chosen: **{choice['chosen']}**" in (out / "choice.md").read_text()
    (out / "choice.md").unlink()
    assert script.main([*argv, "--report-only"]) == 0  # the pick again, from the recorded runs
    assert (out / "choice.md").is_file()

    recorded = results["runs"]
    (category / "train" / "good" / "013.png").unlink()  # the data changed: the validation folder is another one
    with pytest.raises(InvalidInputError, match="another version of") as refused:
        script.main(argv)
    assert "downstream_smoke.json" in str(refused.value) and "move the file aside" in str(refused.value)
    assert json.loads((out / "layout.json").read_text())["links"] == 14 + 2 * 4 * 2  # the runs' layout, kept
    assert json.loads((out / "downstream_smoke.json").read_text())["runs"] == recorded  # nothing reused or lost


def test_refuses_fewer_than_two_different_candidates_before_running_anything(tmp_path: Path) -> None:
    script = load_script("shot_validation")
    for candidates in (["perlin"], ["perlin", "perlin"]):
        with pytest.raises(SystemExit):
            script.parse_args(["--data", str(tmp_path), "--candidates", *candidates])

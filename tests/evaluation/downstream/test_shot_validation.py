"""The validation folder of held-back shots, and the rule that picks a variant on it."""

import dataclasses
import json
from pathlib import Path

import pytest
from shared_fixtures import make_mvtec_layout

from anomaly_synth_aug.data.fewshot import few_shot_split
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.evaluation.downstream.shot_validation import (
    MARKER,
    choice_markdown,
    choose_variant,
    held_back_normals,
    judged_sources,
    read_choice,
    shot_validation_layout,
    unusable_pick,
)


@pytest.fixture
def category(tmp_path: Path) -> Path:
    return make_mvtec_layout(tmp_path / "cat", n_train=20, n_test_good=5, defects={"blob": 9, "scratch": 7})


def _names(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_layout_holds_the_shots_and_held_back_normals_only(category: Path, tmp_path: Path) -> None:
    layout = shot_validation_layout(category, tmp_path / "val" / "cat")
    root = layout.root
    assert _names(root / "test" / "blob") == ["000.png", "001.png", "002.png"]  # the first third: the shots
    assert _names(root / "test" / "scratch") == ["000.png", "001.png"]
    assert _names(root / "ground_truth" / "blob") == ["000_mask.png", "001_mask.png", "002_mask.png"]
    validation, train = _names(root / "test" / "good"), _names(root / "train" / "good")
    assert len(validation) == 3 and len(train) == 17  # 15 % of 20 normals, evenly spaced
    assert validation == ["000.png", "006.png", "013.png"] and not set(validation) & set(train)
    linked = [p for p in root.rglob("*.png")]
    assert linked and all(p.is_symlink() for p in linked)  # nothing copied
    assert (root / "test" / "blob" / "000.png").resolve() == (category / "test" / "blob" / "000.png").resolve()
    split = few_shot_split(root, 0.5)  # what the benchmark then does inside it
    assert [r.image_path.name for r in split.shots if r.defect_type == "blob"] == ["000.png"]
    assert [r.image_path.name for r in split.eval_anomalies if r.defect_type == "blob"] == ["001.png", "002.png"]
    shots = {r.image_path.resolve() for r in few_shot_split(category).shots}
    for link in linked:  # every file comes from the training side: train normals, shots and their masks
        target = link.resolve()
        assert target.parent == (category / "train" / "good").resolve() or target in shots or (
            target.parent.parent == (category / "ground_truth").resolve()
            and (category / "test" / target.parent.name / target.name.replace("_mask", "")).resolve() in shots
        ), link


def test_layout_is_kept_when_unchanged_rebuilt_when_not_and_never_over_someone_elses_folder(
    category: Path, tmp_path: Path
) -> None:
    dest = tmp_path / "val" / "cat"
    shot_validation_layout(category, dest)
    extra = dest / "test" / "good" / "extra.png"
    extra.symlink_to(category / "train" / "good" / "001.png")
    shot_validation_layout(category, dest)  # the same layout: left as it is (a running benchmark may read it)
    assert extra.is_symlink()
    partial = dest.with_name(".cat.partial")  # what an interrupted build leaves
    (partial / "test" / "junk").mkdir(parents=True)
    layout = shot_validation_layout(category, dest, normal_share=0.5)  # another layout: rebuilt
    assert len(layout.test_normals) == 10 and not extra.exists() and (dest / MARKER).is_file()
    assert not partial.exists() and not (dest / "test" / "junk").exists()
    assert (category / "train" / "good" / "001.png").is_file()  # rebuilding removes links, never their files
    other = tmp_path / "mine"
    other.mkdir()
    (other / "notes.txt").write_text("keep me")
    with pytest.raises(InvalidInputError, match="holds something else"):
        shot_validation_layout(category, other)
    assert (other / "notes.txt").read_text() == "keep me"


def test_held_back_normals_are_evenly_spaced_and_never_all(tmp_path: Path) -> None:
    normals = [tmp_path / f"{i:02d}.png" for i in range(10)]
    assert [p.name for p in held_back_normals(normals, 0.2)] == ["00.png", "05.png"]
    assert len(held_back_normals(normals[:2], 0.9)) == 1
    with pytest.raises(InvalidInputError, match="nothing to hold back"):
        held_back_normals(normals[:1])
    with pytest.raises(InvalidInputError, match="normal share"):
        held_back_normals(normals, 1.0)


def _run(generator: str, seed: int, pixel_ap: float | None, image_auroc: float, detector: str = "segmenter_prior") -> dict:
    metrics = {"pixel_AUPR": pixel_ap, "image_AUROC": image_auroc}
    return {"generator": generator, "detector": detector, "seed": seed, "metrics": metrics}


def test_the_default_stays_unless_another_is_clearly_better() -> None:
    candidates = ["default", "variant"]
    level = [_run("default", 0, 0.50, 0.90), _run("variant", 0, 0.505, 0.95)]
    assert choose_variant(level, candidates).chosen == "default"  # within min_gain: level
    better = [_run("default", 0, 0.50, 0.90), _run("variant", 0, 0.55, 0.895)]
    assert choose_variant(better, candidates).chosen == "variant"
    worse_images = [_run("default", 0, 0.50, 0.90), _run("variant", 0, 0.60, 0.85)]
    assert choose_variant(worse_images, candidates).chosen == "default"  # image AUROC guards the pick


def test_a_gain_of_exactly_min_gain_counts_and_so_does_a_loss_of_exactly_min_gain() -> None:
    runs = [_run("default", 0, 0.5, 0.75), _run("variant", 0, 0.75, 0.5)]
    assert choose_variant(runs, ["default", "variant"], min_gain=0.25).chosen == "variant"
    assert choose_variant(runs, ["default", "variant"], min_gain=0.5).chosen == "default"  # pixel AP +0.25 < 0.5


def test_the_highest_of_several_better_ones_and_only_shared_seeds_count() -> None:
    runs = [
        _run("default", 0, 0.40, 0.90),
        _run("a", 0, 0.50, 0.90),
        _run("b", 0, 0.60, 0.90),
        _run("b", 1, 0.00, 0.10),  # the default has no seed 1: not compared
        _run("b", 0, 0.99, 0.99, detector="segmenter"),  # another detector
    ]
    choice = choose_variant(runs, ["default", "a", "b"])
    assert choice.chosen == "b" and [c.seeds for c in choice.candidates] == [1, 1, 1]
    assert choice.candidates[2].pixel_ap == pytest.approx(0.60)
    table = choice_markdown(choice)
    assert "| default (default) | 1 | 0.400 | 0.900 |" in table and "| **b** | 1 | 0.600 | 0.900 |" in table


def test_choice_errors_name_the_fix() -> None:
    with pytest.raises(InvalidInputError, match="two candidates"):
        choose_variant([], ["default"])
    with pytest.raises(InvalidInputError, match=r"none at all for \['variant'\]"):
        choose_variant([_run("default", 0, 0.5, 0.9)], ["default", "variant"])
    with pytest.raises(InvalidInputError, match="each was run on other seeds"):
        choose_variant([_run("default", 0, 0.5, 0.9), _run("variant", 1, 0.5, 0.9)], ["default", "variant"])
    undefined = [_run("default", 0, 0.5, 0.9), _run("variant", 0, None, 0.9)]  # NaN, stored as null
    with pytest.raises(InvalidInputError, match="no value for variant seed 0 pixel_AUPR"):  # was a bare TypeError
        choose_variant(undefined, ["default", "variant"])


def _record(folder: Path, source: Path, chosen: str, detector: str = "segmenter_prior") -> Path:
    """A choice.json as benchmarks/shot_validation.py writes it."""
    runs = [_run("diffusion_with_shots", 0, 0.3, 0.9), _run("diffusion_no_inversion_with_shots", 0, 0.3, 0.9)]
    choice = choose_variant(runs, ["diffusion_with_shots", "diffusion_no_inversion_with_shots"], detector)
    layout = {"source": str(source), "shot_fraction": 1 / 3}
    record = {"detector": detector, "layout": layout, **dataclasses.asdict(choice), "chosen": chosen}
    path = folder / source.name / "choice.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(record))
    return path


def test_a_recorded_pick_reads_back_and_applies_to_its_own_category_only(tmp_path: Path) -> None:
    data, choices = tmp_path / "data" / "tile", tmp_path / "choices"
    path = _record(choices, data, "diffusion_no_inversion_with_shots")
    recorded = read_choice(path)
    assert recorded.default == "diffusion_with_shots" and recorded.choice.chosen == "diffusion_no_inversion_with_shots"
    assert recorded.mismatch(data, "segmenter_prior", 1 / 3) == ""
    assert "not " in recorded.mismatch(tmp_path / "layouts" / "tile", "segmenter_prior", 1 / 3)  # another folder
    assert recorded.mismatch(data, "segmenter", 1 / 3) == "made for segmenter_prior, not segmenter"
    assert "shot fraction 0.333333" in recorded.mismatch(data, "segmenter_prior", 0.5)

    judged = judged_sources(data, choices, "segmenter_prior", root=tmp_path)
    assert judged.families["diffusion"][1] == "diffusion_no_inversion_with_shots"
    assert "`diffusion_no_inversion_with_shots` is judged in place of `diffusion_with_shots`" in judged.note
    assert judged.families["diffusion"][2] == "shots_plus_diffusion_no_inversion"  # the chosen generator throughout
    assert judged.counterparts == {
        "diffusion": "diffusion_no_inversion",
        "shots_plus_diffusion": "shots_plus_diffusion_no_inversion",
    }
    assert "`shots_plus_diffusion_no_inversion` in place of `shots_plus_diffusion`" in judged.note
    assert "`choices/tile/choice.md`" in judged.note  # shown relative to root
    for ignored in (
        judged_sources(tmp_path / "layouts" / "tile", choices, "segmenter_prior"),  # the validation runs themselves
        judged_sources(data, choices, "segmenter"),
        judged_sources(data, choices, "segmenter_prior", shot_fraction=0.5),  # its held-back shots: test images
        judged_sources(data, None, "segmenter_prior"),
        judged_sources(tmp_path / "data" / "screw", choices, "segmenter_prior"),  # nothing recorded
    ):
        assert ignored.note == "" and ignored.families["diffusion"][1] == "diffusion_with_shots"
    _record(choices, data, "diffusion_with_shots")
    assert "was kept" in judged_sources(data, choices, "segmenter_prior").note


def test_a_broken_choice_record_names_the_file_and_the_fix(tmp_path: Path) -> None:
    path = tmp_path / "choice.json"
    path.write_text("{not json")
    with pytest.raises(InvalidInputError, match="not a readable choice record") as error:
        read_choice(path)
    assert str(path) in str(error.value) and "--report-only" in str(error.value)
    path = _record(tmp_path, tmp_path / "tile", "a_generator_never_weighed")
    with pytest.raises(InvalidInputError, match="'a_generator_never_weighed' is not among its candidates"):
        read_choice(path)


def test_only_a_pick_that_can_stand_in_a_verdict_recipe_is_usable() -> None:
    assert unusable_pick("diffusion_with_shots", "diffusion_no_inversion_with_shots") == ""
    assert unusable_pick("diffusion_with_shots", "diffusion_with_shots") == ""  # the default kept
    assert "is judged already" in unusable_pick("perlin", "real_paste")
    assert "is not a judged recipe" in unusable_pick("diffusion_no_inversion_with_shots", "diffusion_with_shots")

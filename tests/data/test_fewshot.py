from pathlib import Path

import pytest

from anomaly_synth_aug.data.fewshot import DefectRecord, cap_shots, few_shot_split, shot_count, split_records
from anomaly_synth_aug.errors import InvalidInputError, MaskError


def test_first_third_by_file_name_per_type(tiny_mvtec: Path) -> None:
    split = few_shot_split(tiny_mvtec)
    assert split.defect_types == ["blob", "scratch"]
    for defect in ("blob", "scratch"):
        shots = sorted(r.image_path.name for r in split.shots if r.defect_type == defect)
        assert shots == ["000.png", "001.png"]  # floor(6 / 3) = 2, first by name
    assert len(split.eval_anomalies) == 8
    assert len(split.eval_normals) == 4
    assert len(split.train_normals) == 12


def test_shots_never_in_evaluation(tiny_mvtec: Path) -> None:
    split = few_shot_split(tiny_mvtec, shot_fraction=0.5)
    evaluated = {r.image_path.resolve() for r in split.eval_anomalies} | {p.resolve() for p in split.eval_normals}
    assert split.shot_paths and not (split.shot_paths & evaluated)


def test_split_is_order_independent() -> None:
    records = [DefectRecord(Path(f"/x/{n}.png"), None, "a") for n in ("c", "a", "b", "e", "d", "f")]
    shots, rest = split_records(reversed(records), 1 / 3)
    assert [r.image_path.name for r in shots] == ["a.png", "b.png"]
    assert len(rest) == 4


@pytest.mark.parametrize(("total", "fraction", "expected"), [(100, 0.29, 29), (90, 0.7, 63), (180, 0.35, 63)])
def test_shot_count_is_not_lost_to_floating_point(total: int, fraction: float, expected: int) -> None:
    """``int(100 * 0.29)`` is 28: the product is 28.999999999999996 in floating point."""
    assert shot_count(total, fraction) == expected


def test_shot_count_bounds() -> None:
    assert shot_count(32, 1 / 3) == 10
    assert shot_count(2, 0.1) == 1  # at least one shot, at least one held out
    with pytest.raises(InvalidInputError, match="shot_fraction"):
        shot_count(10, 1.5)


def test_loaded_shots_are_binarised(tiny_mvtec: Path) -> None:
    shots = few_shot_split(tiny_mvtec).load_shots()
    assert len(shots) == 4
    for shot in shots:
        assert shot.mask.dtype.is_floating_point is False and shot.mask.any()
        assert shot.image.shape[0] == 3


def test_empty_mask_shot_skipped_or_error(tiny_mvtec: Path) -> None:
    from PIL import Image
    import numpy as np

    Image.fromarray(np.zeros((48, 64), np.uint8)).save(tiny_mvtec / "ground_truth" / "blob" / "000_mask.png")
    split = few_shot_split(tiny_mvtec)
    assert len(split.load_shots(on_empty_mask="skip")) == 3
    with pytest.raises(MaskError, match="000_mask.png.*empty"):
        split.load_shots(on_empty_mask="error")


def test_shots_whose_masks_are_all_empty_are_named_as_such(tiny_mvtec: Path, fake_generator) -> None:
    """Every shot skipped for its empty mask ended in 'fit() got no defect shots: pass the few real defect samples'."""
    from PIL import Image
    import numpy as np

    from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
    from anomaly_synth_aug.generators.real_paste import RealShotPasteGenerator
    from shared_fixtures import make_folder_datamodule

    for mask in (tiny_mvtec / "ground_truth").glob("*/*_mask.png"):
        Image.fromarray(np.zeros((48, 64), np.uint8)).save(mask)
    datamodule = SyntheticAnomalyDataModule(make_folder_datamodule(tiny_mvtec), generator=RealShotPasteGenerator())
    with pytest.raises(MaskError, match=r"ground_truth/\w+: every one of the 4 defect masks is empty.*mask_threshold"):
        datamodule.prepare_generator()


def test_missing_test_folder_is_named(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not an MVTec-layout category folder"):
        few_shot_split(tmp_path)


def test_a_type_with_every_image_a_shot_is_warned_about(caplog) -> None:
    """One image of a type became a shot, and the type silently had no test image at all."""
    from anomaly_synth_aug.data.fewshot import DefectRecord, split_records

    records = [DefectRecord(Path(f"/d/dent/{i}.png"), Path(f"/d/m/{i}.png"), "dent") for i in range(3)]
    records.append(DefectRecord(Path("/d/rare/0.png"), Path("/d/m/r0.png"), "rare"))
    with caplog.at_level("WARNING", logger="anomaly_synth_aug.data.fewshot"):
        shots, held_out = split_records(records)
    assert {r.defect_type for r in held_out} == {"dent"}
    warned = [r.message for r in caplog.records if "none is held out" in r.message]
    assert len(warned) == 1 and "'rare'" in warned[0]


def test_a_cap_keeps_the_first_shots_of_each_type_and_the_same_evaluation_set(tiny_mvtec: Path) -> None:
    full, capped = few_shot_split(tiny_mvtec, 0.5), few_shot_split(tiny_mvtec, 0.5, max_shots_per_type=1)
    assert sorted((r.defect_type, r.image_path.name) for r in capped.shots) == [
        ("blob", "000.png"),
        ("scratch", "000.png"),
    ]
    assert capped.eval_anomalies == full.eval_anomalies  # the capped-out shots are evaluated on no more than before
    assert few_shot_split(tiny_mvtec, 0.5, max_shots_per_type=99).shots == full.shots


def test_cap_shots_is_per_type_in_name_order_and_refuses_a_cap_below_one() -> None:
    records = [DefectRecord(Path(f"/x/{n}.png"), None, t) for t in ("b", "a") for n in ("3", "1", "2")]
    assert [(r.defect_type, r.image_path.name) for r in cap_shots(records, 2)] == [
        ("a", "1.png"),
        ("a", "2.png"),
        ("b", "1.png"),
        ("b", "2.png"),
    ]
    assert len(cap_shots(records, None)) == 6
    with pytest.raises(InvalidInputError, match="max_shots_per_type must be >= 1 or None, got 0"):
        cap_shots(records, 0)

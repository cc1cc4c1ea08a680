"""The by-seed table: per-seed pixel AP, means, and gains paired with the reference on common seeds only."""

from anomaly_synth_aug.evaluation.seed_table import by_seed_markdown


def _run(generator: str, seed: int, ap: float, auroc: float, *, detector: str = "segmenter_prior") -> dict:
    metrics = {"image_AUROC": auroc, "pixel_AUROC": 0.9, "pixel_AUPR": ap, "pixel_AUPRO": 0.8}
    return {"generator": generator, "detector": detector, "seed": seed, "metrics": metrics}


def _cells(table: str, label: str) -> list[str]:
    row = next(line for line in table.splitlines() if line.startswith(f"| {label} "))
    return [cell.strip() for cell in row.strip("|").split("|")]


def test_gains_are_paired_on_the_seeds_both_rows_have_and_list_each_difference() -> None:
    runs = [
        _run("shots_only", 0, 0.40, 0.90),
        _run("shots_only", 1, 0.30, 0.92),
        _run("shots_only", 2, 0.50, 0.94),
        _run("cutpaste_with_shots", 0, 0.55, 0.91),  # +0.15
        _run("cutpaste_with_shots", 2, 0.45, 0.90),  # -0.05; no seed 1
        _run("real_paste", 0, 0.20, 0.95, detector="padim_native"),
    ]
    table = by_seed_markdown(runs, "segmenter_prior", anchors=[("padim_native", "real_paste")])
    assert "pixel AP per seed (0 / 1 / 2)" in table.splitlines()[0]
    shots = _cells(table, "`shots_only`")
    assert shots[1] == "3" and shots[4] == "0.400 / 0.300 / 0.500" and shots[5] == "0.400"
    assert shots[7:] == ["", ""]  # the reference is not paired with itself
    cutpaste = _cells(table, "`cutpaste_with_shots`")
    assert cutpaste[1] == "2" and cutpaste[4] == "0.550 / – / 0.450" and cutpaste[5] == "0.500"
    assert cutpaste[7] == "+0.050 (+0.150, -0.050)"  # seed 1 has no cutpaste run: not paired
    assert cutpaste[8] == "-0.015"  # ((0.91 - 0.90) + (0.90 - 0.94)) / 2
    anchor = _cells(table, "`padim_native` (no defects)")
    assert anchor[4] == "0.200 / – / –" and anchor[7:] == ["", ""]


def test_rows_follow_the_given_order_and_a_detector_without_runs_gives_no_table() -> None:
    runs = [_run(name, 0, 0.5, 0.9) for name in ("perlin_with_shots", "shots_only", "diffusion_with_shots")]
    table = by_seed_markdown(runs, "segmenter_prior", generator_order=["shots_only", "diffusion_with_shots"])
    labels = [line.split("|")[1].strip() for line in table.splitlines()[2:]]
    assert labels == ["`shots_only`", "`diffusion_with_shots`", "`perlin_with_shots`"]
    assert by_seed_markdown(runs, "segmenter") == ""


def test_a_row_without_the_reference_on_any_seed_has_no_gain() -> None:
    runs = [_run("shots_only", 0, 0.4, 0.9), _run("perlin_with_shots", 1, 0.5, 0.9)]
    assert _cells(by_seed_markdown(runs, "segmenter_prior"), "`perlin_with_shots`")[7:] == ["", ""]

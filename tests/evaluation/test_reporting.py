"""Benchmark reporting: which recorded values reach the tables."""

from anomaly_synth_aug.evaluation.metrics import LABELS_AT_THRESHOLD
from anomaly_synth_aug.evaluation.reporting import ablation_markdown, detection_markdown, per_seed


def _run(generator: str, seed: int, auroc: float, f1: float | None, *, flagged: bool) -> dict:
    record = {
        "generator": generator,
        "detector": "padim",
        "seed": seed,
        "metrics": {"image_AUROC": auroc, "image_F1Score": f1},
    }
    if flagged:
        record[LABELS_AT_THRESHOLD] = True
    return record


def test_f1_of_runs_labelled_at_raw_score_half_is_left_out() -> None:
    runs = [
        _run("none", 0, 0.70, None, flagged=False),
        _run("perlin", 0, 0.71, 0.7346, flagged=False),  # recorded before RawScorePostProcessor
        _run("perlin", 1, 0.72, 0.6000, flagged=True),
    ]
    assert per_seed(runs, "padim", "perlin", "image_AUROC") == {0: 0.71, 1: 0.72}  # ranking metrics stay
    assert per_seed(runs, "padim", "perlin", "image_F1Score") == {1: 0.6}
    perlin_row = next(line for line in detection_markdown(runs).splitlines() if line.startswith("| perlin"))
    assert "0.600" in perlin_row and "0.735" not in perlin_row


def _ranked(generator: str, seed: int, auroc: float) -> dict:
    return {"generator": generator, "detector": "segmenter", "seed": seed, "metrics": {"image_AUROC": auroc}}


def test_ablation_table_pairs_each_ablation_with_its_full_generator_by_seed() -> None:
    runs = [
        _ranked("diffusion", 0, 0.70),
        _ranked("diffusion", 1, 0.80),
        _ranked("diffusion_no_filter", 0, 0.60),  # -0.10
        _ranked("diffusion_no_filter", 1, 0.75),  # -0.05
        _ranked("diffusion_no_filter", 2, 0.99),  # no seed-2 reference: not paired
        _ranked("diffusion_no_inversion", 5, 0.90),  # no reference at all: no row
    ]
    ablations = {
        "diffusion_no_filter": ("diffusion", "quality filter"),
        "diffusion_no_inversion": ("diffusion", "inversion"),
    }
    table = ablation_markdown(runs, ablations)
    row = next(line for line in table.splitlines() if line.startswith("| diffusion_no_filter"))
    cells = [cell.strip() for cell in row.strip("|").split("|")]
    assert cells[:4] == ["diffusion_no_filter", "quality filter", "diffusion", "2"]
    assert cells[4] == "-0.075 ± 0.035"  # mean and sample std of (-0.10, -0.05)
    assert "diffusion_no_inversion" not in table
    assert ablation_markdown([_ranked("perlin", 0, 0.7)], ablations) == ""


def test_per_type_table_averages_each_type_over_seeds() -> None:
    from anomaly_synth_aug.evaluation.reporting import per_type_markdown

    runs = [
        {"detector": "segmenter", "generator": "perlin", "seed": s, "image_AUROC_by_type": {"crack": c, "dent": 0.5}}
        for s, c in ((0, 0.8), (1, 0.6))
    ]
    runs.append({"detector": "segmenter", "generator": "none", "seed": 0})  # recorded before per-type scores
    table = per_type_markdown(runs, "segmenter", ["none", "perlin"])
    assert "| training defects | seeds | crack | dent |" in table
    assert "| perlin | 2 | 0.700 ± 0.141 | 0.500 ± 0.000 |" in table
    assert "none" not in table and per_type_markdown(runs, "padim") == ""


def _stored(generator: str, seed: int, auroc: float) -> dict:
    return {**_run(generator, seed, auroc, None, flagged=False), "preset": "full", "detector": "segmenter"}


def test_two_processes_sharing_a_results_file_keep_each_others_runs(tmp_path) -> None:
    """The learning curve and the main benchmark write one file: the later save dropped the other's run."""
    from anomaly_synth_aug.evaluation.reporting import ResultsStore

    path = tmp_path / "downstream_full.json"
    ResultsStore(path).add_run(_stored("perlin", 0, 0.7))
    first, second = ResultsStore(path), ResultsStore(path)  # both read the file now
    first.add_run(_stored("diffusion", 0, 0.8))
    first.add_run(_stored("perlin", 0, 0.75))  # a rerun replaces the old record
    second.add_run(_stored("real_paste", 0, 0.9))  # its stale perlin record must not come back
    runs = {(r["generator"], r["metrics"]["image_AUROC"]) for r in ResultsStore(path).runs}
    assert runs == {("perlin", 0.75), ("diffusion", 0.8), ("real_paste", 0.9)}
    assert {r["generator"] for r in second.runs} == {"perlin", "diffusion", "real_paste"}  # it sees them too


def test_contrast_table_puts_the_shots_beside_the_test_and_each_generator() -> None:
    from anomaly_synth_aug.evaluation.reporting import contrast_markdown

    def record(generator: str, generated: dict, shots: dict | None) -> dict:
        table = {"generated": generated, "real": {"crack": 0.2, "hole": 0.1}}
        if shots is not None:
            table["shots"] = shots
        return {"generator": generator, "seed": 0, "contrast_by_type": table}

    assert contrast_markdown([record("perlin", {"perlin": 0.3}, None)]) == ""  # older records: no table
    quality = [
        record("diffusion", {"crack": 0.11, "hole": 0.05}, {"crack": 0.1, "hole": 0.06}),
        record("perlin", {"perlin": 0.3}, {"crack": 0.1, "hole": 0.06}),  # no type in common: no row
    ]
    table = contrast_markdown(quality, ["diffusion", "perlin"]).splitlines()
    assert table[0] == "| defects | crack | hole |"
    assert table[2] == "| shots (what generators learn from) | 0.100 | 0.060 |"
    assert table[3] == "| held-out real (the test) | 0.200 | 0.100 |"
    assert table[4] == "| diffusion | 0.110 | 0.050 |" and len(table) == 5


def test_the_headline_charges_each_row_its_generators_fit_once_loaded() -> None:
    """A row that loaded its fit recorded 0 s of fitting: the cost column must still include the fit."""
    from anomaly_synth_aug.evaluation.reporting import headline_markdown

    def run(generator: str, fit_s: float) -> dict:
        record = _stored(generator, 0, 0.8)
        record["timings"] = {"generator_fit_s": fit_s, "train_s": 600.0, "test_s": 60.0}
        return record

    runs = [run("diffusion", 0.0), run("shots_only", 0.0)]
    table = headline_markdown(
        runs, [("segmenter", "diffusion", "diffusion"), ("segmenter", "shots_only", "shots")],
        fit_seconds={("diffusion", 0): 540.0},
    )  # fmt: skip
    assert table.splitlines()[0].endswith("| minutes: fit + train + test |")
    assert table.splitlines()[2].endswith("| 20 |") and table.splitlines()[3].endswith("| 11 |")
    # a run that fitted is charged its own fit, not a longer one another row made of the same source
    own = headline_markdown([run("diffusion", 60.0)], [("segmenter", "diffusion", "diffusion")],
                            fit_seconds={("diffusion", 0): 540.0})  # fmt: skip
    assert own.splitlines()[2].endswith("| 12 |")


def test_a_headline_delta_over_fewer_seeds_than_its_row_says_how_many_were_paired() -> None:
    """An anchor run on seed 0 only pairs one seed of a two-seed row: the Δ must not read as the row's mean."""
    from anomaly_synth_aug.evaluation.reporting import headline_markdown

    def run(detector: str, generator: str, seed: int, auroc: float) -> dict:
        return {"detector": detector, "generator": generator, "seed": seed, "metrics": {"image_AUROC": auroc}}

    runs = [run("padim", "none", 0, 0.90), run("seg", "shots", 0, 0.95), run("seg", "shots", 1, 0.85)]
    runs.append(run("seg", "perlin", 0, 0.80))
    table = headline_markdown(
        runs, [("padim", "none", "anchor"), ("seg", "shots", "shots"), ("seg", "perlin", "perlin")],
        anchors=[("padim", "none")],
    ).splitlines()  # fmt: skip
    assert "| +0.050 (1 of 2 seeds paired) |" in table[3]
    assert "| -0.100 |" in table[4] and "paired" not in table[4]


def test_prior_components_table_puts_each_part_beside_the_fused_score() -> None:
    from anomaly_synth_aug.evaluation.reporting import prior_components_markdown

    runs = [
        {
            "detector": "segmenter_prior",
            "generator": "shots_only",
            "seed": seed,
            "metrics": {"image_AUROC": fused},
            "prior_components": {"memory": {"image_AUROC": memory}, "segmenter": {"image_AUROC": 0.7}},
        }
        for seed, fused, memory in ((0, 0.8, 0.9), (1, 0.6, 0.9))
    ]
    runs.append({"detector": "segmenter_prior", "generator": "perlin", "seed": 0, "metrics": {"image_AUROC": 0.5}})
    runs.append({"detector": "segmenter", "generator": "perlin", "seed": 0, "prior_components": None})
    table = prior_components_markdown(runs, ["perlin", "shots_only"])
    header = "| detector | training defects | seeds | image AUROC: fused | image AUROC: memory | image AUROC: segmenter |"
    assert header in table
    assert "| segmenter_prior | shots_only | 2 | 0.700 ± 0.141 | 0.900 ± 0.000 | 0.700 ± 0.000 |" in table
    assert "perlin" not in table and prior_components_markdown(runs[2:]) == ""

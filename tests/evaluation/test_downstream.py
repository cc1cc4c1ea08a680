"""The downstream experiment's generator reuse: a stored fit serves later runs only if it was fitted the same way."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from shared_fixtures import FakeLearnedGenerator, TEST_METRICS, assert_ranking_metrics

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.evaluation.downstream import (
    ABLATIONS,
    WITH_SHOTS,
    GENERATORS,
    build_generator,
    fit_generator,
    pool_source,
    resolve_preset,
    synthetic_datamodule,
)
from anomaly_synth_aug.generators.fit_store import FitStore, training_fingerprint


class TwoKnobGenerator(FakeLearnedGenerator):
    """``side`` only changes sampling; ``capacity`` stands for a training setting."""

    sampling_options = frozenset({"side"})

    def __init__(self, side: int = 6, capacity: int = 1) -> None:
        super().__init__(side)
        self.capacity = capacity


def _fit(root: Path, generator: TwoKnobGenerator, store: Path) -> tuple[TwoKnobGenerator, bool]:
    datamodule = synthetic_datamodule(root, generator, resolve_preset("smoke"), seed=0, inject=True)
    _, loaded = fit_generator(datamodule, FitStore(store))
    return datamodule.generator, loaded


def test_saved_fit_is_reused_with_this_runs_sampling_options(tiny_mvtec: Path, tmp_path: Path) -> None:
    """A saved fit used to be loaded with its *old* config, silently ignoring the options asked for."""
    saved = tmp_path / "generator"
    first, loaded = _fit(tiny_mvtec, TwoKnobGenerator(side=6), saved)
    assert not loaded and first.fit_normals > 0
    again, loaded = _fit(tiny_mvtec, TwoKnobGenerator(side=3), saved)
    assert loaded and again.side == 3 and again.is_fitted


def test_saved_fit_with_other_training_settings_is_fitted_again(tiny_mvtec: Path, tmp_path: Path) -> None:
    saved = tmp_path / "generators"
    _fit(tiny_mvtec, TwoKnobGenerator(capacity=1), saved)
    refitted, loaded = _fit(tiny_mvtec, TwoKnobGenerator(capacity=2), saved)
    assert not loaded and refitted.capacity == 2
    assert len(list((saved / "tiny").iterdir())) == 2  # both fits kept, each under its own key


def test_sampling_ablations_share_the_diffusion_fit_and_training_ablations_do_not() -> None:
    """Every ablation switches one mechanism off; only a training switch may cost a second fit.

    An ablation next to the shots compares with its source next to the shots, and its own pool is an ablation's.
    Pasted shots have no sampling options: their one switch (context placement) is fitted.
    """
    for ablation, (compared_with, _) in ABLATIONS.items():
        assert ablation in GENERATORS
        if ablation in WITH_SHOTS:
            assert compared_with in WITH_SHOTS and WITH_SHOTS[ablation] in ABLATIONS
            assert ABLATIONS[WITH_SHOTS[ablation]][0] == WITH_SHOTS[compared_with]  # the same pair, alone
        else:
            assert compared_with in ("diffusion", "real_paste")
        base = build_generator(pool_source(compared_with), "smoke", "tile")
        ours = build_generator(pool_source(ablation), "smoke", "tile")
        assert type(ours) is type(base), ablation
        changed = {k for k, v in ours.get_config().items() if base.get_config().get(k) != v}
        assert len(changed) == 1, (ablation, changed)
        shares_fit = training_fingerprint(ours) == training_fingerprint(base)
        if compared_with.startswith("diffusion"):
            assert shares_fit == changed.isdisjoint({"background_disentangle", "window_scale"}), ablation
        else:
            assert not shares_fit, ablation  # pasted shots have no sampling options: their switch is fitted


@pytest.mark.parametrize("preset", ["full", "quick"])
def test_benchmarked_diffusion_generator_is_the_product_default(preset: str) -> None:
    """The benchmark's ``diffusion`` rows describe what users get: it differs from a default
    ``DiffusionAnomalyGenerator`` only in the preset's budget and in its progress bar.

    The benchmark used to pass ``mode="inversion"`` while the product defaulted to RePaint, which the
    ablation measured as worse on every seed.
    """
    from anomaly_synth_aug.generators.diffusion import DiffusionAnomalyGenerator

    benchmarked = build_generator("diffusion", preset, "tile").get_config()
    default = DiffusionAnomalyGenerator(category="tile").get_config()
    changed = {k for k, v in benchmarked.items() if default[k] != v}
    assert changed <= {*resolve_preset(preset).diffusion, "progress"}, changed
    assert default["mode"] == "inversion"


def test_cached_preset_trains_from_a_pool_kept_in_cache_dir(tiny_mvtec: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from anomaly_synth_aug.evaluation.downstream import PRESETS, run_experiment

    preset = replace(PRESETS["smoke"], name="smoke_cached", train_mode="cached", samples_per_type=2)
    cache = tmp_path / "cache"
    record = run_experiment(tiny_mvtec, "perlin", "segmenter", 0, preset, cache_dir=cache)
    assert record["metrics"]["image_AUROC"] is not None and record["timings"]["prepare_s"] > 0
    assert list(cache.rglob("manifest.jsonl")), "the pool was not written to cache_dir"
    with pytest.raises(InvalidInputError, match="cache_dir"):
        synthetic_datamodule(tiny_mvtec, build_generator("perlin", preset, "tiny"), preset, 0, inject=True)


def test_draem_runs_at_the_presets_width_on_generated_defects(tiny_mvtec: Path) -> None:
    from anomaly_synth_aug.evaluation.downstream import PRESETS, run_experiment

    record = run_experiment(tiny_mvtec, "perlin", "draem", 0, "smoke")
    assert PRESETS["smoke"].draem_width == 16 and record["detector_parameters"] < 2_000_000  # not 97 M
    assert set(record["metrics"]) == TEST_METRICS and record["thresholds"]["image"] is not None
    assert_ranking_metrics(record["metrics"])


def test_a_stored_preset_without_newer_fields_still_matches() -> None:
    from anomaly_synth_aug.evaluation.downstream import preset_record, same_preset

    stored = preset_record("quick")
    for newer in ("train_mode", "coreset_ratio", "shot_fraction"):  # at their defaults in the quick preset
        del stored[newer]
    assert same_preset(stored, "quick")
    assert not same_preset({**stored, "max_steps": 99}, "quick")
    assert not same_preset({**preset_record("full"), "train_mode": "online"}, "full")
    halves = dataclasses.replace(resolve_preset("full"), shot_fraction=0.5)  # shot validation's split
    assert not same_preset(preset_record("full"), halves)


def test_a_preset_records_a_cap_on_the_shots_and_refuses_one_below_1() -> None:
    from anomaly_synth_aug.evaluation.downstream import preset_record, same_preset

    capped = dataclasses.replace(resolve_preset("full"), max_shots_per_type=5)
    assert preset_record(capped)["max_shots_per_type"] == 5 and not same_preset(preset_record("full"), capped)
    stored = {k: v for k, v in preset_record("full").items() if k != "max_shots_per_type"}  # recorded before the cap
    assert same_preset(stored, "full")
    with pytest.raises(InvalidInputError, match="max_shots_per_type"):
        dataclasses.replace(resolve_preset("full"), max_shots_per_type=0)


def test_a_preset_refuses_a_shot_fraction_outside_0_1() -> None:
    with pytest.raises(InvalidInputError, match="shot_fraction"):
        dataclasses.replace(resolve_preset("full"), shot_fraction=1.0)


def test_supersimplenet_trains_from_the_cached_pool_as_in_the_full_preset(tiny_mvtec: Path) -> None:
    """The full preset's SuperSimpleNet path (pretrained backbone, 128 px crops, cached pool) on a tiny dataset."""
    import dataclasses

    from anomaly_synth_aug.evaluation.downstream import PRESETS, run_experiment

    preset = dataclasses.replace(PRESETS["smoke"], crop_size=128, train_mode="cached", samples_per_type=2)
    record = run_experiment(tiny_mvtec, "perlin", "supersimplenet", 0, preset)
    assert record["detector"] == "supersimplenet" and record["preset"] == "smoke"
    assert set(record["metrics"]) == TEST_METRICS
    assert_ranking_metrics(record["metrics"], ("image_AUROC", "pixel_AUPRO"))
    assert record["thresholds"]["image"] is not None and record["labels_at_validation_threshold"] is True


def test_a_cached_run_fits_through_the_store_and_the_next_run_loads(tiny_mvtec: Path, tmp_path: Path) -> None:
    """``setup`` used to fit the generator for the cached pool, so the store then met an already fitted one."""
    import dataclasses

    from anomaly_synth_aug.evaluation.downstream import PRESETS, run_experiment

    preset = dataclasses.replace(PRESETS["smoke"], train_mode="cached", samples_per_type=2)
    common = {"fit_store": tmp_path / "fits", "cache_dir": tmp_path / "pool"}
    first = run_experiment(tiny_mvtec, "real_paste", "segmenter", 0, preset, **common)
    second = run_experiment(tiny_mvtec, "real_paste", "segmenter", 0, preset, **common)
    assert not first["timings"]["generator_loaded"] and second["timings"]["generator_loaded"]


def test_a_with_shots_source_trains_on_its_sources_pool_plus_the_shots(tiny_mvtec: Path, tmp_path: Path) -> None:
    from dataclasses import replace

    from anomaly_synth_aug.data.shots_dataset import ShotMixedDataset
    from anomaly_synth_aug.evaluation.downstream import PRESETS, generates, pool_source, training_options

    assert pool_source("perlin_with_shots") == "perlin" and pool_source("perlin") == "perlin"
    preset = replace(PRESETS["smoke"], name="smoke_cached", train_mode="cached", samples_per_type=2)
    assert training_options("shots_only", preset) == {"train_mode": "shots"} and training_options("perlin", preset) == {}
    assert not generates("perlin_with_shots") and generates("perlin")  # its quality is its source's
    assert type(build_generator("diffusion_with_shots", preset, "tiny")) is type(
        build_generator("diffusion", preset, "tiny")
    )
    cache = tmp_path / "cache"

    def pool(name: str) -> object:
        datamodule = synthetic_datamodule(
            tiny_mvtec, build_generator(name, preset, "tiny"), preset, 0, inject=True, cache_dir=cache,
            **training_options(name, preset),
        )  # fmt: skip
        return datamodule.prepare_train_data()

    alone = pool("perlin")
    written = {path: path.stat().st_mtime_ns for path in cache.rglob("*.png")}
    mixed = pool("perlin_with_shots")
    expected = training_options("perlin_with_shots", preset)["shot_share"]
    assert isinstance(mixed, ShotMixedDataset) and mixed.shot_share == expected
    assert mixed.generated.entries == alone.entries  # the source's pool, read back
    assert {path: path.stat().st_mtime_ns for path in cache.rglob("*.png")} == written  # not regenerated


def test_a_shots_plus_source_keeps_the_shots_exposure_of_shots_only_and_adds_its_defects_on_top(
    tiny_mvtec: Path, tmp_path: Path
) -> None:
    """``shots_plus_real_paste``: the shots in as many items as ``shots_only``, the source's defects in half the rest."""
    from dataclasses import replace

    from anomaly_synth_aug.data.shots_dataset import ShotMixedDataset, ShotsTrainDataset
    from anomaly_synth_aug.evaluation.downstream import PRESETS, SHOTS_PLUS, generates, pool_source, training_options

    preset = replace(PRESETS["smoke"], name="smoke_cached", train_mode="cached", samples_per_type=2, anomaly_ratio=0.4)
    assert pool_source("shots_plus_real_paste") == "real_paste" and not generates("shots_plus_real_paste")
    assert set(SHOTS_PLUS.values()) == {"real_paste", "diffusion"}
    options = training_options("shots_plus_real_paste", preset)
    assert options["anomaly_ratio"] == pytest.approx(0.7) and options["shot_share"] == pytest.approx(0.4 / 0.7)

    def train_set(name: str) -> object:
        datamodule = synthetic_datamodule(
            tiny_mvtec, build_generator(name, preset, "tiny"), preset, 0, inject=True, cache_dir=tmp_path / "cache",
            **training_options(name, preset),
        )  # fmt: skip
        return datamodule.prepare_train_data()

    def shares(dataset: object, is_shot: object) -> tuple[float, float]:
        draws = []
        for epoch in range(400):
            dataset.set_epoch(epoch)
            draws += [(dataset.is_synthetic(i), is_shot(i)) for i in range(len(dataset))]
        return sum(shot for _, shot in draws) / len(draws), sum(d and not s for d, s in draws) / len(draws)

    shots_only = train_set("shots_only")
    plus = train_set("shots_plus_real_paste")
    assert isinstance(plus, ShotMixedDataset) and type(shots_only) is ShotsTrainDataset  # it generates nothing
    shot_share, generated_share = shares(plus, plus.is_shot)
    only_share, _ = shares(shots_only, shots_only.is_synthetic)
    assert shot_share == pytest.approx(only_share, abs=0.03) and only_share == pytest.approx(0.4, abs=0.03)
    assert generated_share == pytest.approx(0.3, abs=0.03)


def test_the_segmenter_with_the_normal_prior_thresholds_its_fused_map_on_validation(tiny_mvtec: Path) -> None:
    """``segmenter_prior`` through the benchmark's own path: built, calibrated on validation, thresholded, tested."""
    import dataclasses

    from anomaly_synth_aug.evaluation.downstream import PRESETS, run_experiment

    preset = dataclasses.replace(PRESETS["smoke"], crop_size=64)  # the memory's stride-32 stage needs room
    record = run_experiment(tiny_mvtec, "perlin", "segmenter_prior", 0, preset)
    assert record["detector"] == "segmenter_prior" and set(record["metrics"]) == TEST_METRICS
    assert record["detector_hparams"]["normal_prior"] is True and record["detector_hparams"]["memory_source"] == "normals"
    assert_ranking_metrics(record["metrics"])
    assert record["thresholds"]["image"] is not None and record["labels_at_validation_threshold"] is True
    parts = record["prior_components"]
    assert set(parts) == {"segmenter", "memory"}
    for part in parts.values():
        assert 0.0 <= part["image_AUROC"] <= 1.0
        assert set(part["image_AUROC_by_type"]) == set(record["image_AUROC_by_type"])
    # Every test image's score is kept: it reproduces the run's image AUROC, and the fused score is its parts' sum.
    import torch

    from anomaly_synth_aug.evaluation.metrics import image_auroc

    scores = record["test_image_scores"]
    assert len(scores["image"]) == record["data"]["test_anomalies"] + record["data"]["test_normals"]
    auroc = image_auroc(torch.tensor(scores["score"]), torch.tensor(scores["label"]).long())
    assert auroc == pytest.approx(record["metrics"]["image_AUROC"], abs=1e-4)
    summed = [a + b for a, b in zip(scores["score_segmenter"], scores["score_memory"], strict=True)]
    assert summed == pytest.approx(scores["score"], abs=1e-4)
    plain = run_experiment(tiny_mvtec, "perlin", "segmenter", 0, preset)
    assert plain["prior_components"] is None
    # the plain rows keep the memory their committed results were measured with
    assert plain["detector_hparams"]["memory_source"] == "training_crops" and plain["detector_hparams"]["memory_images"] == 128
    # The segmenter's own image score is the top-0.1 % mean of its map: the fraction record reproduces it.
    fractions = plain["image_AUROC_by_score_fraction"]
    assert fractions["test"]["0.001"] == pytest.approx(plain["metrics"]["image_AUROC"], abs=1e-6)
    assert isinstance(fractions["validation"], list)  # the tiny set's one validation image has no AUROC


def test_native_side_keeps_the_median_pixel_count(tmp_path: Path) -> None:
    from PIL import Image

    from anomaly_synth_aug.evaluation.downstream.datamodules import native_side

    root = tmp_path / "sizes"
    for folder in ("train/good", "test/good", "test/dent", "ground_truth/dent"):
        (root / folder).mkdir(parents=True)
    for index, (width, height) in enumerate([(200, 200), (400, 100), (600, 600)]):  # sqrt(h*w): 200, 200, 600
        Image.new("RGB", (width, height)).save(root / "train" / "good" / f"{index}.png")
    for name in ("test/good/0.png", "test/dent/0.png"):
        Image.new("RGB", (64, 64)).save(root / name)
    Image.new("L", (64, 64), 255).save(root / "ground_truth" / "dent" / "0_mask.png")
    assert native_side(root) == 192  # median 200, to a multiple of 32
    assert native_side(root, most=128) == 128


def test_a_native_anchor_is_built_at_the_categorys_side_and_records_it(tiny_mvtec: Path, monkeypatch) -> None:
    import dataclasses

    from anomaly_synth_aug.evaluation.downstream import PRESETS, run_experiment, runner
    from anomaly_synth_aug.evaluation.downstream.datamodules import native_side

    built: dict[str, tuple[int, int]] = {}
    real_spec = runner.detector_spec

    def recording_spec(name: str):
        spec = real_spec(name)

        def build(model_preset, generator):
            model = spec.build(model_preset, generator)
            built[name] = tuple(model.pre_processor.image_size)  # what the detector really sees
            return model

        return dataclasses.replace(spec, build=build)

    monkeypatch.setattr(runner, "detector_spec", recording_spec)
    preset = dataclasses.replace(PRESETS["smoke"], image_size=32)
    record = run_experiment(tiny_mvtec, "real_paste", "patchcore_native", 0, preset)
    assert native_side(tiny_mvtec) == 64  # 48 x 64 images, not the preset's 32
    assert built["patchcore_native"] == (64, 64) and record["detector_image_size"] == 64
    assert_ranking_metrics(record["metrics"], ("image_AUROC", "pixel_AUROC"))
    assert run_experiment(tiny_mvtec, "real_paste", "patchcore", 0, preset)["detector_image_size"] == 32
    assert built["patchcore"] == (32, 32)


def test_per_type_auroc_ranks_raw_scores_as_the_engines_metrics_do() -> None:
    """A one-class detector's scores run into the hundreds; they were squashed to ties by a sigmoid (all 0.5)."""
    from anomaly_synth_aug.evaluation.downstream.runner import PerTypeImageScores

    per_type = PerTypeImageScores()
    per_type.scores = [("good", 0, 90.0), ("good", 0, 95.0), ("crack", 1, 240.0), ("crack", 1, 93.0), ("dent", 1, 300.0)]
    assert per_type.per_type_auroc() == {"crack": pytest.approx(0.75), "dent": pytest.approx(1.0)}


def test_prior_components_score_each_part_of_the_fused_verdict_on_its_own() -> None:
    """The memory finds the dent, the segmenter the crack: each part's AUROC says so, the sum hides it."""
    from types import SimpleNamespace

    import torch

    from anomaly_synth_aug.evaluation.downstream.runner import PriorComponentScores

    collector = PriorComponentScores()
    prior = SimpleNamespace(last_components=None)
    module = SimpleNamespace(model=SimpleNamespace(prior=prior))
    outputs = SimpleNamespace(image_path=["t/good/a.png", "t/good/b.png"], gt_label=torch.tensor([0, 0]))
    collector.on_test_batch_end(None, module, outputs, None, 0)  # no fused score yet: nothing recorded
    assert collector.component_auroc() is None
    paths = ["t/good/a.png", "t/good/b.png", "t/crack/c.png", "t/dent/d.png"]
    prior.last_components = {
        "segmenter": torch.tensor([0.0, 1.0, 5.0, 0.5]),
        "memory": torch.tensor([1.0, 0.0, 0.5, 5.0]),
    }
    outputs = SimpleNamespace(image_path=paths, gt_label=torch.tensor([0, 0, 1, 1]))
    collector.on_test_batch_end(None, module, outputs, None, 0)
    parts = collector.component_auroc()
    assert parts["segmenter"]["image_AUROC_by_type"] == {"crack": pytest.approx(1.0), "dent": pytest.approx(0.5)}
    assert parts["memory"]["image_AUROC_by_type"] == {"crack": pytest.approx(0.5), "dent": pytest.approx(1.0)}
    assert parts["segmenter"]["image_AUROC"] == pytest.approx(0.75)


def test_a_run_record_carries_the_choices_its_fit_made_per_defect_type() -> None:
    """The README quoted "the guidance these fits chose" from fits that no committed file recorded."""
    from anomaly_synth_aug.evaluation.downstream.runner import fit_choices
    from anomaly_synth_aug.generators import MixtureGenerator, PerlinGenerator

    learned = FakeLearnedGenerator()
    learned.calibrated_guidance, learned.defect_strength = {"crack": 5.0}, {"crack": 0.6}
    learned.matched_guidance = {}  # nothing matched: left out, not recorded empty
    expected = {"calibrated_guidance": {"crack": 5.0}, "defect_strength": {"crack": 0.6}}
    assert fit_choices(learned) == expected
    assert fit_choices(MixtureGenerator([PerlinGenerator(), learned])) == expected  # the learned component's
    assert fit_choices(PerlinGenerator()) is None


def test_a_run_that_loads_its_fit_and_pool_is_the_run_that_made_them(tiny_mvtec: Path, tmp_path: Path) -> None:
    """Fitting drew from the global RNG and loading did not, so the detector's initialisation, batches and
    crops (and so its metrics) depended on whether the run made its generator and pool or reused them: a
    resumed benchmark did not reproduce its interrupted run, and seed-paired rows did not share that noise."""
    from anomaly_synth_aug.evaluation.downstream import run_experiment

    store, cache = tmp_path / "fits", tmp_path / "cache"
    made = run_experiment(tiny_mvtec, "diffusion", "segmenter", 0, "smoke", fit_store=store, cache_dir=cache)
    reused = run_experiment(tiny_mvtec, "diffusion", "segmenter", 0, "smoke", fit_store=store, cache_dir=cache)
    assert not made["timings"]["generator_loaded"] and reused["timings"]["generator_loaded"]
    assert reused["metrics"] == made["metrics"] and reused["thresholds"] == made["thresholds"]
    assert reused["rng_reseeded_after_fit"]  # tells these rows from older ones


def test_the_best_step_is_read_from_a_checkpoint_name_lightning_versioned() -> None:
    """A second run into the same work folder gets ``best-step600-v1.ckpt``: the last number read 1."""
    from anomaly_synth_aug.evaluation.downstream.runner import checkpoint_step

    assert checkpoint_step("work/checkpoints/best-step600-v1.ckpt") == 600
    assert checkpoint_step(Path("best-step200.ckpt")) == 200
    with pytest.raises(ValueError, match="not a best-step"):
        checkpoint_step("last.ckpt")


def test_the_benchmark_keeps_its_recorded_shot_augmentation(tiny_mvtec: Path) -> None:
    """Committed rows gave every shot quarter turns; the product's shape-keeping default must not change them."""
    from anomaly_synth_aug.data.transforms import RandomRot90

    datamodule = synthetic_datamodule(tiny_mvtec, TwoKnobGenerator(), resolve_preset("smoke"), seed=0, inject=True)
    turns = [step for step in datamodule.shot_transform.transforms if isinstance(step, RandomRot90)]
    assert len(turns) == 1 and not turns[0].keep_shape

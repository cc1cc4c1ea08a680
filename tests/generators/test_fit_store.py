"""``FitStore``: one fit per generator configuration and data contents, reused by every caller."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import ClassVar

import pytest
import torch
from PIL import Image
from shared_fixtures import CountingLearnedGenerator, FakeSquareGenerator, make_folder_datamodule

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
from anomaly_synth_aug.errors import CheckpointMismatchError, CorruptFileError, InvalidInputError
from anomaly_synth_aug.generators.base import AnomalyGenerator
from anomaly_synth_aug.generators.fit_store import FIT_FILE, FitKey, FitStore, read_fit_record
from anomaly_synth_aug.generators.mixture import MixtureGenerator


class SamplingSideGenerator(CountingLearnedGenerator):
    """``side`` only changes how samples are drawn: a changed side must not force a refit."""

    sampling_options = frozenset({"side"})


class SamplingLeaksIntoFit(CountingLearnedGenerator):
    """Its fit draws with its sampling option ``side``, as the diffusion generator's guidance calibration does."""

    sampling_options = frozenset({"side", "progress"})

    def __init__(self, side: int = 6, progress: bool = True) -> None:
        super().__init__(side)
        self.progress = progress
        self.fitted_with: tuple[int, bool] | None = None

    def _fit(self, normal_images, shots, generator) -> None:
        super()._fit(normal_images, shots, generator)
        self.brightness = self.brightness * self.side
        self.fitted_with = (self.side, self.progress)


class ResumableGenerator(CountingLearnedGenerator):
    """Fails its first fit after writing progress to ``checkpoint_dir``; the next fit finds that progress."""

    resumed_from: ClassVar[list[object]] = []

    def __init__(self, side: int = 6, checkpoint_dir: str | Path | None = None) -> None:
        super().__init__(side)
        self.checkpoint_dir = checkpoint_dir

    def _fit(self, normal_images, shots, generator) -> None:
        progress = Path(self.checkpoint_dir) / "progress" if self.checkpoint_dir else None
        type(self).resumed_from.append(progress.read_text() if progress and progress.is_file() else None)
        if progress is not None and not progress.is_file():
            progress.parent.mkdir(parents=True)
            progress.write_text("step 3")
            raise KeyboardInterrupt
        super()._fit(normal_images, shots, generator)


@pytest.fixture(autouse=True)
def _reset_counters() -> None:
    CountingLearnedGenerator.fit_calls = 0
    SamplingSideGenerator.fit_calls = 0


def fit_data(root: Path, generator: AnomalyGenerator, seed: int = 0):
    return SyntheticAnomalyDataModule(make_folder_datamodule(root), generator=generator, seed=seed).fit_data()


def test_fits_once_then_loads_in_place(tmp_path: Path, tiny_mvtec: Path) -> None:
    store = FitStore(tmp_path / "fits")
    first = CountingLearnedGenerator()
    assert store.fit_or_load(first, fit_data(tiny_mvtec, first)) == "fitted"
    second = CountingLearnedGenerator()
    assert store.fit_or_load(second, fit_data(tiny_mvtec, second)) == "loaded"
    assert CountingLearnedGenerator.fit_calls == 1
    assert second.is_fitted and torch.equal(second.brightness, first.brightness)  # the same object, now fitted
    folder = store.folder_for(second, fit_data(tiny_mvtec, second))
    assert folder.parent == tmp_path / "fits" / "tiny" and folder.name.startswith("CountingLearnedGenerator-")
    record = json.loads((folder / FIT_FILE).read_text())
    assert record["category"] == "tiny" and record["normals"] > 0 and record["shots"] > 0
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # no staging leftovers


def test_sampling_options_share_a_fit_training_settings_do_not(tmp_path: Path, tiny_mvtec: Path) -> None:
    store = FitStore(tmp_path / "fits")
    store.fit_or_load(SamplingSideGenerator(side=6), fit_data(tiny_mvtec, SamplingSideGenerator()))
    variant = SamplingSideGenerator(side=4)
    assert store.fit_or_load(variant, fit_data(tiny_mvtec, variant)) == "loaded"
    assert variant.side == 4 and SamplingSideGenerator.fit_calls == 1  # its own sampling option, the shared fit
    other = CountingLearnedGenerator(side=4)  # side shapes CountingLearnedGenerator's fit
    assert store.fit_or_load(other, fit_data(tiny_mvtec, other)) == "fitted"
    fresh = CountingLearnedGenerator(side=4)
    assert store.fit_or_load(fresh, fit_data(tiny_mvtec, fresh, seed=1)) == "fitted"  # another seed, another fit


def test_the_stored_fit_does_not_depend_on_the_sampling_options_of_the_first_caller(
    tmp_path: Path, tiny_mvtec: Path
) -> None:
    """A variant that fits first must store the same fit the default would have: later variants load it as theirs.

    The diffusion ablations share one fit, and its guidance calibration used to be drawn with the sampling
    options (context placement, sampling mode) of whichever variant ran first.
    """
    default = SamplingLeaksIntoFit()
    FitStore(tmp_path / "a").fit_or_load(default, fit_data(tiny_mvtec, default))
    variant = SamplingLeaksIntoFit(side=4, progress=False)
    assert FitStore(tmp_path / "b").fit_or_load(variant, fit_data(tiny_mvtec, variant)) == "fitted"
    assert torch.equal(variant.brightness, default.brightness)  # fitted as the default would be
    assert variant.side == 4 and not variant.progress  # and it keeps its own sampling options
    assert variant.fitted_with is None  # the fit ran on a copy with side at its default, progress as given
    folder = FitStore(tmp_path / "b").folder_for(variant, fit_data(tiny_mvtec, variant))
    assert AnomalyGenerator.load(folder).side == 4  # the stored folder records the caller's options
    later = SamplingLeaksIntoFit()
    assert FitStore(tmp_path / "b").fit_or_load(later, fit_data(tiny_mvtec, later)) == "loaded"
    assert torch.equal(later.brightness, default.brightness)


def test_an_interrupted_fit_resumes_from_its_partial_folder(tmp_path: Path, tiny_mvtec: Path) -> None:
    ResumableGenerator.resumed_from = []
    store = FitStore(tmp_path / "fits")
    first = ResumableGenerator()
    with pytest.raises(KeyboardInterrupt):
        store.fit_or_load(first, fit_data(tiny_mvtec, first))
    assert first.checkpoint_dir is None  # the store's checkpoint folder is not left on the generator
    again = ResumableGenerator()
    assert store.fit_or_load(again, fit_data(tiny_mvtec, again)) == "fitted"
    assert ResumableGenerator.resumed_from == [None, "step 3"]
    folder = store.folder_for(again, fit_data(tiny_mvtec, again))
    assert json.loads((folder / "generator.json").read_text())["config"]["checkpoint_dir"] is None
    assert [p.name for p in folder.parent.iterdir()] == [folder.name]  # the partial folder is gone
    assert store.fit_or_load(ResumableGenerator(), fit_data(tiny_mvtec, again)) == "loaded"
    own = ResumableGenerator(checkpoint_dir=tmp_path / "mine")  # a caller's own checkpoint_dir is respected
    with pytest.raises(KeyboardInterrupt):
        FitStore(tmp_path / "other").fit_or_load(own, fit_data(tiny_mvtec, own))
    assert (tmp_path / "mine" / "progress").is_file()


def test_the_key_is_the_files_contents_not_their_place(tmp_path: Path, tiny_mvtec: Path) -> None:
    store = FitStore(tmp_path / "fits")
    store.fit_or_load(CountingLearnedGenerator(), fit_data(tiny_mvtec, CountingLearnedGenerator()))
    moved = shutil.copytree(tiny_mvtec, tmp_path / "elsewhere" / "tiny")
    assert store.fit_or_load(CountingLearnedGenerator(), fit_data(moved, CountingLearnedGenerator())) == "loaded"
    mask_path = moved / "ground_truth" / "blob" / "000_mask.png"  # the first blob is a shot
    mask = Image.open(mask_path)
    mask.putpixel((0, 0), 255)
    mask.save(mask_path)
    assert store.fit_or_load(CountingLearnedGenerator(), fit_data(moved, CountingLearnedGenerator())) == "fitted"


def test_a_mixture_reuses_the_fit_of_its_learned_component(tmp_path: Path, tiny_mvtec: Path) -> None:
    store = FitStore(tmp_path / "fits")
    alone = CountingLearnedGenerator()
    store.fit_or_load(alone, fit_data(tiny_mvtec, alone))
    mixture = MixtureGenerator([CountingLearnedGenerator(), FakeSquareGenerator()])
    assert store.fit_or_load(mixture, fit_data(tiny_mvtec, mixture)) == "loaded"
    assert CountingLearnedGenerator.fit_calls == 1 and mixture.is_fitted
    assert torch.equal(mixture.components[0].brightness, alone.brightness)


def test_a_mixture_nested_in_a_mixture_fits_its_learned_leaf_by_the_leaf_s_own_key(
    tmp_path: Path, tiny_mvtec: Path
) -> None:
    """The inner mixture used to be fitted as one whole: under its own key, with its leaf's sampling options."""
    store = FitStore(tmp_path / "fits")
    default = SamplingLeaksIntoFit()
    store.fit_or_load(default, fit_data(tiny_mvtec, default))
    inner = MixtureGenerator([SamplingLeaksIntoFit(side=4), FakeSquareGenerator()], weights=[1.0, 3.0])
    nested = MixtureGenerator([inner, FakeSquareGenerator()])
    assert store.fit_or_load(nested, fit_data(tiny_mvtec, nested)) == "loaded"
    leaf = nested.components[0].components[0]
    assert nested.is_fitted and leaf.side == 4 and nested.components[0].weights == [1.0, 3.0]
    assert torch.equal(leaf.brightness, default.brightness)
    assert [p.name.split("-")[0] for p in (tmp_path / "fits" / "tiny").iterdir()] == ["SamplingLeaksIntoFit"]


def test_keep_stores_generators_that_learn_nothing(tmp_path: Path, tiny_mvtec: Path) -> None:
    store = FitStore(tmp_path / "fits")
    classic = FakeSquareGenerator(side=3)
    assert store.fit_or_load(classic, fit_data(tiny_mvtec, classic)) == "not_needed"
    assert not (tmp_path / "fits").exists()
    assert store.fit_or_load(classic, fit_data(tiny_mvtec, classic), keep=True) == "not_needed"
    loaded = AnomalyGenerator.load(store.folder_for(classic, fit_data(tiny_mvtec, classic)))
    assert isinstance(loaded, FakeSquareGenerator) and loaded.side == 3


def test_keep_saves_the_sampling_options_of_the_latest_run(tmp_path: Path, tiny_mvtec: Path) -> None:
    """The key leaves sampling options out, and a kept folder was never saved again: a second run with other
    mixture weights printed the folder that still held the first run's weights."""
    store = FitStore(tmp_path / "fits")
    for weights in ([1.0, 0.0], [0.0, 1.0]):
        mixture = MixtureGenerator([FakeSquareGenerator(side=3), FakeSquareGenerator(side=5)], weights=weights)
        store.fit_or_load(mixture, fit_data(tiny_mvtec, mixture), keep=True)
        kept = AnomalyGenerator.load(store.folder_for(mixture, fit_data(tiny_mvtec, mixture)))
        assert kept.weights == weights


def test_keep_saves_a_loaded_learned_generators_sampling_options(tmp_path: Path, tiny_mvtec: Path) -> None:
    """A learned generator returned before the kept folder was saved again: ``fit-generator`` with another
    sampling mode printed a folder that still held the first run's options."""
    store = FitStore(tmp_path / "fits")
    for side in (6, 4):
        generator = SamplingSideGenerator(side=side)
        expected = "fitted" if side == 6 else "loaded"
        assert store.fit_or_load(generator, fit_data(tiny_mvtec, generator), keep=True) == expected
        folder = store.folder_for(generator, fit_data(tiny_mvtec, generator))
        kept = AnomalyGenerator.load(folder)
        assert kept.side == side and torch.equal(kept.brightness, generator.brightness)
        assert "fit_seconds" in read_fit_record(folder)  # saved again with the fit's statistics


def test_an_interrupted_save_keeps_the_previous_fit(tmp_path: Path, tiny_mvtec: Path) -> None:
    store = FitStore(tmp_path / "fits")
    data = fit_data(tiny_mvtec, CountingLearnedGenerator())
    store.fit_or_load(CountingLearnedGenerator(), data)
    key = FitKey.of(CountingLearnedGenerator(), data)
    before = (store.folder(key) / FIT_FILE).read_text()

    class BrokenDisk(CountingLearnedGenerator):
        def _save_state(self, directory: Path) -> None:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        FitStore._save(BrokenDisk(), key, store.folder(key))
    assert (store.folder(key) / FIT_FILE).read_text() == before
    assert [p.name for p in store.folder(key).parent.iterdir()] == [store.folder(key).name]


def test_damaged_records_and_state_are_named_not_loaded(tmp_path: Path, tiny_mvtec: Path) -> None:
    store = FitStore(tmp_path / "fits")
    data = fit_data(tiny_mvtec, CountingLearnedGenerator())
    store.fit_or_load(CountingLearnedGenerator(), data)
    folder = store.folder_for(CountingLearnedGenerator(), data)
    record = (folder / FIT_FILE).read_text()
    (folder / FIT_FILE).write_text("{not json")
    with pytest.raises(CheckpointMismatchError, match="unreadable fit record.*delete this folder"):
        store.fit_or_load(CountingLearnedGenerator(), data)
    (folder / FIT_FILE).write_text(json.dumps({**json.loads(record), "data_fingerprint": "other"}))
    with pytest.raises(CheckpointMismatchError, match="another fit"):
        store.fit_or_load(CountingLearnedGenerator(), data)
    (folder / FIT_FILE).write_text(record)
    meta = json.loads((folder / "generator.json").read_text())
    (folder / "generator.json").write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(CheckpointMismatchError, match="format version 99"):  # never reported as "loaded"
        store.fit_or_load(CountingLearnedGenerator(), data)
    (folder / "generator.json").write_text(json.dumps(meta))
    (folder / "state.safetensors").write_bytes(b"tampered")
    with pytest.raises(CorruptFileError, match="checksum differs"):
        store.fit_or_load(CountingLearnedGenerator(), data)


def test_a_generator_fitted_elsewhere_is_refused(tmp_path: Path, tiny_mvtec: Path) -> None:
    datamodule = SyntheticAnomalyDataModule(make_folder_datamodule(tiny_mvtec), generator=CountingLearnedGenerator())
    datamodule.prepare_generator()  # fitted outside the store: the store cannot tell on what
    with pytest.raises(InvalidInputError, match="already fitted"):
        FitStore(tmp_path / "fits").fit_or_load(datamodule.generator, datamodule.fit_data())


def test_load_state_checks_class_and_training_settings(tmp_path: Path, tiny_mvtec: Path) -> None:
    store = FitStore(tmp_path / "fits")
    data = fit_data(tiny_mvtec, CountingLearnedGenerator())
    store.fit_or_load(CountingLearnedGenerator(side=6), data)
    folder = store.folder_for(CountingLearnedGenerator(side=6), data)
    with pytest.raises(InvalidInputError, match=r"other settings: \['side'\]"):
        CountingLearnedGenerator(side=4).load_state(folder)
    with pytest.raises(InvalidInputError, match="holds a CountingLearnedGenerator"):
        FakeSquareGenerator().load_state(folder)


def test_a_fit_made_by_an_older_fit_version_is_not_reused(tmp_path: Path, tiny_mvtec: Path, monkeypatch) -> None:
    """The key holds ``fit_version``: code that learns differently must not load fits of the old code."""
    store = FitStore(tmp_path / "fits")
    store.fit_or_load(CountingLearnedGenerator(), fit_data(tiny_mvtec, CountingLearnedGenerator()))
    monkeypatch.setattr(CountingLearnedGenerator, "fit_version", 2)
    assert store.fit_or_load(CountingLearnedGenerator(), fit_data(tiny_mvtec, CountingLearnedGenerator())) == "fitted"

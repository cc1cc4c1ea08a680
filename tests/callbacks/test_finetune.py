"""GeneratorFineTuneCallback: fit once per category, reuse on the same data, refuse or retrain on a mismatch."""

from __future__ import annotations

import json
import logging
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch
from callback_helpers import CountingLearnedGenerator, TinyModule, synthetic_datamodule, tiny_trainer
from shared_fixtures import FakeSquareGenerator, make_mvtec_layout
from PIL import Image

from anomaly_synth_aug.callbacks.finetune import (
    CHECKPOINT_META_FILE,
    GeneratorFineTuneCallback,
    checkpoint_key,
    read_checkpoint_key,
    save_checkpoint,
)
from anomaly_synth_aug.errors import CheckpointMismatchError, InvalidInputError
from anomaly_synth_aug.generators.base import CONFIG_FILE


@pytest.fixture(autouse=True)
def _reset_fit_counter() -> None:
    CountingLearnedGenerator.fit_calls = 0


@pytest.fixture
def two_categories(tmp_path: Path) -> list[Path]:
    return [
        make_mvtec_layout(tmp_path / "data" / "cat_a", n_train=6, seed=0),
        make_mvtec_layout(tmp_path / "data" / "cat_b", n_train=6, seed=1),
    ]


def test_each_category_is_fitted_once_then_loaded_on_the_next_run(tmp_path: Path, two_categories: list[Path]) -> None:
    checkpoints = tmp_path / "generators"
    callback = GeneratorFineTuneCallback(checkpoints)
    trained: dict[str, torch.Tensor] = {}
    for root in two_categories:
        datamodule = synthetic_datamodule(root, CountingLearnedGenerator())
        tiny_trainer(tmp_path, [callback]).fit(TinyModule(), datamodule=datamodule)
        trained[root.name] = datamodule.generator.brightness.clone()
    assert CountingLearnedGenerator.fit_calls == 2
    assert callback.actions == {"cat_a": "trained", "cat_b": "trained"}
    assert sorted(p.name for p in checkpoints.iterdir()) == ["cat_a", "cat_b"]  # no staging leftovers
    for category in ("cat_a", "cat_b"):
        assert (checkpoints / category / CONFIG_FILE).is_file()
        assert json.loads((checkpoints / category / CHECKPOINT_META_FILE).read_text())["category"] == category

    second_run = GeneratorFineTuneCallback(checkpoints)
    for root in two_categories:
        datamodule = synthetic_datamodule(root, CountingLearnedGenerator())
        tiny_trainer(tmp_path, [second_run]).fit(TinyModule(), datamodule=datamodule)
        assert datamodule.generator.is_fitted
        assert torch.equal(datamodule.generator.brightness, trained[root.name])
    assert CountingLearnedGenerator.fit_calls == 2  # loaded, not fitted again
    assert second_run.actions == {"cat_a": "loaded", "cat_b": "loaded"}


def test_other_config_is_an_error_by_default(tmp_path: Path, tiny_mvtec: Path) -> None:
    GeneratorFineTuneCallback(tmp_path / "ckpt").prepare(synthetic_datamodule(tiny_mvtec, CountingLearnedGenerator(side=6)))
    with pytest.raises(CheckpointMismatchError, match="configuration differs.*on_mismatch='retrain'"):
        GeneratorFineTuneCallback(tmp_path / "ckpt").prepare(
            synthetic_datamodule(tiny_mvtec, CountingLearnedGenerator(side=4))
        )
    assert CountingLearnedGenerator.fit_calls == 1


class SamplingSideGenerator(CountingLearnedGenerator):
    """``side`` only changes how samples are drawn, so a changed side must not force a refit."""

    sampling_options = frozenset({"side"})


def test_changed_sampling_option_reuses_the_checkpoint_with_the_new_option(tmp_path: Path, tiny_mvtec: Path) -> None:
    SamplingSideGenerator.fit_calls = 0
    GeneratorFineTuneCallback(tmp_path / "ckpt").prepare(synthetic_datamodule(tiny_mvtec, SamplingSideGenerator(side=6)))
    datamodule = synthetic_datamodule(tiny_mvtec, SamplingSideGenerator(side=4))
    assert GeneratorFineTuneCallback(tmp_path / "ckpt").prepare(datamodule) == "loaded"
    assert SamplingSideGenerator.fit_calls == 1
    assert datamodule.generator.side == 4 and datamodule.generator.is_fitted


def test_retrain_replaces_a_mismatching_checkpoint_and_logs_why(
    tmp_path: Path, tiny_mvtec: Path, caplog: pytest.LogCaptureFixture
) -> None:
    GeneratorFineTuneCallback(tmp_path / "ckpt").prepare(synthetic_datamodule(tiny_mvtec, CountingLearnedGenerator(side=6)))
    datamodule = synthetic_datamodule(tiny_mvtec, CountingLearnedGenerator(side=4))
    with caplog.at_level(logging.WARNING):
        action = GeneratorFineTuneCallback(tmp_path / "ckpt", on_mismatch="retrain").prepare(datamodule)
    assert action == "trained"
    assert CountingLearnedGenerator.fit_calls == 2
    assert "configuration differs" in caplog.text
    assert read_checkpoint_key(tmp_path / "ckpt" / "tiny") == checkpoint_key(datamodule)


def test_checkpoint_of_another_category_is_refused(tmp_path: Path, two_categories: list[Path]) -> None:
    checkpoints = tmp_path / "ckpt"
    GeneratorFineTuneCallback(checkpoints).prepare(synthetic_datamodule(two_categories[0], CountingLearnedGenerator()))
    shutil.copytree(checkpoints / "cat_a", checkpoints / "cat_b")  # e.g. a folder copied by hand
    with pytest.raises(CheckpointMismatchError, match="category 'cat_a', this run is 'cat_b'"):
        GeneratorFineTuneCallback(checkpoints).prepare(synthetic_datamodule(two_categories[1], CountingLearnedGenerator()))


def test_changed_shot_mask_invalidates_the_checkpoint(tmp_path: Path, tiny_mvtec: Path) -> None:
    GeneratorFineTuneCallback(tmp_path / "ckpt").prepare(synthetic_datamodule(tiny_mvtec, CountingLearnedGenerator()))
    mask_path = tiny_mvtec / "ground_truth" / "blob" / "000_mask.png"  # the first blob is a shot
    mask = np.array(Image.open(mask_path))
    mask[:2, :2] = 255
    Image.fromarray(mask).save(mask_path)
    with pytest.raises(CheckpointMismatchError, match="training data differs"):
        GeneratorFineTuneCallback(tmp_path / "ckpt").prepare(synthetic_datamodule(tiny_mvtec, CountingLearnedGenerator()))


def test_classic_generator_needs_no_checkpoint(tmp_path: Path, tiny_mvtec: Path) -> None:
    callback = GeneratorFineTuneCallback(tmp_path / "ckpt")
    assert callback.prepare(synthetic_datamodule(tiny_mvtec, FakeSquareGenerator())) == "not_needed"
    assert not (tmp_path / "ckpt").exists()


def test_generator_fitted_elsewhere_is_refused(tmp_path: Path, tiny_mvtec: Path) -> None:
    datamodule = synthetic_datamodule(tiny_mvtec, CountingLearnedGenerator())
    datamodule.prepare_generator()  # fitted outside the callback: its data is unknown to it
    with pytest.raises(InvalidInputError, match="already fitted"):
        GeneratorFineTuneCallback(tmp_path / "ckpt").prepare(datamodule)


def test_interrupted_save_keeps_the_previous_checkpoint(tmp_path: Path, tiny_mvtec: Path) -> None:
    datamodule = synthetic_datamodule(tiny_mvtec, CountingLearnedGenerator())
    GeneratorFineTuneCallback(tmp_path / "ckpt").prepare(datamodule)
    before = (tmp_path / "ckpt" / "tiny" / CHECKPOINT_META_FILE).read_text()

    class BrokenDisk(CountingLearnedGenerator):
        def _save_state(self, directory: Path) -> None:
            raise OSError("disk full")

    with pytest.raises(OSError, match="disk full"):
        save_checkpoint(BrokenDisk(), checkpoint_key(datamodule), tmp_path / "ckpt" / "tiny")
    assert (tmp_path / "ckpt" / "tiny" / CHECKPOINT_META_FILE).read_text() == before
    assert [p.name for p in (tmp_path / "ckpt").iterdir()] == ["tiny"]


def test_needs_the_synthetic_datamodule(tmp_path: Path) -> None:
    trainer = SimpleNamespace(datamodule=object())
    with pytest.raises(InvalidInputError, match="SyntheticAnomalyDataModule"):
        GeneratorFineTuneCallback(tmp_path).on_fit_start(trainer, TinyModule())


def test_rejects_unknown_mismatch_policy(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="on_mismatch"):
        GeneratorFineTuneCallback(tmp_path, on_mismatch="ignore")


def test_a_checkpoint_of_a_newer_format_or_tampered_state_is_not_reported_as_loaded(tmp_path: Path) -> None:
    """``fit-generator`` over such a folder used to say "loaded": restore_into skipped the checks load() makes."""
    from anomaly_synth_aug.callbacks.finetune import restore_into
    from anomaly_synth_aug.data.sample import AnomalySample
    from anomaly_synth_aug.errors import CheckpointMismatchError, CorruptFileError
    from anomaly_synth_aug.generators.base import CONFIG_FILE

    mask = torch.zeros(8, 8, dtype=torch.bool)
    mask[2:5, 2:5] = True
    shot = AnomalySample(image=torch.rand(3, 8, 8), mask=mask, label=1, defect_type="square")
    folder = CountingLearnedGenerator().fit([torch.rand(3, 8, 8)], [shot]).save(tmp_path / "gen")
    restore_into(CountingLearnedGenerator(), folder)
    meta = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**meta, "format_version": 99}))
    with pytest.raises(CheckpointMismatchError, match="format version 99"):
        restore_into(CountingLearnedGenerator(), folder)
    (folder / CONFIG_FILE).write_text(json.dumps(meta))
    state_file = next(name for name in meta["checksums"])
    (folder / state_file).write_bytes(b"tampered")
    with pytest.raises(CorruptFileError, match="checksum differs"):
        restore_into(CountingLearnedGenerator(), folder)

"""GeneratorFineTuneCallback: the Lightning face of FitStore (fit once per category, config and data; reuse)."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from callback_helpers import CountingLearnedGenerator, TinyModule, synthetic_datamodule, tiny_trainer
from shared_fixtures import FakeSquareGenerator, make_mvtec_layout

from anomaly_synth_aug.callbacks.finetune import GeneratorFineTuneCallback
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators.base import CONFIG_FILE
from anomaly_synth_aug.generators.fit_store import FIT_FILE, FitStore


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
        folder = callback.fit_folder(datamodule)
        assert (folder / CONFIG_FILE).is_file()
        assert json.loads((folder / FIT_FILE).read_text())["category"] == root.name
    assert CountingLearnedGenerator.fit_calls == 2
    assert callback.actions == {"cat_a": "fitted", "cat_b": "fitted"}
    assert sorted(p.name for p in checkpoints.iterdir()) == ["cat_a", "cat_b"]

    second_run = GeneratorFineTuneCallback(checkpoints)
    for root in two_categories:
        datamodule = synthetic_datamodule(root, CountingLearnedGenerator())
        tiny_trainer(tmp_path, [second_run]).fit(TinyModule(), datamodule=datamodule)
        assert datamodule.generator.is_fitted
        assert torch.equal(datamodule.generator.brightness, trained[root.name])
    assert CountingLearnedGenerator.fit_calls == 2  # loaded, not fitted again
    assert second_run.actions == {"cat_a": "loaded", "cat_b": "loaded"}


def test_another_configuration_gets_its_own_fit_beside_the_first(tmp_path: Path, tiny_mvtec: Path) -> None:
    callback = GeneratorFineTuneCallback(tmp_path / "ckpt")
    first, second = (synthetic_datamodule(tiny_mvtec, CountingLearnedGenerator(side=s)) for s in (6, 4))
    assert callback.prepare(first) == "fitted" and callback.prepare(second) == "fitted"
    assert callback.fit_folder(first) != callback.fit_folder(second)
    again = synthetic_datamodule(tiny_mvtec, CountingLearnedGenerator(side=6))
    assert callback.prepare(again) == "loaded" and CountingLearnedGenerator.fit_calls == 2


def test_the_callback_and_the_store_share_fits(tmp_path: Path, tiny_mvtec: Path) -> None:
    """A fit made by the benchmark's or the CLI's store is loaded by the callback, and the other way round."""
    datamodule = synthetic_datamodule(tiny_mvtec, CountingLearnedGenerator())
    FitStore(tmp_path / "ckpt").fit_or_load(datamodule.generator, datamodule.fit_data())
    assert GeneratorFineTuneCallback(tmp_path / "ckpt").prepare(
        synthetic_datamodule(tiny_mvtec, CountingLearnedGenerator())
    ) == "loaded"


def test_classic_generator_needs_no_fit(tmp_path: Path, tiny_mvtec: Path) -> None:
    callback = GeneratorFineTuneCallback(tmp_path / "ckpt")
    assert callback.prepare(synthetic_datamodule(tiny_mvtec, FakeSquareGenerator())) == "not_needed"
    assert not (tmp_path / "ckpt").exists()


def test_needs_the_synthetic_datamodule(tmp_path: Path) -> None:
    trainer = SimpleNamespace(datamodule=object())
    with pytest.raises(InvalidInputError, match="SyntheticAnomalyDataModule"):
        GeneratorFineTuneCallback(tmp_path).on_fit_start(trainer, TinyModule())


def _rank(number: int) -> SimpleNamespace:
    """What ``prepare`` reads of a DDP trainer of two processes (the barrier is the strategy's)."""
    strategy = SimpleNamespace(barrier=lambda name: None)
    return SimpleNamespace(is_global_zero=number == 0, world_size=2, strategy=strategy)


def test_a_rank_that_cannot_see_rank_zeros_fit_says_so_instead_of_fitting_its_own(
    tmp_path: Path, tiny_mvtec: Path
) -> None:
    """On a node whose fit store is not the one rank zero wrote to, the rank silently fitted a generator itself."""
    rank_zero = GeneratorFineTuneCallback(tmp_path / "shared")
    rank_zero.prepare(synthetic_datamodule(tiny_mvtec, CountingLearnedGenerator()), _rank(0))
    assert CountingLearnedGenerator.fit_calls == 1

    same_store = GeneratorFineTuneCallback(tmp_path / "shared")
    datamodule = synthetic_datamodule(tiny_mvtec, CountingLearnedGenerator())
    assert same_store.prepare(datamodule, _rank(1)) == "loaded" and datamodule.generator.is_fitted

    local_store = GeneratorFineTuneCallback(tmp_path / "node_local")
    with pytest.raises(InvalidInputError, match="no stored fit") as error:
        local_store.prepare(synthetic_datamodule(tiny_mvtec, CountingLearnedGenerator()), _rank(1))
    assert "node_local" in str(error.value) and "every node" in str(error.value)
    assert CountingLearnedGenerator.fit_calls == 1  # no rank fitted a generator of its own

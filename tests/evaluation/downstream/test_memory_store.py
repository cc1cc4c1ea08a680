"""``NormalMemoryStore``: a stored normal memory stands in for a built one, and the run does not change."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from anomaly_synth_aug.evaluation.downstream import PRESETS, run_experiment
from anomaly_synth_aug.evaluation.downstream.memory_store import NormalMemoryStore


def test_a_stored_memory_is_reused_on_the_same_normals_and_seed_and_the_run_is_the_same(
    tiny_mvtec: Path, tmp_path: Path
) -> None:
    preset = dataclasses.replace(PRESETS["smoke"], crop_size=64)  # the memory's stride-32 stage needs room
    store = tmp_path / "memory"
    built = run_experiment(tiny_mvtec, "perlin", "segmenter_prior", 0, preset, memory_store=store)
    assert not built["timings"]["normal_memory_loaded"] and len(list(store.glob("*.safetensors"))) == 1
    loaded = run_experiment(tiny_mvtec, "perlin", "segmenter_prior", 0, preset, memory_store=store)
    assert loaded["timings"]["normal_memory_loaded"]
    assert loaded["metrics"] == built["metrics"] and loaded["thresholds"] == built["thresholds"]
    other_source = run_experiment(tiny_mvtec, "cutpaste", "segmenter_prior", 0, preset, memory_store=store)
    assert other_source["timings"]["normal_memory_loaded"]  # the same normals and seed: the same memory
    other_seed = run_experiment(tiny_mvtec, "perlin", "segmenter_prior", 1, preset, memory_store=store)
    assert not other_seed["timings"]["normal_memory_loaded"] and len(list(store.glob("*.safetensors"))) == 2


def test_a_damaged_stored_memory_is_built_again(tiny_mvtec: Path, tmp_path: Path) -> None:
    preset = dataclasses.replace(PRESETS["smoke"], crop_size=64)
    store = tmp_path / "memory"
    built = run_experiment(tiny_mvtec, "perlin", "segmenter_prior", 0, preset, memory_store=store)
    (stored,) = store.glob("*.safetensors")
    stored.write_bytes(b"not a safetensors file")
    again = run_experiment(tiny_mvtec, "perlin", "segmenter_prior", 0, preset, memory_store=store)
    assert not again["timings"]["normal_memory_loaded"] and again["metrics"] == built["metrics"]
    assert [path.name for path in store.iterdir()] == [stored.name] and stored.stat().st_size > 100  # stored anew


def test_without_a_memory_the_store_does_nothing(tiny_mvtec: Path, tmp_path: Path) -> None:
    store = NormalMemoryStore(tmp_path / "memory")
    record = run_experiment(tiny_mvtec, "perlin", "segmenter_image_only", 0, PRESETS["smoke"], memory_store=store)
    assert not record["timings"]["normal_memory_loaded"] and not store.loaded
    assert not (tmp_path / "memory").exists()


def _fingerprint(normals: list[Path], **segmenter: object) -> str | None:
    """The store's key for a fresh segmenter (random weights, seed 0) and a datamodule offering ``normals``."""
    from types import SimpleNamespace

    import pandas as pd
    import torch

    from anomaly_synth_aug.models.segmenter import DefectSegmenter

    torch.manual_seed(0)
    model = DefectSegmenter(pretrained=False, visualizer=False, **segmenter)
    samples = pd.DataFrame({"image_path": [str(path) for path in normals]})
    offer = SimpleNamespace(dataset=SimpleNamespace(samples=samples))
    trainer = SimpleNamespace(datamodule=SimpleNamespace(normal_dataloader=lambda: offer))
    return NormalMemoryStore("unused").fingerprint(trainer, model)


def test_the_key_follows_what_the_memory_depends_on_and_nothing_else(tmp_path: Path) -> None:
    """Contents, not paths: a moved dataset hits, a same-size edit misses; training settings do not count."""
    here, there = tmp_path / "here", tmp_path / "there"
    for folder in (here, there):
        folder.mkdir()
        for index in range(3):
            (folder / f"{index:03d}.png").write_bytes(bytes([index]) * 64)
    normals = sorted(here.iterdir())
    key = _fingerprint(normals)
    assert key is not None and key == _fingerprint(sorted(there.iterdir()))  # the same files elsewhere
    assert key == _fingerprint(normals, learning_rate=0.5, dice_weight=0.0)  # the memory does not see them
    assert key != _fingerprint(normals, memory_size=128)
    assert key != _fingerprint(normals[::-1])  # collected in another order
    (there / "001.png").write_bytes(bytes([9]) * 64)  # same name, same size, other contents
    assert key != _fingerprint(sorted(there.iterdir()))
    assert _fingerprint(normals, memory_source="training_crops") is None  # crops are drawn anew: never stored

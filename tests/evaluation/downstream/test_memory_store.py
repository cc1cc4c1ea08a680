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


def test_without_a_memory_the_store_does_nothing(tiny_mvtec: Path, tmp_path: Path) -> None:
    store = NormalMemoryStore(tmp_path / "memory")
    record = run_experiment(tiny_mvtec, "perlin", "segmenter_image_only", 0, PRESETS["smoke"], memory_store=store)
    assert not record["timings"]["normal_memory_loaded"] and not store.loaded
    assert not (tmp_path / "memory").exists()

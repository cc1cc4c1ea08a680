"""Fixtures for the cache tests: source normals, the two-type fake generator, a filled cache."""

from __future__ import annotations

from pathlib import Path

import pytest
from cache_helpers import TwoTypeGenerator, fill_cache

from anomaly_synth_aug.cache.generation import make_header
from anomaly_synth_aug.cache.manifest import CacheHeader
from anomaly_synth_aug.cache.store import SampleCache

SAMPLES_PER_TYPE = 3


@pytest.fixture
def sources(tiny_mvtec: Path) -> list[Path]:
    return sorted((tiny_mvtec / "train" / "good").glob("*.png"))


@pytest.fixture
def generator() -> TwoTypeGenerator:
    return TwoTypeGenerator()


@pytest.fixture
def header(generator: TwoTypeGenerator, sources: list[Path]) -> CacheHeader:
    return make_header(
        generator, sources, samples_per_type=SAMPLES_PER_TYPE, seed=0, defect_types=generator.defect_types
    )


@pytest.fixture
def filled_cache(tmp_path: Path, generator: TwoTypeGenerator, header: CacheHeader, sources: list[Path]) -> SampleCache:
    """A complete, intact cache of 2 types x 3 samples."""
    cache = SampleCache(tmp_path / "cache")
    fill_cache(cache, generator, header, sources)
    return cache

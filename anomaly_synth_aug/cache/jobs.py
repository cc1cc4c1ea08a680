"""The deterministic work list of a cache: job id -> (source normal, defect type, seed).

The list depends only on the sorted source paths, the defect types, ``samples_per_type`` and
``seed``, so every process (each DDP rank, a resumed run) derives the same jobs, and a job's
sample depends only on its own seed, not on batching, world size or where a run resumed.
Per defect type, sources are used round-robin in a seeded order so every normal is used before
any is reused.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from anomaly_synth_aug.cache.layout import CacheLayout, check_defect_type_name
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.utils.random import mixed_seed


@dataclass(frozen=True)
class GenerationJob:
    """One sample to generate: ``id`` is ``"<defect_type>/<index:06d>"``."""

    id: str
    defect_type: str
    index: int
    source: str
    seed: int


def type_key(defect_type: str) -> int:
    """A stable integer per defect type name (``hash()`` is salted per process, crc32 is not)."""
    return zlib.crc32(defect_type.encode())


def plan_jobs(
    source_paths: Sequence[str | Path],
    defect_types: Sequence[str],
    samples_per_type: int,
    seed: int,
) -> list[GenerationJob]:
    """All jobs of a cache, ordered by defect type then index."""
    if samples_per_type < 1:
        raise InvalidInputError(
            f"samples_per_type must be >= 1, got {samples_per_type}",
            fix="generate at least one sample per defect type, e.g. samples_per_type=100",
        )
    if not source_paths:
        raise InvalidInputError(
            "no source normal images to generate from", fix="give the cache a training set with normal images"
        )
    if not defect_types:
        raise InvalidInputError(
            "no defect types to generate", fix="fit the generator on defect shots, or pass defect_types"
        )
    sources = sorted(str(Path(p).resolve()) for p in source_paths)
    jobs: list[GenerationJob] = []
    for defect_type in sorted(set(defect_types)):
        key = type_key(check_defect_type_name(defect_type))
        order = np.random.default_rng([seed, key]).permutation(len(sources))
        for index in range(samples_per_type):
            jobs.append(
                GenerationJob(
                    id=CacheLayout.sample_id(defect_type, index),
                    defect_type=defect_type,
                    index=index,
                    source=sources[order[index % len(sources)]],
                    seed=mixed_seed(seed, key, index),
                )
            )
    return jobs

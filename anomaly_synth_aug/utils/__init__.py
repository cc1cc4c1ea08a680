"""Small shared helpers (randomness, threads, hashing)."""

from anomaly_synth_aug.utils.random import (
    derive_seed,
    make_generator,
    numpy_rng,
    seeded_global_rng,
)

__all__ = ["derive_seed", "make_generator", "numpy_rng", "seeded_global_rng"]

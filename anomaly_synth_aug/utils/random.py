"""Deterministic randomness derived from one ``torch.Generator``.

Generators must be reproducible for a given seed, but some building blocks
(anomalib's Perlin generator, torchvision transforms) draw from the global torch
RNG and others (OpenCV-based ones) from NumPy. These helpers derive every stream
from the caller's ``torch.Generator`` so one seed fixes the whole output, and
fork the global RNG so that seeding never leaks into the user's training loop.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import torch

_MAX_SEED = 2**62


def as_torch_generator(seed: int | np.integer | torch.Generator | None) -> torch.Generator | None:
    """``seed`` as a ``torch.Generator``: an int (NumPy's too) seeds a new one; a generator or None passes through."""
    if isinstance(seed, numbers.Integral) and not isinstance(seed, bool):
        return torch.Generator().manual_seed(int(seed))
    return seed


def derive_seed(generator: torch.Generator | None) -> int:
    """Draw a fresh 62-bit seed from ``generator`` (or from the global RNG when None)."""
    return int(torch.randint(0, _MAX_SEED, (1,), generator=generator).item())


def numpy_rng(generator: torch.Generator | None) -> np.random.Generator:
    """A NumPy RNG whose stream is fixed by ``generator``."""
    return np.random.default_rng(derive_seed(generator))


@contextmanager
def seeded_global_rng(generator: torch.Generator | None) -> Iterator[None]:
    """Run a block with the global torch RNG seeded from ``generator``, restoring it after.

    With ``generator=None`` the block uses the global RNG as is (no forking), so
    unseeded calls stay cheap and random.
    """
    if generator is None:
        yield
        return
    seed = derive_seed(generator)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        yield


def make_generator(seed: int | None) -> torch.Generator | None:
    """A CPU ``torch.Generator`` seeded with ``seed``, or None for unseeded use."""
    if seed is None:
        return None
    return torch.Generator().manual_seed(int(seed))


def mixed_seed(*values: int) -> int:
    """A 63-bit seed mixed from several integers (NumPy's SeedSequence), valid for ``torch.manual_seed``."""
    return int(np.random.SeedSequence([int(v) for v in values]).generate_state(1, dtype=np.uint64)[0] >> np.uint64(1))

"""Seeds: every kind of integer a user may hold seeds the same generator."""

from __future__ import annotations

import numpy as np
import torch

from anomaly_synth_aug.utils.random import as_torch_generator


def test_numpy_integers_seed_like_python_ones() -> None:
    """``generator=np.int64(3)`` (a seed read from an array) fell through as an int-like non-generator."""
    expected = torch.rand(4, generator=as_torch_generator(3))
    for seed in (np.int64(3), np.int32(3), np.uint8(3)):
        generator = as_torch_generator(seed)
        assert isinstance(generator, torch.Generator) and torch.equal(torch.rand(4, generator=generator), expected)


def test_generators_and_none_pass_through() -> None:
    generator = torch.Generator()
    assert as_torch_generator(generator) is generator and as_torch_generator(None) is None

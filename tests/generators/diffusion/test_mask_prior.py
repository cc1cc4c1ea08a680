"""The learned mask prior: it must learn each type's shape and size, and round-trip through diffusers' format."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from anomaly_synth_aug.errors import MaskError, NotFittedError, UnknownDefectTypeError
from anomaly_synth_aug.generators.diffusion.mask_prior import MaskPrior, letterbox
from anomaly_synth_aug.generators.diffusion.masks import ShotMaskBank

FIT_STEPS = 250


def _line(length: int, thickness: int) -> torch.Tensor:
    return torch.ones(thickness, length, dtype=torch.bool)


def _blob(radius: int) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(2 * radius + 1), torch.arange(2 * radius + 1), indexing="ij")
    return (yy - radius) ** 2 + (xx - radius) ** 2 <= radius**2


@pytest.fixture(scope="module")
def bank() -> ShotMaskBank:
    """Type "line": thin horizontal lines 30-50 px long; type "blob": round blobs 11-19 px across."""
    return ShotMaskBank(
        {
            "line": [_line(length, thickness) for length, thickness in [(30, 2), (40, 3), (50, 2), (35, 3)]],
            "blob": [_blob(radius) for radius in (5, 6, 7, 9)],
        }
    )


@pytest.fixture(scope="module")
def prior(bank: ShotMaskBank) -> MaskPrior:
    torch.set_num_threads(1)
    prior = MaskPrior(defect_types=bank.defect_types)
    return prior.fit(bank, steps=FIT_STEPS, generator=torch.Generator().manual_seed(0), progress=False)


def _elongation(crop: torch.Tensor) -> float:
    return max(crop.shape) / min(crop.shape)


def test_letterbox_keeps_aspect_ratio_and_thin_shapes() -> None:
    grid = letterbox(_line(200, 3), 32)
    assert grid.shape == (32, 32)
    rows = torch.nonzero(grid.sum(1) > 0).flatten()
    assert len(rows) == 1 and bool((grid[rows[0]] == 1).all()), "a thin line stays a full, one-cell line"


def test_prior_learns_each_types_shape_and_size(prior: MaskPrior) -> None:
    generator = torch.Generator().manual_seed(1)
    lines = [prior.sample(prior.type_index("line"), generator) for _ in range(30)]
    blobs = [prior.sample(prior.type_index("blob"), generator) for _ in range(30)]
    assert all(c.dtype == torch.bool and bool(c.any()) for c in lines + blobs)
    line_elongation = np.median([_elongation(c) for c in lines])
    blob_elongation = np.median([_elongation(c) for c in blobs])
    assert line_elongation > 3.0, line_elongation  # shots: 10-25, lowered by the +-20 degree rotations
    assert blob_elongation < 1.4, blob_elongation
    assert 20 <= np.median([max(c.shape) for c in lines]) <= 60
    assert 8 <= np.median([max(c.shape) for c in blobs]) <= 24
    blob_fill = np.median([c.float().mean().item() for c in blobs])
    assert 0.6 < blob_fill < 0.92, "blobs are round discs (pi/4 of their box), not squares, outlines or noise"


def test_sampling_is_deterministic_under_a_seed(prior: MaskPrior) -> None:
    first = prior.sample(0, torch.Generator().manual_seed(5))
    second = prior.sample(0, torch.Generator().manual_seed(5))
    assert torch.equal(first, second)


def test_fit_is_deterministic_under_a_seed(bank: ShotMaskBank) -> None:
    def fit(seed: int) -> dict[str, torch.Tensor]:
        prior = MaskPrior(defect_types=bank.defect_types)
        generator = torch.Generator().manual_seed(seed)
        return prior.fit(bank, steps=10, generator=generator, progress=False, augmented_per_type=8).state_dict()

    first, second, other = fit(0), fit(0), fit(1)
    assert all(torch.equal(tensor, second[name]) for name, tensor in first.items())
    assert not torch.equal(first["anchor_mean"], other["anchor_mean"])


def test_save_and_load_round_trip(prior: MaskPrior, tmp_path: Path) -> None:
    prior.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = MaskPrior.from_pretrained(tmp_path)
    assert loaded.config.defect_types == prior.config.defect_types
    for index in range(2):
        expected = prior.sample(index, torch.Generator().manual_seed(index))
        assert torch.equal(loaded.sample(index, torch.Generator().manual_seed(index)), expected)


def test_unfitted_and_unknown_types_raise(bank: ShotMaskBank, prior: MaskPrior) -> None:
    with pytest.raises(NotFittedError, match="fit"):
        MaskPrior(defect_types=["line"]).sample(0)
    with pytest.raises(UnknownDefectTypeError, match="out of range"):
        prior.sample(2)
    with pytest.raises(UnknownDefectTypeError, match="crack"):
        prior.type_index("crack")
    with pytest.raises(UnknownDefectTypeError, match="crack"):
        MaskPrior(defect_types=["crack"]).fit(bank, steps=1, progress=False)
    no_masks = ShotMaskBank({"uneven": [torch.zeros(4, 4, dtype=torch.bool)]})
    with pytest.raises(MaskError, match="uneven"):
        MaskPrior(defect_types=["uneven"]).fit(no_masks, steps=1, progress=False)

"""Mask bank, augmentation and placement: the "where" of a generated defect."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from anomaly_synth_aug.data.sample import AnomalySample
from anomaly_synth_aug.errors import InvalidInputError, MaskError, UnknownDefectTypeError
from anomaly_synth_aug.generators.diffusion.mask_crops import tight_crop
from anomaly_synth_aug.generators.diffusion.masks import (
    MaskAugmentation,
    ShotMaskBank,
    place_mask,
)


def _disk(size: tuple[int, int], center: tuple[int, int], radius: float) -> torch.Tensor:
    yy, xx = torch.meshgrid(torch.arange(size[0]), torch.arange(size[1]), indexing="ij")
    return (yy - center[0]) ** 2 + (xx - center[1]) ** 2 <= radius**2


def _shot(mask: torch.Tensor, defect_type: str) -> AnomalySample:
    return AnomalySample(image=torch.rand(3, *mask.shape), mask=mask, label=1, defect_type=defect_type)


def _line_shot(row: int, start: int, length: int) -> AnomalySample:
    mask = torch.zeros(32, 64, dtype=torch.bool)
    mask[row : row + 2, start : start + length] = True
    return _shot(mask, "scratch")


@pytest.fixture
def bank() -> ShotMaskBank:
    shots = [
        _shot(_disk((32, 32), (10, 12), 4), "blob"),
        _shot(_disk((32, 32), (20, 18), 6), "blob"),
        _line_shot(5, 3, 30),
        _line_shot(20, 10, 40),
    ]
    return ShotMaskBank.from_shots(shots)


def _is_tight(crop: torch.Tensor) -> bool:
    return bool(crop[0].any() and crop[-1].any() and crop[:, 0].any() and crop[:, -1].any())


# ------------------------------------------------------------------ bank
def test_bank_groups_tight_crops_by_sorted_type(bank: ShotMaskBank) -> None:
    assert bank.defect_types == ["blob", "scratch"]
    scratches = bank.masks("scratch")
    assert sorted(tuple(c.shape) for c in scratches) == [(2, 30), (2, 40)]
    assert all(c.dtype == torch.bool and bool(c.all()) for c in scratches)
    assert all(_is_tight(c) for c in bank.masks("blob"))


def test_bank_splits_components_when_asked_and_drops_speckles() -> None:
    mask = _disk((40, 40), (10, 10), 4) | _disk((40, 40), (28, 28), 6)
    mask[38, 2] = True  # a one-pixel speckle
    shot = _shot(mask, "blowhole")
    assert len(ShotMaskBank.from_shots([shot]).masks("blowhole")) == 1
    parts = ShotMaskBank.from_shots([shot], split_components=True, min_component_area=4).masks("blowhole")
    assert sorted(int(p.sum()) for p in parts) == sorted(
        [int(_disk((40, 40), (10, 10), 4).sum()), int(_disk((40, 40), (28, 28), 6).sum())]
    )


def test_bank_errors_name_the_problem(bank: ShotMaskBank) -> None:
    with pytest.raises(UnknownDefectTypeError, match="crack"):
        bank.sample("crack")
    with pytest.raises(UnknownDefectTypeError):
        bank.masks("crack")
    empty_only = ShotMaskBank.from_shots([_shot(torch.zeros(8, 8, dtype=torch.bool), "uneven")])
    assert empty_only.defect_types == ["uneven"]
    with pytest.raises(MaskError, match="uneven"):
        empty_only.sample("uneven")
    normal = AnomalySample.normal(torch.rand(3, 8, 8))
    with pytest.raises(InvalidInputError, match="normal"):
        ShotMaskBank.from_shots([normal])


def test_sample_is_deterministic_under_a_seed_and_leaves_the_global_rng_alone(bank: ShotMaskBank) -> None:
    global_state = torch.random.get_rng_state()
    first = [bank.sample("scratch", torch.Generator().manual_seed(7)) for _ in range(3)]
    assert torch.equal(torch.random.get_rng_state(), global_state)
    generator = torch.Generator().manual_seed(7)
    again = bank.sample("scratch", generator)
    assert all(torch.equal(again, crop) for crop in first)
    others = [bank.sample("scratch", generator) for _ in range(5)]
    assert any(o.shape != again.shape or not torch.equal(o, again) for o in others)


def test_samples_are_varied_never_empty_and_tight(bank: ShotMaskBank) -> None:
    generator = torch.Generator().manual_seed(0)
    originals = {tuple(c.shape) for c in bank.masks("scratch")}
    samples = [bank.sample("scratch", generator) for _ in range(40)]
    assert all(s.dtype == torch.bool and bool(s.any()) and _is_tight(s) for s in samples)
    assert sum(tuple(s.shape) not in originals for s in samples) > 20, "augmentation should change the shapes"
    # Still scratches: long and thin after a mild rotation/shear.
    assert np.median([max(s.shape) / min(s.shape) for s in samples]) > 2.5


def test_augmentation_that_would_erase_the_mask_falls_back_to_the_original() -> None:
    dot = torch.ones(1, 1, dtype=torch.bool)
    shrink = MaskAugmentation(degrees=0, scale=(0.05, 0.05), shear=0, elastic_strength=0)
    generator = torch.Generator().manual_seed(0)
    for _ in range(5):
        assert bool(shrink(dot, generator).any())


def test_augmentation_rejects_bad_parameters() -> None:
    with pytest.raises(InvalidInputError, match="scale"):
        MaskAugmentation(scale=(1.2, 0.8))


# ------------------------------------------------------------- placement
def test_place_mask_copies_the_crop_fully_inside_the_image() -> None:
    crop = tight_crop(_disk((9, 7), (4, 3), 3.5))
    tops = set()
    for seed in range(20):
        placed = place_mask(crop, (30, 40), generator=torch.Generator().manual_seed(seed))
        assert placed.shape == (30, 40) and placed.dtype == torch.bool
        assert int(placed.sum()) == int(crop.sum())
        rows, cols = torch.nonzero(placed.any(1)).flatten(), torch.nonzero(placed.any(0)).flatten()
        assert torch.equal(placed[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1], crop)
        tops.add(int(rows[0]))
    assert len(tops) > 5, "positions should be spread over the image"


def test_place_mask_is_deterministic_under_a_seed() -> None:
    crop = torch.ones(3, 5, dtype=torch.bool)
    first = place_mask(crop, (20, 20), generator=torch.Generator().manual_seed(3))
    second = place_mask(crop, (20, 20), generator=torch.Generator().manual_seed(3))
    assert torch.equal(first, second)


def test_place_mask_stays_inside_the_region() -> None:
    region = torch.zeros(40, 50, dtype=torch.bool)
    region[5:20, 30:48] = True
    region[20:38, 2:12] = True  # an L-shaped allowed area in two parts
    crop = _disk((7, 7), (3, 3), 3)
    for seed in range(30):
        placed = place_mask(crop, (40, 50), region, torch.Generator().manual_seed(seed))
        assert int(placed.sum()) == int(crop.sum())
        assert not bool((placed & ~region).any())


def test_place_mask_falls_back_to_the_best_positions_when_none_fits() -> None:
    ring = _disk((30, 30), (15, 15), 12) & ~_disk((30, 30), (15, 15), 8)
    crop = torch.ones(6, 6, dtype=torch.bool)  # wider than the ring everywhere
    best = max(
        int((ring[top : top + 6, left : left + 6]).sum()) for top in range(25) for left in range(25)
    )
    for seed in range(5):
        placed = place_mask(crop, (30, 30), ring, torch.Generator().manual_seed(seed))
        assert int((placed & ring).sum()) == best
    partial = place_mask(crop, (30, 30), ring, torch.Generator().manual_seed(0), min_inside_fraction=0.5)
    assert int((partial & ring).sum()) >= 18


def test_place_mask_centres_the_crop_in_the_allowed_centres_without_changing_its_size() -> None:
    """Context placement admits centres; a small admitted patch must not shrink the defect (it once did, as a region)."""
    region = torch.zeros(40, 50, dtype=torch.bool)
    region[2:38, 2:48] = True  # the object
    centres = torch.zeros(40, 50, dtype=torch.bool)
    centres[10:13, 30:33] = True  # a 3 x 3 patch of admitted centres, much smaller than the crop
    crop = _disk((11, 9), (5, 4), 4)
    for seed in range(10):
        placed = place_mask(crop, (40, 50), region, torch.Generator().manual_seed(seed), centres=centres)
        assert int(placed.sum()) == int(crop.sum()) and not bool((placed & ~region).any())
        rows, cols = torch.nonzero(placed.any(1)).flatten(), torch.nonzero(placed.any(0)).flatten()
        centre = (int(rows[0]) + len(rows) // 2, int(cols[0]) + len(cols) // 2)  # of the placed (tight) crop
        assert bool(centres[centre]), (seed, centre)
    nowhere = torch.zeros(40, 50, dtype=torch.bool)
    nowhere[0, 0] = True  # no crop inside the region can be centred there: the centres are ignored
    placed = place_mask(crop, (40, 50), region, torch.Generator().manual_seed(0), centres=nowhere)
    assert int(placed.sum()) == int(crop.sum()) and not bool((placed & ~region).any())
    with pytest.raises(MaskError, match="centres has size"):
        place_mask(crop, (40, 50), region, centres=torch.ones(10, 10, dtype=torch.bool))


def test_place_mask_shrinks_a_crop_larger_than_the_image() -> None:
    crop = torch.ones(10, 100, dtype=torch.bool)
    placed = place_mask(crop, (20, 50), generator=torch.Generator().manual_seed(0))
    rows, cols = torch.nonzero(placed.any(1)).flatten(), torch.nonzero(placed.any(0)).flatten()
    assert len(cols) == 50 and len(rows) == 5, "shrunk to fit, aspect ratio kept"


def test_place_mask_rejects_empty_inputs() -> None:
    crop = torch.ones(2, 2, dtype=torch.bool)
    with pytest.raises(MaskError, match="region is empty"):
        place_mask(crop, (10, 10), torch.zeros(10, 10, dtype=torch.bool))
    with pytest.raises(MaskError, match="empty mask crop"):
        place_mask(torch.zeros(2, 2, dtype=torch.bool), (10, 10))
    with pytest.raises(MaskError, match="region has size"):
        place_mask(crop, (10, 10), torch.ones(8, 10, dtype=torch.bool))

"""Crop helpers: tight boxes, never-empty binarisation and resizing."""

from __future__ import annotations

import torch

from anomaly_synth_aug.generators.diffusion.mask_crops import binarise, resize_crop, tight_crop


def test_tight_crop_cuts_to_the_true_pixels() -> None:
    mask = torch.zeros(10, 12, dtype=torch.bool)
    mask[2, 3] = mask[6, 8] = True
    crop = tight_crop(mask)
    assert crop.shape == (5, 6)
    assert crop[0, 0] and crop[-1, -1] and int(crop.sum()) == 2


def test_tight_crop_leaves_an_empty_mask_alone() -> None:
    empty = torch.zeros(4, 5, dtype=torch.bool)
    assert tight_crop(empty).shape == (4, 5)


def test_binarise_falls_back_to_the_strongest_pixels() -> None:
    coverage = torch.tensor([[0.1, 0.3], [0.2, 0.0]])
    assert torch.equal(binarise(coverage), torch.tensor([[False, True], [True, False]]))
    assert torch.equal(binarise(torch.tensor([[0.2, 0.9]])), torch.tensor([[False, True]]))


def test_resize_crop_keeps_a_thin_line_when_shrinking_a_lot() -> None:
    line = torch.zeros(3, 200, dtype=torch.bool)
    line[1] = True
    small = resize_crop(line, (2, 20))
    assert small.shape == (2, 20)
    assert bool(small.any(0).all()), "the line must stay continuous along its length"

"""Sample grids: layout, overlay confined to the mask, PNG round trip, input checks."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.visualization.grid import overlay_mask, render_sample_grid, save_grid


def test_overlay_changes_only_masked_pixels() -> None:
    image = torch.full((3, 10, 12), 0.5)
    mask = torch.zeros(10, 12, dtype=torch.bool)
    mask[2:5, 3:7] = True
    out = overlay_mask(image, mask)
    assert out.dtype == torch.uint8
    changed = (out != 128).any(0)
    assert torch.equal(changed, mask)
    assert (out[0][mask] > 128).all()  # reddened


def test_grid_resizes_mixed_sizes_into_pairs_and_saves(tmp_path: Path) -> None:
    images = [torch.rand(3, 20, 30), torch.rand(1, 40, 16), torch.rand(3, 8, 8)]
    masks = [torch.ones(20, 30, dtype=torch.bool), torch.zeros(40, 16, dtype=torch.bool), torch.eye(8).bool()]
    grid = render_sample_grid(images, masks, tile_size=(16, 24), pairs_per_row=2, padding=1)
    # two rows (3 samples, 2 per row) of 4 tiles each
    assert grid.shape == (3, 2 * (16 + 1) + 1, 4 * (24 + 1) + 1)
    path = save_grid(grid, tmp_path / "nested" / "grid.png")
    assert np.array_equal(np.asarray(Image.open(path)), grid.permute(1, 2, 0).numpy())


@pytest.mark.parametrize(
    ("images", "masks", "match"),
    [
        ([torch.rand(3, 8, 8)], [], "1 images but 0 masks"),
        ([], [], "no images"),
    ],
)
def test_bad_inputs_are_named(images: list, masks: list, match: str) -> None:
    with pytest.raises(InvalidInputError, match=match):
        render_sample_grid(images, masks)

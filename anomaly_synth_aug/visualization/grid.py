"""Sample grids: each generated image next to a copy with its mask overlaid.

Pairs (plain | overlay) rather than overlays alone, because a filled mask hides the
very defect one wants to judge. Tiles are resized to one size so images of any
size fit in one grid; masks are resized with nearest-neighbour so they stay exact.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import torch
from PIL import Image
from torchvision.transforms.v2 import functional as F
from torchvision.utils import draw_segmentation_masks, make_grid

from anomaly_synth_aug.data.sample import to_bool_mask, to_rgb_float
from anomaly_synth_aug.errors import InvalidInputError

MASK_COLOR = (255, 0, 0)


def overlay_mask(
    image: torch.Tensor, mask: torch.Tensor, *, alpha: float = 0.4, color: tuple[int, int, int] = MASK_COLOR
) -> torch.Tensor:
    """``image`` (float ``[3, H, W]`` in [0, 1] or uint8) with ``mask`` drawn on it, as uint8 ``[3, H, W]``."""
    rgb = (to_rgb_float(image) * 255).round().to(torch.uint8)
    return draw_segmentation_masks(rgb, to_bool_mask(mask), alpha=alpha, colors=color)


def render_sample_grid(
    images: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    *,
    tile_size: tuple[int, int] | None = None,
    pairs_per_row: int = 4,
    alpha: float = 0.4,
    padding: int = 2,
) -> torch.Tensor:
    """One uint8 ``[3, H, W]`` grid with a (plain, overlay) pair per sample.

    Args:
        images: float ``[3, H, W]`` (or grayscale) images in [0, 1]; sizes may differ.
        masks: one bool ``[H, W]`` mask per image.
        tile_size: ``(H, W)`` of every tile; default: the first image's size.
        pairs_per_row: samples per grid row (each takes two tiles).
        alpha: opacity of the mask overlay.
        padding: pixels between tiles.
    """
    if len(images) != len(masks):
        raise InvalidInputError(
            f"got {len(images)} images but {len(masks)} masks", fix="pass one mask per image"
        )
    if not images:
        raise InvalidInputError("no images to render", fix="pass at least one image and its mask")
    if pairs_per_row < 1:
        raise InvalidInputError(f"pairs_per_row must be >= 1, got {pairs_per_row}", fix="use e.g. 4")
    size = list(tile_size) if tile_size is not None else list(images[0].shape[-2:])
    tiles: list[torch.Tensor] = []
    for image, mask in zip(images, masks, strict=True):
        plain = F.resize(to_rgb_float(image), size, antialias=True).clamp(0, 1)
        small_mask = F.resize(to_bool_mask(mask)[None].to(torch.uint8), size, interpolation=F.InterpolationMode.NEAREST)[0]
        tiles.append((plain * 255).round().to(torch.uint8))
        tiles.append(overlay_mask(plain, small_mask.bool(), alpha=alpha))
    return make_grid(tiles, nrow=2 * pairs_per_row, padding=padding, pad_value=255)


def save_grid(grid: torch.Tensor, path: str | Path) -> Path:
    """Write a uint8 ``[3, H, W]`` grid as PNG (parent folders are created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(grid.to(torch.uint8).permute(1, 2, 0).cpu().numpy()).save(path)
    return path

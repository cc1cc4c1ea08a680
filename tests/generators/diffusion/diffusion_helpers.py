"""Tiny synthetic data and model sizes shared by the diffusion generator tests (fast on 2 CPU cores)."""

from __future__ import annotations

import torch

from anomaly_synth_aug.data.sample import AnomalySample

#: A UNet small enough for unit tests: two levels, 8/16 channels, 16 px patches.
TINY = {"patch_size": 16, "block_out_channels": (8, 16)}


def surface(seed: int, size: tuple[int, int] = (40, 48)) -> torch.Tensor:
    """A grey, slightly noisy product surface ``[3, H, W]``."""
    generator = torch.Generator().manual_seed(seed)
    gray = 0.5 + 0.05 * torch.randn(1, *size, generator=generator)
    return gray.clamp(0, 1).expand(3, -1, -1).contiguous()


def defect_shot(seed: int, defect_type: str, size: tuple[int, int] = (40, 48)) -> AnomalySample:
    """A surface with a dark square ("dent") or a bright bar ("streak") and its mask."""
    image = surface(seed, size)
    mask = torch.zeros(size, dtype=torch.bool)
    top, left = 8 + seed % 7, 10 + (3 * seed) % 11
    if defect_type == "streak":
        mask[top : top + 3, left : left + 14] = True
        image[:, mask] = 0.95
    else:
        mask[top : top + 6, left : left + 6] = True
        image[:, mask] = 0.1
    return AnomalySample(image=image, mask=mask, label=1, defect_type=defect_type)


def shots() -> list[AnomalySample]:
    return [defect_shot(i, name) for i in range(3) for name in ("dent", "streak")]


def normals(count: int = 4) -> list[torch.Tensor]:
    return [surface(100 + i) for i in range(count)]

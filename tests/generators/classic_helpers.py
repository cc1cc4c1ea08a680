"""In-memory inputs for the classic generator tests: textured surfaces and defect shots."""

from __future__ import annotations

import torch

from anomaly_synth_aug.data.sample import AnomalySample


def surface(height: int, width: int, seed: int, *, gray: bool = True) -> torch.Tensor:
    """A smooth product-like texture with noise, float ``[3, H, W]`` in [0, 1]."""
    generator = torch.Generator().manual_seed(seed)
    rows = torch.arange(height, dtype=torch.float32)[:, None]
    cols = torch.arange(width, dtype=torch.float32)[None, :]
    period_x, period_y = 3 + 3 * torch.rand(2, generator=generator)
    base = 0.5 + 0.12 * torch.sin(cols / period_x) * torch.cos(rows / period_y)
    noisy = (base + 0.02 * torch.randn(height, width, generator=generator)).clamp(0, 1)
    if gray:
        return noisy.expand(3, -1, -1).contiguous()
    tint = torch.tensor([1.0, 0.9, 0.8])[:, None, None]
    return (noisy * tint).clamp(0, 1)


def blob_shot(
    height: int, width: int, seed: int, *, defect_type: str = "blob", value: float = 0.1, radius: float = 5.0
) -> AnomalySample:
    """A surface with a round defect of grey level ``value`` and its exact mask."""
    image = surface(height, width, seed)
    rows = torch.arange(height, dtype=torch.float32)[:, None]
    cols = torch.arange(width, dtype=torch.float32)[None, :]
    mask = (rows - height / 2) ** 2 + (cols - width / 2) ** 2 < radius**2
    image = torch.where(mask, torch.full_like(image, value), image)
    return AnomalySample(image=image, mask=mask, label=1, defect_type=defect_type)


def normals(count: int = 4, size: tuple[int, int] = (40, 56)) -> list[torch.Tensor]:
    return [surface(*size, seed=100 + i) for i in range(count)]


def shots() -> list[AnomalySample]:
    """Two defect types: dark blobs and bright scratches-like bars."""
    dark = [blob_shot(40, 56, seed=200 + i, defect_type="dark", value=0.05) for i in range(2)]
    bright = []
    for i in range(2):
        image = surface(40, 56, seed=300 + i)
        mask = torch.zeros(40, 56, dtype=torch.bool)
        mask[18:22, 10 + 3 * i : 40 + 3 * i] = True
        bright.append(
            AnomalySample(image=torch.where(mask, torch.ones_like(image), image), mask=mask, defect_type="bright")
        )
    return dark + bright

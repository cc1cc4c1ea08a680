"""Two surfaces side by side, and dents on each: fixtures for context placement (generators and ContextPlacement)."""

import torch

from anomaly_synth_aug.data.sample import AnomalySample

SIZE = (96, 192)  # the left half one surface, the right half another


def two_surfaces(seed: int) -> torch.Tensor:
    """Vertical stripes on the left half, a fine checker on the right half (one channel, slightly noisy)."""
    rows = torch.arange(SIZE[0], dtype=torch.float32)[:, None]
    cols = torch.arange(SIZE[1], dtype=torch.float32)[None, :]
    stripes = 0.5 + 0.2 * torch.sin(cols * 1.1)
    checker = 0.5 + 0.2 * torch.sign(torch.sin(rows * 0.8) * torch.sin(cols * 0.8))
    image = torch.where(cols < SIZE[1] // 2, stripes, checker)
    noise = 0.02 * torch.randn(SIZE, generator=torch.Generator().manual_seed(seed))
    return (image + noise).clamp(0, 1)[None]


def shot_on(side: str, seed: int) -> AnomalySample:
    """A dark dent on the ``side`` half, away from the seam, at a position that varies with ``seed``."""
    image = two_surfaces(seed)
    mask = torch.zeros(SIZE, dtype=torch.bool)
    top = 20 + (13 * seed) % 50
    left = (10 if side == "left" else 134) + (17 * seed) % 50
    mask[top : top + 8, left : left + 8] = True
    image[:, mask] = 0.05
    return AnomalySample(image=image, mask=mask, label=1, defect_type=f"{side}_dent")


def shots() -> list[AnomalySample]:
    return [shot_on(side, seed) for seed in range(4) for side in ("left", "right")]


def share_on_left(region: torch.Tensor) -> float:
    return float(region[:, : SIZE[1] // 2].sum()) / float(region.sum())

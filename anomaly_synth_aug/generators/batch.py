"""``GeneratedBatch``: what every generator returns, one image, mask and defect type per input.

Example:
    >>> batch = generator.generate(images, generator=0)
    >>> images, masks = batch.stack()  # when all inputs share one size
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch

from anomaly_synth_aug.data.sample import AnomalySample
from anomaly_synth_aug.errors import InvalidInputError


@dataclass
class GeneratedBatch:
    """Output of ``AnomalyGenerator.generate``: one entry per input image.

    ``images`` float [3, H, W] in [0, 1]; ``masks`` bool [H, W]; sizes follow the inputs.
    ``stats`` carries generator-specific counters (e.g. quality-filter rejections).
    """

    images: list[torch.Tensor]
    masks: list[torch.Tensor]
    defect_types: list[str]
    stats: dict[str, Any] = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.images)

    def samples(self) -> list[AnomalySample]:
        """The batch as ``AnomalySample`` objects (label 1)."""
        return [
            AnomalySample(image=img, mask=msk, label=1, defect_type=dt)
            for img, msk, dt in zip(self.images, self.masks, self.defect_types, strict=True)
        ]

    @classmethod
    def concat(cls, batches: Sequence[GeneratedBatch]) -> GeneratedBatch:
        """One batch of all ``batches`` in order; numeric ``stats`` (also inside dicts) are summed."""
        stats: dict[str, Any] = {}
        for batch in batches:
            for key, value in batch.stats.items():
                stats[key] = _add_stats(stats.get(key), value)
        return cls(
            images=[image for batch in batches for image in batch.images],
            masks=[mask for batch in batches for mask in batch.masks],
            defect_types=[name for batch in batches for name in batch.defect_types],
            stats=stats,
        )

    def stack(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Images ``[B, 3, H, W]`` and masks ``[B, H, W]``; all inputs must share one size."""
        sizes = {tuple(img.shape) for img in self.images}
        if len(sizes) > 1:
            raise InvalidInputError(
                f"cannot stack images of different sizes {sorted(sizes)}",
                fix="resize the inputs to one size first, or iterate over .images",
            )
        return torch.stack(self.images), torch.stack(self.masks)


def _add_stats(total: Any, value: Any) -> Any:
    """``total + value`` for counters: numbers add, dicts add key by key, anything else keeps the latest."""
    if total is None:
        return dict(value) if isinstance(value, dict) else value
    if isinstance(total, dict) and isinstance(value, dict):
        merged = dict(total)
        for key, item in value.items():
            merged[key] = _add_stats(merged.get(key), item)
        return merged
    if isinstance(total, (int, float)) and isinstance(value, (int, float)) and not isinstance(value, bool):
        return total + value
    return value

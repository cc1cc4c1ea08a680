"""``GeneratorAugmenter``: any ``AnomalyGenerator`` behind anomalib's in-model augmenter interface.

Draem and Glass synthesise their training anomalies inside ``training_step`` with
``PerlinAnomalyGenerator``: ``augmenter(images [B, 3, H, W]) -> (augmented, masks [B, 1, H, W])``,
where each image is corrupted with probability ``probability`` and untouched ones get an
all-zero mask. This module keeps that contract so it can replace the Perlin augmenter as is.
"""

from __future__ import annotations

import torch
from torch import nn

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators.base import AnomalyGenerator
from anomaly_synth_aug.utils.random import derive_seed


class GeneratorAugmenter(nn.Module):
    """Corrupt a batch with an ``AnomalyGenerator``, the way anomalib's ``PerlinAnomalyGenerator`` does.

    Randomness comes from the global torch RNG (which ``seed_everything`` fixes), as in anomalib.
    Generation runs on CPU tensors; results are moved back to the input's device and dtype.
    Outside the returned mask the output equals the input exactly.

    Args:
        generator: the anomaly generator (fitted, if it is a learned one).
        probability: chance that each image gets a defect (Draem uses 0.5, Glass 1.0).
    """

    def __init__(self, generator: AnomalyGenerator, probability: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= probability <= 1.0:
            raise InvalidInputError(
                f"probability must be in [0, 1], got {probability}", fix="use 0.5 as anomalib's Draem does"
            )
        self.generator = generator
        self.probability = probability

    @torch.no_grad()
    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(augmented, masks)``: ``[B, 3, H, W]`` and float ``[B, 1, H, W]`` (or unbatched ``[3, H, W]``)."""
        single = images.ndim == 3
        batch = images.unsqueeze(0) if single else images
        augmented = batch.clone()
        masks = torch.zeros((batch.shape[0], 1, *batch.shape[-2:]), dtype=batch.dtype, device=batch.device)
        chosen = (torch.rand(batch.shape[0]) < self.probability).nonzero().flatten().to(batch.device)
        if len(chosen):
            rng = torch.Generator().manual_seed(derive_seed(None))
            generated = self.generator.generate(batch[chosen].detach().float().cpu(), generator=rng)
            new_images, new_masks = generated.stack()
            new_masks = new_masks.unsqueeze(1).to(batch.device)
            augmented[chosen] = torch.where(new_masks, new_images.to(batch), batch[chosen])
            masks[chosen] = new_masks.to(batch.dtype)
        return (augmented[0], masks[0]) if single else (augmented, masks)

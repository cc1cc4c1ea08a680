"""``NormalPrior``: the segmenter's verdict and PatchCore's, each measured in units of normal variation, added.

A segmenter trained on a few dozen (real or synthetic) defects learns what *those* defects look
like. On a surface whose test defects differ from its training ones it misses them, and on normal
images it can light up where its training defects would have been; a one-class detector such as
PatchCore has neither weakness but knows nothing of what a defect is. Ensembles of anomaly
detectors combine such scores after putting each on a common scale, the standard score on normal
data (PyOD's ``standardizer``; Aggarwal and Sathe, *Outlier Ensembles*, 2017). ``NormalPrior`` does that per
pixel: the segmenter's logit and the normal memory's nearest-patch distance are each turned into
a z-score with the mean and standard deviation they have on held-back *normal* images, and the two
are added. Neither scale needs a defect to set it, so no test image and no defect is ever used.

The decoder already sees the distance (``NormalPatchMemory``), but it is trained to reproduce its
training masks, and so learns to ignore a deviation that no training defect showed. The prior keeps
that deviation in the final map.

Example:
    >>> prior = NormalPrior()
    >>> for logits, distance in normal_batches:  # [B, 1, H, W] each, distance already upsampled
    ...     prior.accumulate(logits, distance)
    >>> prior.finish()
    >>> fused = prior.fuse(logits, distance)  # [B, 1, H, W]: standard scores, added
"""

from __future__ import annotations

import torch
from torch import nn

from anomaly_synth_aug.errors import InvalidInputError, NotFittedError


class NormalPrior(nn.Module):
    """Per-pixel standard scores of the segmenter's logits and the memory's distances on normal images, added.

    The statistics are buffers, so they travel with the checkpoint of the step they were measured for.
    """

    def __init__(self) -> None:
        super().__init__()
        self.logit_mean: torch.Tensor
        self.logit_std: torch.Tensor
        self.distance_mean: torch.Tensor
        self.distance_std: torch.Tensor
        for name in ("logit_mean", "logit_std", "distance_mean", "distance_std"):
            self.register_buffer(name, torch.zeros(()))
        self._sums = torch.zeros(5, dtype=torch.float64)  # count, sum and sum of squares of both signals

    @property
    def is_calibrated(self) -> bool:
        return bool(self.logit_std > 0) and bool(self.distance_std > 0)

    def reset(self) -> None:
        """Start a new measurement (the segmenter's logits change as it trains)."""
        self._sums.zero_()

    @torch.no_grad()
    def accumulate(self, logits: torch.Tensor, distance: torch.Tensor) -> None:
        """Add normal images' logits and distances (same shape, every pixel a normal one)."""
        if logits.shape != distance.shape:
            raise InvalidInputError(
                f"logits {tuple(logits.shape)} and distances {tuple(distance.shape)} differ in shape",
                fix="upsample the distance map to the logits' size first",
            )
        logits, distance = logits.double(), distance.double()
        # Summed on the signals' device, kept on the CPU: the buffers alone follow the module.
        self._sums += torch.tensor(
            [
                float(logits.numel()),
                logits.sum().item(),
                logits.square().sum().item(),
                distance.sum().item(),
                distance.square().sum().item(),
            ],
            dtype=torch.float64,
        )

    def finish(self) -> None:
        """Turn what was accumulated into the buffers; refuses when no normal pixel was seen."""
        count, logit_sum, logit_squares, distance_sum, distance_squares = self._sums.tolist()
        if count < 2:
            raise InvalidInputError(
                "the normal prior saw no normal image to calibrate on",
                fix="give the datamodule a validation set with normal images (val_split='synthetic'), "
                "or pass normal_prior=False",
            )
        for prefix, total, squares in (("logit", logit_sum, logit_squares), ("distance", distance_sum, distance_squares)):
            mean = total / count
            variance = max(squares / count - mean**2, 0.0)
            getattr(self, f"{prefix}_mean").fill_(mean)
            getattr(self, f"{prefix}_std").fill_(max(variance**0.5, 1e-6))
        self.reset()

    def fuse(self, logits: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        """``(logits - mean) / std + (distance - mean) / std``, each with its own normal statistics."""
        if not self.is_calibrated:
            raise NotFittedError(
                "the normal prior is not calibrated: accumulate() normal images' logits and distances, then finish()"
            )
        return (logits - self.logit_mean) / self.logit_std + (distance - self.distance_mean) / self.distance_std


__all__ = ["NormalPrior"]

"""``NormalPrior``: the segmenter's verdict and PatchCore's, each measured in units of normal variation, added.

A segmenter trained on a few dozen (real or synthetic) defects learns what *those* defects look
like. On a surface whose test defects differ from its training ones it misses them, and on normal
images it can light up where its training defects would have been; a one-class detector such as
PatchCore has neither weakness but knows nothing of what a defect is. Ensembles of anomaly
detectors combine such scores after putting each on a common scale, the standard score on normal
data (PyOD's ``standardizer``; Aggarwal and Sathe, *Outlier Ensembles*, 2017). ``NormalPrior`` does that
at both levels a detector answers on, each with its own normal statistics:

* **pixels**: the segmenter's logit and the normal memory's nearest-patch distance, each turned into a
  z-score with the mean and standard deviation they have over the pixels of held-back *normal*
  images, added: the anomaly map;
* **images**: the segmenter's image score and PatchCore's (each the mean of its map's highest
  ``score_top_fraction`` of pixels), each turned into a z-score over the held-back normal *images*,
  added: the image score. It is fused on its own rather than read off the fused map because the
  two detectors' image scores spread differently from their pixels: a segmenter's logits on normal
  images are sharp and spatially rare, so a single false-positive spot dominates the top of a
  pixel-fused map; standardised per image, that spot counts for as much as it is unusual among
  normal *images*.

Neither scale needs a defect to set it, so no test image and no defect is ever used.

The decoder already sees the distance (``NormalPatchMemory``), but it is trained to reproduce its
training masks, and so learns to ignore a deviation that no training defect showed. The prior keeps
that deviation in the final map and score.

Example:
    >>> prior = NormalPrior(score_top_fraction=0.001)
    >>> for logits, distance in normal_batches:  # [B, 1, H, W] each, distance already upsampled
    ...     prior.accumulate(logits, distance)
    >>> prior.finish()
    >>> anomaly_map = prior.fuse(logits, distance)  # [B, 1, H, W]: standard scores, added
    >>> pred_score = prior.fuse_scores(logits, distance)  # [B]: image standard scores, added
    >>> prior.last_components["memory"]  # [B]: the memory's part of that sum
"""

from __future__ import annotations

import logging
import math

import torch
from torch import nn

from anomaly_synth_aug.errors import InvalidInputError, NotFittedError

logger = logging.getLogger(__name__)


def top_fraction_mean(maps: torch.Tensor, fraction: float) -> torch.Tensor:
    """Mean of the highest ``fraction`` of each map's values ``[B, ...] -> [B]`` (the maximum when 0)."""
    flat = maps.flatten(1)
    k = max(1, math.ceil(flat.shape[1] * fraction))
    return flat.topk(k, dim=1).values.mean(dim=1)


class StandardScore(nn.Module):
    """Mean and standard deviation of one signal over normal data, accumulated in float64.

    The two statistics are buffers (they travel with a checkpoint); the running sums are not.
    """

    def __init__(self) -> None:
        super().__init__()
        self.mean: torch.Tensor
        self.std: torch.Tensor
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("std", torch.zeros(()))
        self._sums = torch.zeros(3, dtype=torch.float64)  # count, sum, sum of squares

    @property
    def is_calibrated(self) -> bool:
        return bool(self.std > 0)

    @property
    def count(self) -> int:
        return int(self._sums[0].item())

    def reset(self) -> None:
        self._sums.zero_()

    @torch.no_grad()
    def accumulate(self, values: torch.Tensor) -> None:
        values = values.double()
        # Summed on the signal's device, kept on the CPU: the buffers alone follow the module.
        self._sums += torch.tensor(
            [float(values.numel()), values.sum().item(), values.square().sum().item()], dtype=torch.float64
        )

    def finish(self) -> None:
        count, total, squares = self._sums.tolist()
        mean = total / count
        variance = max(squares / count - mean**2, 0.0)
        self.mean.fill_(mean)
        self.std.fill_(max(variance**0.5, 1e-6))
        self.reset()

    def forward(self, values: torch.Tensor) -> torch.Tensor:
        """``(values - mean) / std``."""
        return (values - self.mean) / self.std


class NormalPrior(nn.Module):
    """Standard scores of the segmenter's and the memory's signals on normal images, added per pixel and per image.

    Args:
        score_top_fraction: share of a map's highest pixels averaged into its image score (the
            segmenter's own ``score_top_fraction``).
    """

    def __init__(self, score_top_fraction: float = 0.001) -> None:
        super().__init__()
        self.score_top_fraction = score_top_fraction
        self.pixel_logit = StandardScore()
        self.pixel_distance = StandardScore()
        self.image_logit = StandardScore()
        self.image_distance = StandardScore()
        # The standardised parts of the last ``fuse_scores`` call, each ``[B]``: which detector drove
        # the verdict (the benchmark records each part's own image AUROC). Not state: never saved.
        self.last_components: dict[str, torch.Tensor] | None = None

    def _scores(self) -> tuple[StandardScore, ...]:
        return self.pixel_logit, self.pixel_distance, self.image_logit, self.image_distance

    @property
    def is_calibrated(self) -> bool:
        return all(score.is_calibrated for score in self._scores())

    def reset(self) -> None:
        """Start a new measurement (the segmenter's logits change as it trains)."""
        for score in self._scores():
            score.reset()

    @torch.no_grad()
    def accumulate(self, logits: torch.Tensor, distance: torch.Tensor) -> None:
        """Add normal images' logits and distances ``[B, 1, H, W]`` (same shape, every pixel a normal one)."""
        if logits.shape != distance.shape:
            raise InvalidInputError(
                f"logits {tuple(logits.shape)} and distances {tuple(distance.shape)} differ in shape",
                fix="upsample the distance map to the logits' size first",
            )
        self.pixel_logit.accumulate(logits)
        self.pixel_distance.accumulate(distance)
        self.image_logit.accumulate(top_fraction_mean(logits, self.score_top_fraction))
        self.image_distance.accumulate(top_fraction_mean(distance, self.score_top_fraction))

    def finish(self) -> None:
        """Turn what was accumulated into the buffers; refuses when no normal image was seen.

        One image gives no spread of image scores: its image scores are then standardised with the
        pixel statistics, with a warning.
        """
        images = self.image_logit.count
        if images == 0:
            raise InvalidInputError(
                "the normal prior saw no normal image to calibrate on",
                fix="give the datamodule a validation set with normal images (val_split='synthetic'), "
                "or pass normal_prior=False",
            )
        self.pixel_logit.finish()
        self.pixel_distance.finish()
        if images == 1:
            logger.warning(
                "normal_prior: one normal image to calibrate on, so image scores are standardised with the pixels' "
                "statistics; give the validation set more normal images for a per-image scale"
            )
            for image, pixel in ((self.image_logit, self.pixel_logit), (self.image_distance, self.pixel_distance)):
                image.reset()
                image.mean.copy_(pixel.mean)
                image.std.copy_(pixel.std)
            return
        self.image_logit.finish()
        self.image_distance.finish()

    def _check_calibrated(self) -> None:
        if not self.is_calibrated:
            raise NotFittedError(
                "the normal prior is not calibrated: accumulate() normal images' logits and distances, then finish()"
            )

    def fuse(self, logits: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        """The anomaly map: the logit's and the distance's per-pixel standard scores, added."""
        self._check_calibrated()
        return self.pixel_logit(logits) + self.pixel_distance(distance)

    def fuse_scores(self, logits: torch.Tensor, distance: torch.Tensor) -> torch.Tensor:
        """The image score ``[B]``: the two detectors' image scores' standard scores over normal images, added."""
        self._check_calibrated()
        logit_scores = top_fraction_mean(logits, self.score_top_fraction)
        distance_scores = top_fraction_mean(distance, self.score_top_fraction)
        components = {"segmenter": self.image_logit(logit_scores), "memory": self.image_distance(distance_scores)}
        self.last_components = {name: value.detach() for name, value in components.items()}
        return components["segmenter"] + components["memory"]


__all__ = ["NormalPrior", "StandardScore", "top_fraction_mean"]

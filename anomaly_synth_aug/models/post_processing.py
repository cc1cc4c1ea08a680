"""``RawScorePostProcessor``: validation thresholds applied to raw scores, with no min-max normalisation.

anomalib's ``PostProcessor(enable_normalization=False)`` still learns its thresholds on the raw
validation scores, but labels predictions against the *normalised* threshold ``1 - sensitivity``
(0.5): ``pred_label = raw_score > 0.5``. For a PaDiM (scores around 2 to 15) that flags every image, so
an F1 "at the validation threshold" was really the F1 of flagging everything. This post-processor
labels raw scores against the thresholds it learned, which is what turning normalisation off means.
"""

from __future__ import annotations

from typing import Any

import torch
from anomalib.post_processing import PostProcessor

from anomaly_synth_aug.errors import InvalidInputError


class RawScorePostProcessor(PostProcessor):
    """``PostProcessor`` without normalisation whose labels use the learned raw thresholds.

    Normalisation stays off because min-max normalisation clamps test scores outside the validation
    range to 0 or 1, and the ties it creates distort AUROC. Sensitivity is a knob of the
    normalised scale and does not apply here. Without a validation set no threshold is learned
    (NaN) and labels mean nothing; the benchmark then reports no threshold metrics.
    """

    def __init__(self, **kwargs: Any) -> None:
        if kwargs.pop("enable_normalization", False):
            raise InvalidInputError(
                "RawScorePostProcessor never normalises", fix="use anomalib's PostProcessor for normalised scores"
            )
        super().__init__(enable_normalization=False, **kwargs)

    @property
    def normalized_image_threshold(self) -> torch.Tensor:
        """The learned image threshold on the raw scale (anomalib returns ``1 - sensitivity``)."""
        return self.image_threshold

    @property
    def normalized_pixel_threshold(self) -> torch.Tensor:
        """The learned pixel threshold on the raw scale (anomalib returns ``1 - sensitivity``)."""
        return self.pixel_threshold

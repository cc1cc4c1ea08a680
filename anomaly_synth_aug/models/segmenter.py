"""``DefectSegmenter``: a small supervised U-Net that learns defects from masks, from scratch.

The practitioner's detector for the synthetic-defect workflow: train it on normals plus
generated anomalies (``SyntheticAnomalyDataModule`` puts a pixel mask in every training
item) and it predicts a per-pixel defect probability. The network is DRÆM's discriminative
U-Net (``DiscriminativeSubNetwork``, reused from anomalib) with a narrow ``base_width`` and one
output channel; no pretrained weights are involved, so it trains fully offline on CPU.

It is an ``AnomalibModule``, so anomalib's ``Engine``, ``PreProcessor`` (resize), ``PostProcessor``
(thresholds picked on the validation set) and ``Evaluator`` (metrics) all apply unchanged.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from anomalib import LearningType
from anomalib.data import Batch, InferenceBatch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.models.image.draem.torch_model import DiscriminativeSubNetwork
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torch import nn
from torchvision.ops import sigmoid_focal_loss
from torchvision.transforms.v2 import Compose, Resize

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.models.post_processing import RawScorePostProcessor

#: The U-Net halves the resolution five times, so each input side must be a multiple of this.
SIZE_MULTIPLE = 32


class SegmenterModel(nn.Module):
    """The torch network: image ``[B, 3, H, W]`` to defect logits ``[B, 1, H, W]``.

    In training mode ``forward`` returns the logits (for the loss); in eval mode it returns an
    ``InferenceBatch`` whose ``anomaly_map`` ``[B, H, W]`` is the defect probability and whose ``pred_score`` is
    the mean of the map's highest ``score_top_fraction`` of pixels (the maximum when 0).

    Args:
        base_width: channels of the first level (DRÆM uses 64; 16 is plenty for one category).
        score_top_fraction: share of the anomaly map averaged into the image score, in [0, 1).
    """

    def __init__(self, base_width: int = 16, score_top_fraction: float = 0.001) -> None:
        super().__init__()
        self.network = DiscriminativeSubNetwork(in_channels=3, out_channels=1, base_width=base_width)
        self.score_top_fraction = score_top_fraction

    def forward(self, images: torch.Tensor) -> torch.Tensor | InferenceBatch:
        height, width = images.shape[-2:]
        if height % SIZE_MULTIPLE or width % SIZE_MULTIPLE:
            raise InvalidInputError(
                f"DefectSegmenter needs input sides that are multiples of {SIZE_MULTIPLE}, got {height}x{width}",
                fix="resize to e.g. 128x128 or 256x256 (DefectSegmenter.configure_pre_processor(image_size))",
            )
        logits = self.network(images)
        if self.training:
            return logits
        anomaly_map = torch.sigmoid(logits).squeeze(1)
        return InferenceBatch(pred_score=self.image_score(anomaly_map), anomaly_map=anomaly_map)

    def image_score(self, anomaly_map: torch.Tensor) -> torch.Tensor:
        """Mean of the top ``score_top_fraction`` pixels per image: as sharp as the max, less noisy."""
        flat = anomaly_map.flatten(1)
        k = max(1, math.ceil(flat.shape[1] * self.score_top_fraction))
        return flat.topk(k, dim=1).values.mean(dim=1)


class DefectSegmenter(AnomalibModule):
    """Supervised defect segmentation trained on normals and (synthetic) anomalies with masks.

    Loss: sigmoid focal loss (hard pixels dominate, not the easy background) plus a soft Dice
    term over the batch (keeps small defects from being drowned by the normal area).

    Args:
        base_width: channels of the U-Net's first level (doubles down to 8x).
        learning_rate: Adam learning rate.
        weight_decay: Adam weight decay.
        focal_gamma: focusing exponent of the focal loss (0 gives plain BCE).
        dice_weight: weight of the Dice term relative to the focal term (0 disables it).
        score_top_fraction: share of the highest anomaly-map pixels averaged into the image score
            (0 uses the maximum).
        pre_processor: anomalib pre-processor, or True for ``Resize(256, 256)`` (no ImageNet
            normalisation: the network is trained from scratch).
        post_processor: anomalib post-processor, or True for thresholds without normalisation.
        evaluator: anomalib evaluator, or True for anomalib's default metrics.
        visualizer: anomalib visualizer, or True for the default one.

    Example:
        >>> model = DefectSegmenter(pre_processor=DefectSegmenter.configure_pre_processor((128, 128)))
        >>> Engine(max_epochs=10).fit(model, datamodule=SyntheticAnomalyDataModule(folder, generator))
    """

    def __init__(
        self,
        base_width: int = 16,
        learning_rate: float = 1e-3,
        weight_decay: float = 1e-5,
        focal_gamma: float = 2.0,
        dice_weight: float = 1.0,
        score_top_fraction: float = 0.001,
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        _check_args(base_width, learning_rate, focal_gamma, dice_weight, score_top_fraction)
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        self.model = SegmenterModel(base_width=base_width, score_top_fraction=score_top_fraction)
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.focal_gamma = focal_gamma
        self.dice_weight = dice_weight

    # ----------------------------------------------------------------- training
    def compute_loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Focal loss plus ``dice_weight`` times the soft Dice loss, for logits and float masks ``[B, 1, H, W]``."""
        focal = sigmoid_focal_loss(logits, target, alpha=-1, gamma=self.focal_gamma, reduction="mean")
        if self.dice_weight == 0:
            return focal
        probabilities = torch.sigmoid(logits)
        # Over the whole batch, so all-normal images (empty masks) still count as false positives.
        overlap = (probabilities * target).sum()
        dice = 1 - (2 * overlap + 1) / (probabilities.sum() + target.sum() + 1)
        return focal + self.dice_weight * dice

    def training_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        del args, kwargs  # unused
        if batch.gt_mask is None:
            raise InvalidInputError(
                "DefectSegmenter got a training batch without gt_mask; it learns from pixel masks",
                fix="wrap the datamodule in SyntheticAnomalyDataModule (it adds masks to every training item)",
            )
        target = batch.gt_mask.reshape(batch.image.shape[0], 1, *batch.image.shape[-2:]).float()
        loss = self.compute_loss(self.model(batch.image), target)
        self.log("train_loss", loss.detach(), on_epoch=True, prog_bar=True, logger=True, batch_size=len(target))
        return {"loss": loss}

    def validation_step(self, batch: Batch, *args, **kwargs) -> STEP_OUTPUT:
        del args, kwargs  # unused
        predictions = self.model(batch.image)
        return batch.update(**predictions._asdict())

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.model.parameters(), lr=self.learning_rate, weight_decay=self.weight_decay)

    # ---------------------------------------------------------- anomalib hooks
    @property
    def learning_type(self) -> LearningType:
        """``ONE_CLASS``, as anomalib's supervised SuperSimpleNet reports.

        anomalib 2.7's ``LearningType`` has no supervised member (only one-class, zero-shot and
        few-shot); the type only decides whether the ``Engine`` validates before testing and how
        checkpoints are saved, and for a model trained by gradient steps one-class rules are right.
        """
        return LearningType.ONE_CLASS

    @property
    def trainer_arguments(self) -> dict[str, Any]:
        return {"num_sanity_val_steps": 0}

    @classmethod
    def configure_pre_processor(cls, image_size: tuple[int, int] | None = None) -> PreProcessor:
        """Resize only: ImageNet statistics mean nothing to a network trained from scratch."""
        return PreProcessor(transform=Compose([Resize(image_size or (256, 256), antialias=True)]))

    def configure_post_processor(self) -> PostProcessor:
        """Thresholds from the validation set applied to the raw probabilities (``RawScorePostProcessor``).

        The anomaly map is already a probability; anomalib's normalisation would clamp test scores
        outside the validation range to 0 or 1, and the resulting ties distort AUROC.
        """
        return RawScorePostProcessor()


def _check_args(
    base_width: int, learning_rate: float, focal_gamma: float, dice_weight: float, score_top_fraction: float
) -> None:
    """Fail at construction, naming the parameter, rather than in the first training step."""
    if base_width < 1:
        raise InvalidInputError(f"base_width must be >= 1, got {base_width}", fix="use e.g. 16")
    if learning_rate <= 0:
        raise InvalidInputError(f"learning_rate must be > 0, got {learning_rate}", fix="use e.g. 1e-3")
    if focal_gamma < 0:
        raise InvalidInputError(f"focal_gamma must be >= 0, got {focal_gamma}", fix="use 2.0 (0 is plain BCE)")
    if dice_weight < 0:
        raise InvalidInputError(f"dice_weight must be >= 0, got {dice_weight}", fix="use 1.0, or 0 to disable Dice")
    if not 0.0 <= score_top_fraction < 1.0:
        raise InvalidInputError(
            f"score_top_fraction must be in [0, 1), got {score_top_fraction}",
            fix="use e.g. 0.001 (mean of the top 0.1% pixels), or 0 for the maximum",
        )


__all__ = ["DefectSegmenter", "SegmenterModel"]

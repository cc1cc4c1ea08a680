"""Training on the real shots themselves, with no synthesis: the first baseline anyone tries.

With a few dozen labelled defects, the obvious thing to do is to train the supervised detector on
them directly, next to the normals, with flips, right-angle rotations and intensity jitter.
``ShotsTrainDataset`` does exactly that: the same seeded per-epoch choice of which items are
anomalous as ``SyntheticAnomalyDataset``, but a chosen item becomes an augmented real shot (its own
image and mask) instead of a normal with a generated defect. A synthetic method is worth its cost
only if it beats this.

``ShotMixedDataset`` is the product's use of both: generated defects *and* the shots, a share
``shot_share`` of the anomalous items being augmented shots. The shots are the only defects known
to be right; generation adds the positions, shapes and backgrounds they lack.

Example:
    >>> SyntheticAnomalyDataModule(folder, generator=RealShotPasteGenerator(), mode="shots")
    ... # trains on the shots; the generator only makes the synthetic validation set
    >>> SyntheticAnomalyDataModule(folder, generator=diffusion, mode="cached", cache_dir="pool", shot_share=0.5)
    ... # half of the anomalous items are real shots, half generated defects
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from torchvision import tv_tensors
from torchvision.transforms.v2 import Transform

from anomaly_synth_aug.data.datamodule_options import check_shot_share_range
from anomaly_synth_aug.data.dataset import SyntheticAnomalyDataset
from anomaly_synth_aug.data.io import MASK_THRESHOLD
from anomaly_synth_aug.data.sample import ANOMALOUS_LABEL, AnomalySample
from anomaly_synth_aug.data.transforms import shot_augmentations
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.utils.random import mixed_seed, seeded_global_rng

if TYPE_CHECKING:
    from anomalib.data.datasets.base.image import AnomalibDataset

    from anomaly_synth_aug.generators.base import AnomalyGenerator


class ShotsTrainDataset(SyntheticAnomalyDataset):
    """Training normals of which a share ``anomaly_ratio`` are swapped for augmented real shots.

    Args:
        dataset: the wrapped anomalib training set (its normals).
        shots: the real defects with binarised masks (``SyntheticAnomalyDataModule.load_shots()``).
        generator: kept for provenance (never called: nothing is synthesised).
        shot_transform: applied to each drawn shot (image and mask together) before the dataset's
            ``augmentations``; default ``shot_augmentations()``.
        anomaly_ratio, seed, augmentations, mask_threshold: as for ``SyntheticAnomalyDataset``.
    """

    #: Separates the "which shot, which augmentation" draw from the "is this item anomalous" draw.
    pick_stream: ClassVar[int] = 11

    def __init__(
        self,
        dataset: AnomalibDataset,
        shots: Sequence[AnomalySample],
        generator: AnomalyGenerator,
        *,
        shot_transform: Transform | None = None,
        anomaly_ratio: float = 0.5,
        seed: int = 0,
        augmentations: Transform | None = None,
        mask_threshold: int = MASK_THRESHOLD,
    ) -> None:
        super().__init__(
            dataset,
            generator,
            anomaly_ratio=anomaly_ratio,
            seed=seed,
            augmentations=augmentations,
            mask_threshold=mask_threshold,
        )
        self.shots = [shot for shot in shots if bool(shot.mask.any())]
        if not self.shots:
            raise InvalidInputError(
                "no shot with a non-empty mask to train on",
                fix="check the ground_truth masks of the shots (pixels > mask_threshold mark the defect)",
            )
        self.shot_transform = shot_transform if shot_transform is not None else shot_augmentations()

    def shot_sample(self, index: int) -> AnomalySample:
        """The augmented real shot that stands in for item ``index`` this epoch (a function of seed, epoch, index)."""
        rng = np.random.default_rng([self.seed, self.stream, self.epoch, int(index), self.pick_stream])
        shot = self.shots[int(rng.integers(len(self.shots)))]
        augmentation_seed = torch.Generator().manual_seed(
            mixed_seed(self.seed, self.epoch, int(index), self.pick_stream)
        )
        with seeded_global_rng(augmentation_seed):  # torchvision draws from the global RNG
            image, mask = self.shot_transform(tv_tensors.Image(shot.image), tv_tensors.Mask(shot.mask))
        return AnomalySample(
            image=image.as_subclass(torch.Tensor).clamp(0, 1),
            mask=mask.as_subclass(torch.Tensor),
            label=ANOMALOUS_LABEL,
            defect_type=shot.defect_type,
            image_path=shot.image_path,
        )

    def _samples_with_anomalies(self, indices: list[int]) -> list[AnomalySample]:
        return [self.shot_sample(index) if self.is_synthetic(index) else self.read_sample(index) for index in indices]


class ShotMixedDataset(SyntheticAnomalyDataset):
    """Generated defects and the real shots together: a share ``shot_share`` of the anomalous items are shots.

    Which items are anomalous is ``generated``'s choice; of those, a seeded draw per (epoch, item)
    decides whether the item is an augmented shot (``ShotsTrainDataset.shot_sample``) or ``generated``'s
    own defect (online or cached). ``shot_share=0`` is ``generated`` itself, ``1`` is ``ShotsTrainDataset``.

    Args:
        generated: the online or cached training set whose defects the shots are mixed with.
        shots: the real defects with binarised masks (``SyntheticAnomalyDataModule.load_shots()``).
        shot_share: share of the anomalous items that are shots, in [0, 1].
        shot_transform: as for ``ShotsTrainDataset``.
    """

    #: Separates the "shot or generated" draw from the other draws of the same item.
    mix_stream: ClassVar[int] = 13

    def __init__(
        self,
        generated: SyntheticAnomalyDataset,
        shots: Sequence[AnomalySample],
        *,
        shot_share: float = 0.5,
        shot_transform: Transform | None = None,
    ) -> None:
        check_shot_share_range(shot_share)
        super().__init__(
            generated.dataset,
            generated.generator,
            anomaly_ratio=generated.anomaly_ratio,
            seed=generated.seed,
            augmentations=generated.augmentations,
            mask_threshold=generated.mask_threshold,
        )
        if not any(bool(shot.mask.any()) for shot in shots):
            raise InvalidInputError(
                f"shot_share={shot_share} mixes in the real shots, but no shot has a non-empty mask",
                fix="check the shots' ground_truth masks (pixels > mask_threshold mark the defect), or drop shot_share",
            )
        self.generated = generated
        self.shot_share = shot_share
        self.shot_source = ShotsTrainDataset(
            generated.dataset,
            shots,
            generated.generator,
            shot_transform=shot_transform,
            anomaly_ratio=generated.anomaly_ratio,
            seed=generated.seed,
            mask_threshold=generated.mask_threshold,
        )

    def set_epoch(self, epoch: int) -> None:
        super().set_epoch(epoch)
        self.generated.set_epoch(epoch)
        self.shot_source.set_epoch(epoch)

    def is_synthetic(self, index: int) -> bool:
        return self.generated.is_synthetic(index)

    def is_shot(self, index: int) -> bool:
        """Whether item ``index`` is an augmented real shot this epoch (a pure function of seed, epoch, index)."""
        if not self.is_synthetic(index):
            return False
        draw = np.random.default_rng([self.seed, self.stream, self.epoch, int(index), self.mix_stream]).random()
        return bool(draw < self.shot_share)

    def _samples_with_anomalies(self, indices: list[int]) -> list[AnomalySample]:
        from_shots = [self.is_shot(index) for index in indices]
        generated = [index for index, shot in zip(indices, from_shots, strict=True) if not shot]
        rest = iter(self.generated._samples_with_anomalies(generated))
        return [
            self.shot_source.shot_sample(index) if shot else next(rest)
            for index, shot in zip(indices, from_shots, strict=True)
        ]

"""Dataset wrappers that put synthetic defects and binarised masks into anomalib's data path.

All three wrappers sit on top of an anomalib dataset (its ``samples`` dataframe is the
source of truth for paths and labels) and share one loading path:

1. ``read_sample``: the raw image at its *native* resolution (and, for real anomalies,
   its mask binarised at ``MASK_THRESHOLD`` instead of anomalib's "any non-zero pixel");
2. for training/validation, optionally a generator call on the native image, so defects
   are synthesised at full detail before any resizing;
3. ``to_augmented_item``: the dataset's ``augmentations`` (torchvision v2, image and mask
   together, the way anomalib applies them, including the model ``Resize`` that
   ``AnomalibDataModule._update_augmentations`` appends) and conversion to ``ImageItem``.

``__getitems__`` lets the DataLoader fetch a whole batch at once so the generator is
called once per batch, inside the worker processes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from anomalib import TaskType
from anomalib.data import ImageBatch, ImageItem
from anomalib.data.utils import LabelName
from torch.utils.data import Dataset
from torchvision.transforms.v2 import Transform
from torchvision.tv_tensors import Image, Mask

from anomaly_synth_aug.data.io import MASK_THRESHOLD, load_image, load_sample
from anomaly_synth_aug.data.sample import ANOMALOUS_LABEL, AnomalySample
from anomaly_synth_aug.data.samplers import EpochRandomSampler  # moved to samplers; still importable from here
from anomaly_synth_aug.errors import InvalidInputError, MaskError
from anomaly_synth_aug.utils.random import mixed_seed

if TYPE_CHECKING:
    from anomalib.data.datasets.base.image import AnomalibDataset
    from pandas import DataFrame

    from anomaly_synth_aug.generators.base import AnomalyGenerator

#: Share of the synthetic validation set that carries a generated defect.
VAL_ANOMALY_FRACTION = 0.5


def row_mask_path(row: Any) -> str | None:
    """The mask path of a samples-dataframe row, or None when the row has none ("" or NaN)."""
    mask_path = getattr(row, "mask_path", None)
    return mask_path if isinstance(mask_path, str) and mask_path not in ("", "nan") else None


def read_sample(row: Any, *, mask_threshold: int = MASK_THRESHOLD) -> AnomalySample:
    """Read one samples-dataframe row at native resolution; anomalies get their binarised mask.

    The defect type of a real anomaly is its parent folder name (``test/<type>/x.png``), which
    holds for MVTec-style datasets and for ``Folder`` with one folder per type.
    """
    image_path = str(row.image_path)
    if int(row.label_index) != ANOMALOUS_LABEL:
        return AnomalySample.normal(load_image(image_path), image_path=image_path)
    mask_path = row_mask_path(row)
    if mask_path is None:
        raise MaskError(
            "anomalous image has no mask",
            path=image_path,
            fix="give the datamodule a mask folder (e.g. Folder(mask_dir=...)) or evaluate without pixel masks",
        )
    return load_sample(image_path, mask_path, Path(image_path).parent.name, threshold=mask_threshold)


def to_augmented_item(sample: AnomalySample, augmentations: Transform | None) -> ImageItem:
    """Convert to ``ImageItem`` after applying ``augmentations`` to image and mask together."""
    item = sample.to_image_item()
    if augmentations is None:
        return item
    image, mask = augmentations(Image(item.image), Mask(item.gt_mask))
    return item.update(image=image, gt_mask=mask)


class AnomalibDatasetWrapper(Dataset[ImageItem]):
    """Base wrapper: reads rows of a wrapped anomalib dataset through the shared loading path.

    ``augmentations`` is a plain attribute so ``AnomalibDataModule._update_augmentations`` can set
    it (with the model's ``Resize`` appended) exactly as it does on anomalib's own datasets.
    """

    def __init__(
        self,
        dataset: AnomalibDataset,
        *,
        augmentations: Transform | None = None,
        mask_threshold: int = MASK_THRESHOLD,
    ) -> None:
        super().__init__()
        self.dataset = dataset
        self.augmentations = augmentations
        self.mask_threshold = mask_threshold

    @property
    def samples(self) -> DataFrame:
        return self.dataset.samples

    @property
    def name(self) -> str:
        return self.dataset.name

    @property
    def category(self) -> str | None:
        return self.dataset.category

    @property
    def task(self) -> TaskType:
        return self.dataset.task

    @property
    def collate_fn(self) -> Callable[[list[ImageItem]], ImageBatch]:
        return ImageBatch.collate

    def image_paths(self) -> list[str]:
        return [str(p) for p in self.samples.image_path]

    def __len__(self) -> int:
        return len(self.samples)

    def read_sample(self, index: int) -> AnomalySample:
        return read_sample(self.samples.iloc[index], mask_threshold=self.mask_threshold)

    def __getitem__(self, index: int) -> ImageItem:
        return self.__getitems__([index])[0]

    def __getitems__(self, indices: Sequence[int]) -> list[ImageItem]:
        return [to_augmented_item(self.read_sample(index), self.augmentations) for index in indices]


class EvaluationDataset(AnomalibDatasetWrapper):
    """Real test/validation images, read as the training images are, with masks binarised at ``mask_threshold``.

    anomalib's ``read_mask`` marks every non-zero pixel as defect, which inflates soft,
    anti-aliased masks (e.g. Magnetic Tile); this wrapper re-reads them with ``load_mask``.
    A mask whose size differs from its image raises ``MaskError`` naming the mask file.
    With ``masks=False`` (a classification dataset: no masks to read) items carry no mask, as
    anomalib's own, but their images still come from ``load_image``: anomalib's reader clips
    16-bit images to white, which the detector, trained on scaled ones, would never have seen.

    Example:
        >>> test_data = EvaluationDataset(folder.test_data, masks=folder.test_data.task != "classification")
    """

    def __init__(
        self,
        dataset: AnomalibDataset,
        *,
        augmentations: Transform | None = None,
        mask_threshold: int = MASK_THRESHOLD,
        masks: bool = True,
    ) -> None:
        super().__init__(dataset, augmentations=augmentations, mask_threshold=mask_threshold)
        self.masks = masks

    @property
    def task(self) -> TaskType:
        return TaskType.SEGMENTATION if self.masks else TaskType.CLASSIFICATION

    def __getitems__(self, indices: Sequence[int]) -> list[ImageItem]:
        if self.masks:
            return super().__getitems__(indices)
        return [self._item_without_mask(self.samples.iloc[index]) for index in indices]

    def _item_without_mask(self, row: Any) -> ImageItem:
        image = Image(load_image(row.image_path))
        if self.augmentations is not None:
            image = self.augmentations(image)  # the image alone, as anomalib does for classification
        label = int(row.label_index)
        gt_label = None if label == LabelName.UNKNOWN else torch.tensor(label)  # unlabelled, as anomalib reads it
        return ImageItem(image=image, gt_label=gt_label, image_path=str(row.image_path))


class SyntheticAnomalyDataset(AnomalibDatasetWrapper):
    """Training normals of which a share ``anomaly_ratio`` become synthetic anomalies, online.

    Which items are turned anomalous is a pure function of ``(seed, epoch, index)``, so a run is
    reproducible and each epoch draws a fresh selection (``set_epoch``; Lightning reaches it through
    the training samplers of ``samplers``). Each generated defect has its own seed, mixed from ``seed``, the
    epoch and the item's index, so the datamodule's ``seed`` fixes every defect whatever the global RNG
    (which orders the batches) does. Synthetic items keep the source normal's ``image_path``; their
    ``mask_path`` is None.
    """

    #: Separates the random streams of subclasses that share a seed.
    stream: ClassVar[int] = 0

    def __init__(
        self,
        dataset: AnomalibDataset,
        generator: AnomalyGenerator,
        *,
        anomaly_ratio: float = 0.5,
        seed: int = 0,
        augmentations: Transform | None = None,
        mask_threshold: int = MASK_THRESHOLD,
    ) -> None:
        super().__init__(dataset, augmentations=augmentations, mask_threshold=mask_threshold)
        if not 0.0 <= anomaly_ratio <= 1.0:
            raise InvalidInputError(
                f"anomaly_ratio must be in [0, 1], got {anomaly_ratio}",
                fix="use e.g. 0.5 to turn half of the training normals into synthetic anomalies",
            )
        if seed < 0:
            raise InvalidInputError(f"seed must be >= 0, got {seed}", fix="pass a non-negative integer seed")
        self.generator = generator
        self.anomaly_ratio = anomaly_ratio
        self.seed = seed
        self.epoch = 0

    @property
    def task(self) -> TaskType:
        return TaskType.SEGMENTATION  # every item carries a mask

    def set_epoch(self, epoch: int) -> None:
        """Select a new (reproducible) set of items to turn anomalous."""
        self.epoch = int(epoch)

    def is_synthetic(self, index: int) -> bool:
        """Whether item ``index`` gets a generated defect in the current epoch."""
        if int(self.samples.iloc[index].label_index) == ANOMALOUS_LABEL:
            return False  # real anomalies in a training set keep their own mask
        draw = np.random.default_rng([self.seed, self.stream, self.epoch, int(index)]).random()
        return bool(draw < self.anomaly_ratio)

    def __getitems__(self, indices: Sequence[int]) -> list[ImageItem]:
        samples = self._samples_with_anomalies(list(indices))
        return [to_augmented_item(sample, self.augmentations) for sample in samples]

    def _samples_with_anomalies(self, indices: list[int]) -> list[AnomalySample]:
        """Read the batch at native resolution and generate all its defects in one generator call."""
        samples = [self.read_sample(index) for index in indices]
        chosen = [position for position, index in enumerate(indices) if self.is_synthetic(index)]
        if not chosen:
            return samples
        # One stream per item, from (seed, epoch, index) alone: a defect does not depend on which other
        # items the (globally seeded) sampler put in its batch.
        streams = [
            torch.Generator().manual_seed(mixed_seed(self.seed, self.stream, self.epoch, indices[p])) for p in chosen
        ]
        generated = self.generator.generate([samples[p].image for p in chosen], generator=streams)
        for position, image, mask, defect_type in zip(
            chosen, generated.images, generated.masks, generated.defect_types, strict=True
        ):
            samples[position] = AnomalySample(
                image=image,
                mask=mask,
                label=ANOMALOUS_LABEL,
                defect_type=defect_type,
                image_path=samples[position].image_path,
            )
        return samples


class SyntheticValidationDataset(SyntheticAnomalyDataset):
    """Held-back training normals with *fixed* synthetic anomalies, for checkpoint and threshold selection.

    Exactly ``round(len * anomaly_ratio)`` items (a seeded choice, half by default) carry a defect,
    the same ones every epoch; generated items are memoised (as uint8) so a slow generator runs
    once per item per process. Validation therefore never needs real test images.
    """

    stream: ClassVar[int] = 1

    def __init__(
        self,
        dataset: AnomalibDataset,
        generator: AnomalyGenerator,
        *,
        anomaly_ratio: float = VAL_ANOMALY_FRACTION,
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
        order = torch.randperm(len(self), generator=torch.Generator().manual_seed(mixed_seed(seed, self.stream)))
        self._anomalous = set(order[: round(len(self) * anomaly_ratio)].tolist())
        self._generated: dict[int, tuple[torch.Tensor, torch.Tensor, str]] = {}

    def set_epoch(self, epoch: int) -> None:
        """No-op: validation anomalies are fixed for the whole run."""

    def is_synthetic(self, index: int) -> bool:
        return index in self._anomalous

    def _samples_with_anomalies(self, indices: list[int]) -> list[AnomalySample]:
        missing = [index for index in indices if self.is_synthetic(index) and index not in self._generated]
        if missing:
            for index, sample in zip(missing, super()._samples_with_anomalies(missing), strict=True):
                image_uint8 = (sample.image * 255).round().to(torch.uint8)
                self._generated[index] = (image_uint8, sample.mask, sample.defect_type)
        samples = []
        for index in indices:
            if index not in self._generated:
                samples.append(self.read_sample(index))
                continue
            image, mask, defect_type = self._generated[index]
            source = str(self.samples.iloc[index].image_path)
            samples.append(AnomalySample(image=image, mask=mask, defect_type=defect_type, image_path=source))
        return samples


__all__ = [
    "AnomalibDatasetWrapper",
    "EpochRandomSampler",
    "EvaluationDataset",
    "SyntheticAnomalyDataset",
    "SyntheticValidationDataset",
    "read_sample",
    "row_mask_path",
    "to_augmented_item",
]

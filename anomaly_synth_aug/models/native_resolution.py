"""Score fixed-input detectors (PaDiM, PatchCore) at the images' native resolution.

anomalib's ``PreProcessor`` resizes image *and* ground-truth mask, so pixel metrics end up
computed at the model's input size (for magnetic tile, a squashed 256 x 256). The fully
convolutional segmenter here predicts on whole images at native resolution instead. To compare
like with like, ``NativeResolutionPreProcessor`` resizes only the image for the model and, after
the model has run, resizes the anomaly map back to the mask's native size (bilinear), so every
detector is scored against the same native-resolution masks.

It is the first of a model's callbacks, so the post-processor (thresholds) and the evaluator
(metrics) see native-resolution maps.

Example:
    >>> from anomalib.models import Padim
    >>> model = Padim(backbone=offline_backbone(), layers=["blocks.2", "blocks.4"], n_features=100,
    ...               pre_processor=NativeResolutionPreProcessor((256, 256)))
"""

from __future__ import annotations

from typing import Any

import torch
from anomalib.data import Batch
from anomalib.pre_processing import PreProcessor
from anomalib.pre_processing.utils.spec import transform_to_spec
from anomalib.pre_processing.utils.transform import get_exportable_transform
from lightning.pytorch import LightningModule, Trainer
from torchvision.transforms.v2 import Compose, Normalize, Resize
from torchvision.transforms.v2 import functional as F

from anomaly_synth_aug.backbones.imagenet_weights import IMAGENET_MEAN, IMAGENET_STD

#: Batch attribute holding the native image size while the model sees the resized image.
_NATIVE_SIZE = "_native_size"

#: Checkpoint config entry with this pre-processor's own settings (plain data, weights_only-safe).
_CHECKPOINT_KEY = "native_resolution"


def _normalization(imagenet: bool) -> Compose | None:
    return Compose([Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)]) if imagenet else None


def resize_maps(anomaly_map: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Anomaly maps of any leading shape (``[..., h, w]``) resized bilinearly to ``size``, as evaluation scores them."""
    flat = anomaly_map.reshape(-1, 1, *anomaly_map.shape[-2:]).float()
    resized = torch.nn.functional.interpolate(flat, size=tuple(size), mode="bilinear", align_corners=False)
    return resized.reshape(*anomaly_map.shape[:-2], *size)


class NativeResolutionPreProcessor(PreProcessor):
    """Resize the image (only) to ``image_size`` for the model; anomaly maps go back to native size.

    Its ``transform`` (what follows the resize) is ImageNet normalisation or nothing. It contains no
    ``Resize``, so anomalib does not append one to the datasets' augmentations, and the masks stay
    native. Training batches must already have one size (give the training set a ``Resize``
    augmentation); they are only normalised here.

    Args:
        image_size: the model's input size (height, width).
        imagenet_normalization: normalise with ImageNet statistics after the resize (pretrained
            backbones); False for networks trained from scratch on [0, 1] images (DRÆM).
    """

    def __init__(self, image_size: tuple[int, int], imagenet_normalization: bool = True) -> None:
        super().__init__(transform=_normalization(imagenet_normalization))
        self.image_size = tuple(image_size)
        self.imagenet_normalization = imagenet_normalization

    # ------------------------------------------------------------ checkpoints
    def checkpoint_config(self) -> dict[str, Any]:
        """The resize and the normalisation as one transform, plus this pre-processor's own settings.

        ``load_from_checkpoint`` rebuilds the model's default ``PreProcessor`` and hands it this
        config: with the ``Resize`` in its transform it still feeds the model its input size (scoring
        at that size). Pass ``pre_processor=NativeResolutionPreProcessor(...)`` to ``load_from_checkpoint``
        to score at native resolution again; it takes its size back from here.
        """
        resize = Resize(list(self.image_size), antialias=True)
        steps = [resize, *([] if self.transform is None else [self.transform])]
        settings = {"image_size": list(self.image_size), "imagenet_normalization": self.imagenet_normalization}
        return {"transform": transform_to_spec(Compose(steps)), _CHECKPOINT_KEY: settings}

    def load_checkpoint_config(self, config: dict[str, Any]) -> None:
        settings = config.get(_CHECKPOINT_KEY)
        if settings is None:  # a plain PreProcessor's config (or an older one): its transform as it is
            super().load_checkpoint_config(config)
            return
        self.image_size = tuple(settings["image_size"])
        self.imagenet_normalization = bool(settings["imagenet_normalization"])
        self.transform = _normalization(self.imagenet_normalization)
        self.export_transform = get_exportable_transform(self.transform)

    def _to_model_input(self, batch: Batch) -> None:
        native = tuple(batch.image.shape[-2:])
        if native != self.image_size:
            setattr(batch, _NATIVE_SIZE, native)
            batch.image = F.resize(batch.image, list(self.image_size), antialias=True)
        if self.transform:
            batch.image = self.transform(batch.image)

    @staticmethod
    def _to_native(outputs: Any) -> None:
        native = getattr(outputs, _NATIVE_SIZE, None)
        anomaly_map = getattr(outputs, "anomaly_map", None)
        if native is None or anomaly_map is None:
            return
        outputs.anomaly_map = resize_maps(anomaly_map, native)

    # ------------------------------------------------------------ Lightning hooks
    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch: Batch, batch_idx: int) -> None:
        del trainer, pl_module, batch_idx  # unused
        if self.transform:
            batch.image = self.transform(batch.image)

    def on_validation_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        del trainer, pl_module, batch_idx, dataloader_idx  # unused
        self._to_model_input(batch)

    def on_test_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        del trainer, pl_module, batch_idx, dataloader_idx  # unused
        self._to_model_input(batch)

    def on_predict_batch_start(
        self, trainer: Trainer, pl_module: LightningModule, batch: Batch, batch_idx: int, dataloader_idx: int = 0
    ) -> None:
        del trainer, pl_module, batch_idx, dataloader_idx  # unused
        self._to_model_input(batch)

    def on_validation_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        del trainer, pl_module, batch, batch_idx, dataloader_idx  # unused
        self._to_native(outputs)

    def on_test_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        del trainer, pl_module, batch, batch_idx, dataloader_idx  # unused
        self._to_native(outputs)

    def on_predict_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        outputs: Any,
        batch: Batch,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        del trainer, pl_module, batch, batch_idx, dataloader_idx  # unused
        self._to_native(outputs)

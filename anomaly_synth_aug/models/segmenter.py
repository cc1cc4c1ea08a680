"""``DefectSegmenter``: a supervised U-Net that learns defects from masks, at native resolution.

The practitioner's detector for the synthetic-defect workflow: train it on normals plus
generated anomalies (``SyntheticAnomalyDataModule`` puts a pixel mask in every training
item) and it predicts a per-pixel anomaly map and an image score. The network (``segmenter_network.py``):

* ``encoder="efficientnet_lite0"`` (the default): a ``segmentation_models_pytorch`` U-Net decoder
  over an EfficientNet-Lite0 encoder with ImageNet weights that install offline
  (``anomaly_synth_aug.backbones``); the stem and first stages stay frozen, so a few hundred
  steps adapt the rest. Its decoder also sees PatchCore's distance to the nearest normal patch
  (``normal_memory``), built from the whole training normals before the first step, so a defect
  unlike any training defect still stands out as unlike any normal surface;
* ``encoder=None``: DRÆM's discriminative U-Net (``DiscriminativeSubNetwork``, from anomalib),
  trained from scratch, kept as an option and as an ablation.

With the normal memory (the default with an encoder), PatchCore's verdict stays in the final map and score
as well (``normal_prior``, ``NormalPrior``): the logit's and the memory distance's standard scores on the
validation set's *normal* images, added per pixel for the map and per image (each detector's own image
score) for the image score. A defect unlike every training defect then still scores as far from normal as
it is. ``normal_prior=False`` predicts the decoder's defect probability instead.

All are fully convolutional: any input is padded at the bottom and right to a multiple of 32 and
the prediction cropped back, so it trains on crops and predicts on whole images of any size.

It is an ``AnomalibModule``, so anomalib's ``Engine``, ``PreProcessor``, ``PostProcessor``
(thresholds picked on the validation set) and ``Evaluator`` (metrics) all apply unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from enum import StrEnum
from typing import Any

import torch
from anomalib import LearningType
from anomalib.data import Batch
from anomalib.metrics import Evaluator
from anomalib.models.components import AnomalibModule
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import ImageVisualizer, Visualizer
from lightning.pytorch.utilities.types import STEP_OUTPUT
from torchvision.ops import sigmoid_focal_loss
from torchvision.transforms.v2 import Compose, Normalize, Resize
from tqdm.auto import tqdm

from anomaly_synth_aug.backbones.imagenet_weights import IMAGENET_MEAN, IMAGENET_STD
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.models.loader_passes import as_loader_list, batch_count, has_batches, private_loader
from anomaly_synth_aug.models.normal_memory import NormalPatchMemory
from anomaly_synth_aug.models.post_processing import RawScorePostProcessor
from anomaly_synth_aug.models.segmenter_network import SegmenterModel, resolve_memory_and_prior
from anomaly_synth_aug.utils.choices import parse_choice

logger = logging.getLogger(__name__)

#: Passes over the training loader that filling the normal memory from crops may take (each draws new crops).
MAX_MEMORY_PASSES = 8
#: Normal crops the memory is built from when it reads crops and ``memory_images`` is None.
DEFAULT_MEMORY_CROPS = 512


class MemorySource(StrEnum):
    """Where ``DefectSegmenter``'s normal memory takes its normal images from."""

    #: the datamodule's training normals, whole (``normal_dataloader()``), as PatchCore builds its memory
    normals = "normals"
    #: normal crops of the training loader (the earlier default; also the fallback without ``normal_dataloader``)
    training_crops = "training_crops"


class DefectSegmenter(AnomalibModule):
    """Supervised defect segmentation trained on normals and (synthetic) anomalies with masks.

    Loss: sigmoid focal loss (hard pixels dominate, not the easy background) plus a soft Dice
    term over the batch (keeps small defects from being drowned by the normal area).

    Args:
        encoder: timm name of the pretrained encoder (offline ImageNet weights), or None for DRÆM's
            U-Net trained from scratch.
        pretrained: load the encoder's ImageNet weights (False: random initialisation).
        frozen_stages: encoder stages kept fixed: the stem and the first ``frozen_stages`` blocks.
        decoder_channels: widths of the U-Net decoder's five stages (pretrained encoder).
        base_width: channels of the from-scratch U-Net's first level (``encoder=None``).
        learning_rate: AdamW learning rate of the decoder (and of the whole from-scratch U-Net).
        encoder_lr_scale: the encoder's learning rate relative to ``learning_rate``: pretrained
            features need smaller steps than a freshly initialised decoder.
        weight_decay: AdamW weight decay.
        focal_gamma: focusing exponent of the focal loss (0 gives plain BCE).
        dice_weight: weight of the Dice term relative to the focal term (0 disables it).
        score_top_fraction: share of the highest anomaly-map pixels averaged into the image score
            (0 uses the maximum).
        normal_memory: give the decoder PatchCore's distance to the nearest normal patch, built from
            the training normals when training starts (``memory_source``). None: on with an encoder, off
            for the from-scratch U-Net.
        memory_source: ``"normals"``: the datamodule's training normals, whole (its ``normal_dataloader()``;
            ``SyntheticAnomalyDataModule`` has one), as PatchCore builds its memory; ``"training_crops"``:
            normal crops of the training loader, whose features near a crop's border differ from the same
            surface inside a whole image (the fallback when the datamodule has no ``normal_dataloader``).
        memory_images: at most this many images go into the memory (None: every training normal;
            ``DEFAULT_MEMORY_CROPS`` crops). Crops are drawn over several passes of the training loader
            when one pass holds fewer normals, up to ``MAX_MEMORY_PASSES``.
        memory_size: patches kept in the memory (a greedy k-center coreset of the collected ones).
        normal_prior: predict the sum of the logit's and the memory distance's standard scores
            (``NormalPrior``; per pixel for the map, per image for the score) instead of the defect
            probability, measured on the validation normals at every validation (or, without a
            validation set, on training normals). None: on whenever the normal memory is (the default);
            False keeps the decoder's defect probability as the output.
        pre_processor: anomalib pre-processor, or True for ImageNet normalisation at native resolution
            (no resize; none at all for the from-scratch U-Net).
        post_processor: anomalib post-processor, or True for thresholds without normalisation.
        evaluator: anomalib evaluator, or True for anomalib's default metrics.
        visualizer: anomalib visualizer, or True for the default one.

    Example:
        >>> from anomaly_synth_aug.data.transforms import native_crop_augmentations
        >>> folder = Folder(..., train_augmentations=native_crop_augmentations(256), eval_batch_size=1)
        >>> model = DefectSegmenter()  # pretrained EfficientNet-Lite0 U-Net, whole images at test time
        >>> Engine(max_steps=600).fit(model, datamodule=SyntheticAnomalyDataModule(folder, generator))
    """

    def __init__(
        self,
        encoder: str | None = "efficientnet_lite0",
        pretrained: bool = True,
        frozen_stages: int = 2,
        decoder_channels: Sequence[int] = (128, 64, 32, 16, 8),
        base_width: int = 16,
        learning_rate: float = 1e-3,
        encoder_lr_scale: float = 0.1,
        weight_decay: float = 1e-5,
        focal_gamma: float = 2.0,
        dice_weight: float = 1.0,
        score_top_fraction: float = 0.001,
        normal_memory: bool | None = None,
        memory_source: MemorySource | str = "normals",
        memory_images: int | None = None,
        memory_size: int = 4096,
        normal_prior: bool | None = None,
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        _check_args(base_width, learning_rate, focal_gamma, dice_weight, score_top_fraction)
        if encoder_lr_scale < 0:
            raise InvalidInputError(f"encoder_lr_scale must be >= 0, got {encoder_lr_scale}", fix="use e.g. 0.1")
        if frozen_stages < 0:
            raise InvalidInputError(f"frozen_stages must be >= 0, got {frozen_stages}", fix="use e.g. 2, or 0")
        if memory_size < 2:  # the distance scale is measured between two remembered patches
            raise InvalidInputError(
                f"memory_size must be >= 2 patches, got {memory_size}", fix="use e.g. 4096 (the default)"
            )
        if pre_processor is True:  # the default depends on the network: ImageNet statistics or none
            pre_processor = self.configure_pre_processor(imagenet_normalization=encoder is not None)
        if visualizer is True and resolve_memory_and_prior(encoder, normal_memory, normal_prior)[1]:
            # the fused map is a sum of standard scores, not a probability in [0, 1]: scale it per image to be seen
            visualizer = ImageVisualizer(fields_config={"anomaly_map": {"colormap": True, "normalize": True}})
        super().__init__(
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        self.model = SegmenterModel(
            encoder=encoder,
            pretrained=pretrained,
            frozen_stages=frozen_stages,
            decoder_channels=decoder_channels,
            base_width=base_width,
            score_top_fraction=score_top_fraction,
            normal_memory=normal_memory,
            normal_prior=normal_prior,
        )
        self.memory_source = parse_choice(MemorySource, memory_source, "memory_source")
        if "memory_source" in self.hparams:  # plain data, so that checkpoints load with weights_only
            self.hparams["memory_source"] = self.memory_source.value
        if memory_images is not None and memory_images < 1:
            raise InvalidInputError(
                f"memory_images must be >= 1 or None, got {memory_images}", fix="use None (every training normal)"
            )
        self.memory_images = memory_images
        self.memory_size = memory_size
        self.learning_rate = learning_rate
        self.encoder_lr_scale = encoder_lr_scale
        self.weight_decay = weight_decay
        self.focal_gamma = focal_gamma
        self.dice_weight = dice_weight

    # ----------------------------------------------------------------- training
    def on_train_start(self) -> None:
        """Build the normal memory from the training normals (``memory_source``), before the first step.

        The global RNG is left where it was (the loaders' seeds are drawn from it), so a memory that
        is built and one that is loaded (``memory.is_built`` already) lead to the same training run.
        """
        self._ensure_memory()

    def _ensure_memory(self) -> None:
        memory = self.model.memory
        if memory is None or memory.is_built:
            return
        with torch.random.fork_rng(devices=[]):
            self._build_memory(memory)

    def _build_memory(self, memory: NormalPatchMemory) -> None:
        loader, limit, passes, what = self._memory_images_source()
        show = self.trainer.progress_bar_callback is not None
        total = limit if limit is not None else batch_count(loader)
        bar = tqdm(total=total, desc=f"normal memory ({what})", unit="image", disable=not show, leave=False)
        collected = 0
        for _ in range(passes):  # crops: each pass holds only the loader's normal items, and draws new crops
            found = 0
            for images in self._normal_images([loader]):
                memory.collect(self.model.memory_features(images))
                found += len(images)
                bar.update(len(images))
                if limit is not None and collected + found >= limit:
                    break
            collected += found
            if (limit is not None and collected >= limit) or found == 0:
                break
        bar.close()
        memory.build(self.memory_size, progress=show)
        logger.info("Normal memory: %d patches kept from %d %s.", len(memory.memory_bank), collected, what)

    def _memory_images_source(self) -> tuple[Iterable[Batch], int | None, int, str]:
        """(loader, most images, passes, what they are) that the normal memory is built from."""
        if self.memory_source == MemorySource.normals:
            datamodule = getattr(self.trainer, "datamodule", None)
            offer = getattr(datamodule, "normal_dataloader", None)
            if callable(offer):
                return offer(), self.memory_images, 1, "whole training normals"
            logger.warning(
                "%s has no normal_dataloader() of whole training normals, so the normal memory is built from normal "
                "crops of the training loader; wrap the datamodule in SyntheticAnomalyDataModule for whole images",
                type(datamodule).__name__,
            )
        limit = self.memory_images or DEFAULT_MEMORY_CROPS
        loader = self.trainer.train_dataloader
        if loader is None:  # before training (a sanity check): the loader is not set up yet
            raise InvalidInputError(
                "the normal memory is built from training crops, and the training loader is not set up before the "
                "sanity check",
                fix="pass num_sanity_val_steps=0 to the Trainer (anomalib's Engine does), or memory_source='normals'",
            )
        return loader, limit, MAX_MEMORY_PASSES, "normal training crops"

    def _normal_images(self, loaders: Iterable[Iterable[Batch]]) -> Iterator[torch.Tensor]:
        """The normal images of each batch of ``loaders``, on the model's device and pre-processed."""
        for loader in loaders:
            for batch in loader:
                labels = batch.gt_label if batch.gt_label is not None else torch.zeros(len(batch.image))
                normal = labels == 0
                if not bool(normal.any()):
                    continue
                images = batch.image[normal].to(self.device)
                if self.pre_processor is not None and self.pre_processor.transform is not None:
                    images = self.pre_processor.transform(images)
                yield images

    def on_validation_epoch_start(self) -> None:
        """Measure the prior's normal statistics for the weights being validated (they move in training).

        A plain Lightning ``Trainer`` validates a few batches before training starts (the ``Engine``
        turns that off): the memory is built for them first, as training would build it.
        """
        if self.trainer.sanity_checking:
            self._ensure_memory()
        if self.model.prior is not None:
            self._calibrate_prior(as_loader_list(self.trainer.val_dataloaders), "validation")

    def on_test_start(self) -> None:
        self._ensure_prior()

    def on_predict_start(self) -> None:
        self._ensure_prior()

    def _ensure_prior(self) -> None:
        """Measure the prior for the weights about to predict: on the validation normals when there are any.

        Without a validation set, a prior that a checkpoint brought is kept; an uncalibrated one is
        measured on training normals (with a warning: the segmenter was trained on them).
        """
        prior = self.model.prior
        if prior is None:
            return
        datamodule = getattr(self.trainer, "datamodule", None)
        normals_only = getattr(datamodule, "validation_normal_dataloader", None)  # no generator fit to read them
        if callable(normals_only):
            loaders = as_loader_list(normals_only())
        elif getattr(datamodule, "val_data", None) is not None:
            loaders = as_loader_list(datamodule.val_dataloader())
        else:
            loaders = []
        if any(has_batches(loader) for loader in loaders):
            self._calibrate_prior(loaders, "validation")
            return
        if prior.is_calibrated:
            return
        if datamodule is None:
            raise InvalidInputError(
                "normal_prior needs normal images to calibrate on, and neither a validation run nor a datamodule "
                "gave any",
                fix="validate once (Engine.fit or Engine.validate) before predicting, or pass normal_prior=False",
            )
        logger.warning("normal_prior: no validation set, so it is calibrated on training normals (seen in training)")
        self._calibrate_prior(as_loader_list(datamodule.train_dataloader()), "training")

    @torch.no_grad()
    def _calibrate_prior(self, loaders: Iterable[Iterable[Batch]], source: str) -> None:
        prior = self.model.prior
        assert prior is not None
        prior.reset()
        was_training = self.model.training
        self.model.eval()
        seen = 0
        try:
            for images in self._normal_images(private_loader(loader) for loader in loaders):
                logits, distance = self.model.signals(images, with_distance=True)
                prior.accumulate(logits, distance)
                seen += len(images)
        finally:
            self.model.train(was_training)
        prior.finish()
        logger.debug("Normal prior calibrated on %d %s normal images.", seen, source)

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
        """AdamW; the pretrained encoder learns at ``encoder_lr_scale`` times the decoder's rate."""
        encoder = self.model.encoder_parameters()
        encoder_ids = {id(p) for p in encoder}
        rest = [p for p in self.model.parameters() if p.requires_grad and id(p) not in encoder_ids]
        groups = [{"params": rest, "lr": self.learning_rate}]
        if encoder:
            groups.append({"params": encoder, "lr": self.learning_rate * self.encoder_lr_scale})
        return torch.optim.AdamW(groups, lr=self.learning_rate, weight_decay=self.weight_decay)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """Refuse, naming the option, a checkpoint that holds a normal memory or prior the model lacks, or the reverse.

        ``load_from_checkpoint(path, normal_prior=False)`` on a prior-trained model would otherwise fail in
        ``load_state_dict`` on keys it does not explain; and its thresholds are on the fused scale anyway.
        """
        super().on_load_checkpoint(checkpoint)
        saved = checkpoint.get("state_dict", {})
        for part, option in (("memory", "normal_memory"), ("prior", "normal_prior")):
            in_checkpoint = any(key.startswith(f"model.{part}.") for key in saved)
            if in_checkpoint != (getattr(self.model, part) is not None):
                holds = "holds" if in_checkpoint else "holds no"
                has = "has none" if in_checkpoint else "has one"
                raise InvalidInputError(
                    f"this checkpoint {holds} a {option.replace('_', ' ')} and the model it is loaded into {has} "
                    f"({option}={not in_checkpoint}); its weights and validation thresholds belong to the setting "
                    "it was trained with",
                    fix=f"load it with {option}={in_checkpoint}, as it was trained: "
                    f"DefectSegmenter.load_from_checkpoint(path, {option}={in_checkpoint})",
                )

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
    def configure_pre_processor(
        cls, image_size: tuple[int, int] | None = None, *, imagenet_normalization: bool = True
    ) -> PreProcessor:
        """ImageNet normalisation for the pretrained encoder; a resize only when ``image_size`` is given.

        Without ``image_size`` the network sees images at native resolution (it pads them itself).
        ImageNet statistics mean nothing to the from-scratch U-Net, so it gets ``imagenet_normalization=False``.
        """
        steps = [Resize(image_size, antialias=True)] if image_size is not None else []
        if imagenet_normalization:
            steps.append(Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD))
        return PreProcessor(transform=Compose(steps) if steps else None)

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


__all__ = ["DefectSegmenter", "MemorySource", "SegmenterModel"]

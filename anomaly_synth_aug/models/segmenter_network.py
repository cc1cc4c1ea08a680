"""The segmenter's torch network: a U-Net over a pretrained encoder that also consults a normal memory.

``SegmenterModel`` maps an image of any size to defect logits. Three designs:

* ``encoder="efficientnet_lite0", normal_memory=True`` (the default): a ``segmentation_models_pytorch``
  U-Net over EfficientNet-Lite0 (offline ImageNet weights) whose decoder also receives PatchCore's
  distance to the nearest normal patch (``NormalPatchMemory``) at strides 8, 16 and 32;
* ``normal_memory=False``: the same U-Net on the image alone;
* ``encoder=None``: DRÆM's discriminative U-Net trained from scratch (an ablation).

With ``normal_prior=True`` (and the memory) the eval-mode map is no longer the defect probability but
the sum of the logit's and the memory distance's standard scores on normal images, and the image
score the sum of the two detectors' image scores' standard scores (``NormalPrior``): the supervised
verdict and PatchCore's, on one scale.

The memory needs features that stay fixed while the U-Net's encoder fine-tunes. Its stages are
frozen copies of the encoder's own ImageNet stages (blocks 2 to 4 of EfficientNet-Lite0), fed from
the encoder's frozen stride-4 map, so the shared early stages run once and the memory keeps the
ImageNet features PatchCore uses.

Example:
    >>> model = SegmenterModel()
    >>> model.memory.collect(model.memory_features(normal_images))
    >>> model.memory.build(size=4096)
    >>> logits = model.train()(images)  # [B, 1, H, W]
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
from anomalib.data import InferenceBatch
from anomalib.models.image.draem.torch_model import DiscriminativeSubNetwork
from torch import nn
from torch.nn import functional as F

from anomaly_synth_aug.data.transforms import pad_to_multiple
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.models.normal_memory import NormalPatchMemory
from anomaly_synth_aug.models.normal_prior import NormalPrior, top_fraction_mean

#: The U-Nets halve the resolution five times; inputs are padded to a multiple of this.
SIZE_MULTIPLE = 32
#: Encoder modules frozen by ``frozen_stages=k``: the stem, then the first k blocks.
_STEM = ("conv_stem", "bn1")
#: Encoder feature map (of the U-Net's six, strides 1 to 32) the memory's own stages start from: stride 4.
_MEMORY_INPUT = 2
#: Encoder feature maps whose frozen ImageNet versions the memory is built on: strides 8 and 16,
#: PatchCore's layer2 + layer3 (blocks.2 and blocks.4 of EfficientNet-Lite0).
MEMORY_FEATURES: tuple[int, ...] = (3, 4)
#: Encoder feature maps that get the memory's distance map: its own stride (8) and the coarser ones.
_MEMORY_SKIPS: tuple[int, ...] = (3, 4, 5)


def build_unet(encoder: str, pretrained: bool, decoder_channels: Sequence[int]) -> nn.Module:
    """An ``smp.Unet`` over timm's ``encoder``, with offline ImageNet weights when ``pretrained``."""
    import segmentation_models_pytorch as smp  # heavy: only for the pretrained U-Net

    name = encoder
    if pretrained:
        from anomaly_synth_aug.backbones.timm_folder import offline_backbone

        name = offline_backbone(encoder)
    return smp.Unet(
        encoder_name=f"tu-{name}",
        encoder_weights=True if pretrained else None,  # smp: the weights come with the timm name
        decoder_channels=tuple(decoder_channels),
        classes=1,
    )


def resolve_memory_and_prior(
    encoder: str | None, normal_memory: bool | None, normal_prior: bool | None
) -> tuple[bool, bool]:
    """The ``normal_memory`` and ``normal_prior`` that None stands for: both on with a pretrained encoder.

    The prior made the stronger detector in the downstream benchmark, on its synthetic validation sets as on
    test (benchmarks/README.md); the from-scratch U-Net has no features for a memory, so both are off there.

    Example:
        >>> resolve_memory_and_prior("efficientnet_lite0", None, None), resolve_memory_and_prior(None, None, None)
        ((True, True), (False, False))
    """
    memory = encoder is not None if normal_memory is None else normal_memory
    return memory, memory if normal_prior is None else normal_prior


class SegmenterModel(nn.Module):
    """The torch network: image ``[B, 3, H, W]`` (any size) to defect logits ``[B, 1, H, W]``.

    In training mode ``forward`` returns the logits (for the loss); in eval mode it returns an
    ``InferenceBatch`` whose ``anomaly_map`` ``[B, H, W]`` is the defect probability (with ``normal_prior``:
    the fused standard score) and whose ``pred_score`` is the mean of the map's highest
    ``score_top_fraction`` of pixels (the maximum when 0; with ``normal_prior``: the fused image score).

    Args:
        encoder: timm name of the U-Net encoder, or None for DRÆM's from-scratch U-Net.
        pretrained: load the encoder's offline ImageNet weights.
        frozen_stages: encoder stages kept fixed (weights and batch-norm statistics): 0 trains all,
            k freezes the stem and the first k blocks.
        decoder_channels: widths of the five decoder stages (pretrained U-Net).
        base_width: channels of the first level (from-scratch U-Net; DRÆM uses 64).
        score_top_fraction: share of the anomaly map averaged into the image score, in [0, 1).
        normal_memory: give the decoder the distance to the nearest normal patch (``NormalPatchMemory``;
            build it before training, ``DefectSegmenter`` does so from the training normals). None: on for
            a pretrained-style encoder, off for the from-scratch U-Net.
        normal_prior: in eval mode, add the memory distance's standard score to the logit's (``NormalPrior``;
            calibrate it on normal images before predicting, ``DefectSegmenter`` does so on its validation
            normals). Needs the normal memory. None: on whenever the normal memory is.
    """

    def __init__(
        self,
        encoder: str | None = "efficientnet_lite0",
        pretrained: bool = True,
        frozen_stages: int = 2,
        decoder_channels: Sequence[int] = (128, 64, 32, 16, 8),
        base_width: int = 16,
        score_top_fraction: float = 0.001,
        normal_memory: bool | None = None,
        normal_prior: bool | None = None,
    ) -> None:
        super().__init__()
        normal_memory, normal_prior = resolve_memory_and_prior(encoder, normal_memory, normal_prior)
        if normal_prior and not normal_memory:
            raise InvalidInputError(
                "normal_prior adds the normal memory's distances to the segmenter's verdict, and the memory is off",
                fix="keep normal_memory on (it needs a pretrained encoder), or pass normal_prior=False",
            )
        self.prior = NormalPrior(score_top_fraction) if normal_prior else None
        self.memory: NormalPatchMemory | None = None
        self._memory_stages = nn.ModuleList()
        self._memory_taps: list[bool] = []
        if encoder is None:
            if normal_memory:
                raise InvalidInputError(
                    "normal_memory needs a pretrained encoder's features",
                    fix="pass encoder='efficientnet_lite0', or normal_memory=False for the from-scratch U-Net",
                )
            self.network: nn.Module = DiscriminativeSubNetwork(in_channels=3, out_channels=1, base_width=base_width)
            self._frozen: list[nn.Module] = []
        else:
            self.network = build_unet(encoder, pretrained, decoder_channels)
            if normal_memory:  # copied before fine-tuning starts: the memory keeps the ImageNet stages
                self._attach_memory(decoder_channels)
            self._frozen = self._freeze(frozen_stages)
            if normal_memory:
                self._check_memory_input_frozen()
            self.train(self.training)  # frozen stages in eval from the start: Lightning keeps the modes it finds
        # The EfficientNet U-Net's depthwise convolutions run much faster on CPU in channels_last
        # (benchmarks/README.md); the from-scratch U-Net does not gain, so it stays contiguous.
        self.channels_last = encoder is not None
        if self.channels_last:
            self.to(memory_format=torch.channels_last)
        self.score_top_fraction = score_top_fraction

    # ------------------------------------------------------------ construction
    def _stage_names(self) -> list[str]:
        """Module name of the encoder stage behind each feature map after the input (timm ``feature_info``)."""
        return list(self.network.encoder.model.feature_info.module_name())

    def _attach_memory(self, decoder_channels: Sequence[int]) -> None:
        """Frozen copies of the stages behind ``MEMORY_FEATURES``, a memory, and a decoder that takes its distances."""
        from segmentation_models_pytorch.decoders.unet.decoder import UnetDecoder

        body = self.network.encoder.model
        names = self._stage_names()
        try:
            first = _block_index(names[_MEMORY_INPUT - 1]) + 1
            last = _block_index(names[MEMORY_FEATURES[-1] - 1])
        except ValueError as exc:
            raise InvalidInputError(
                f"normal_memory supports encoders built of timm 'blocks.N' stages, not {names}",
                fix="use an EfficientNet or MobileNet encoder (e.g. efficientnet_lite0), or normal_memory=False",
            ) from exc
        taps = {names[index - 1] for index in MEMORY_FEATURES}
        for block in range(first, last + 1):
            stage = copy.deepcopy(body.get_submodule(f"blocks.{block}")).requires_grad_(False).eval()
            self._memory_stages.append(stage)
            self._memory_taps.append(f"blocks.{block}" in taps)
        channels = list(self.network.encoder.out_channels)
        for index in _MEMORY_SKIPS:
            channels[index] += 1
        self.network.decoder = UnetDecoder(
            encoder_channels=channels, decoder_channels=decoder_channels, n_blocks=len(decoder_channels)
        )
        self.memory = NormalPatchMemory()

    def _freeze(self, stages: int) -> list[nn.Module]:
        body = self.network.encoder.model
        if stages > len(body.blocks):
            raise InvalidInputError(
                f"frozen_stages={stages}, but the encoder has {len(body.blocks)} stages",
                fix=f"use at most {len(body.blocks)} (every stage frozen), e.g. 2",
            )
        names = [*_STEM, *(f"blocks.{index}" for index in range(stages))] if stages > 0 else []
        modules = [body.get_submodule(name) for name in names]
        for module in modules:
            module.requires_grad_(False)
        return [*modules, *self._memory_stages]

    def _check_memory_input_frozen(self) -> None:
        source = self._stage_names()[_MEMORY_INPUT - 1]
        if any(p.requires_grad for p in self.network.encoder.model.get_submodule(source).parameters()):
            raise InvalidInputError(
                f"the normal memory reads the encoder's {source} output, which would keep training, so the "
                "memory built before training would stop matching its features",
                fix="keep frozen_stages >= 2, or pass normal_memory=False",
            )

    # ------------------------------------------------------------------ helpers
    def encoder_parameters(self) -> list[nn.Parameter]:
        """Trainable encoder parameters (empty for the from-scratch U-Net)."""
        if not hasattr(self.network, "encoder"):
            return []
        return [p for p in self.network.encoder.parameters() if p.requires_grad]

    def train(self, mode: bool = True) -> SegmenterModel:
        """As ``nn.Module.train``, but frozen stages keep their ImageNet batch-norm statistics."""
        super().train(mode)
        for module in self._frozen:
            module.eval()
        return self

    def _prepare(self, images: torch.Tensor) -> tuple[torch.Tensor, tuple[int, int]]:
        padded, size = pad_to_multiple(images, SIZE_MULTIPLE)
        if self.channels_last:
            padded = padded.contiguous(memory_format=torch.channels_last)
        return padded, size

    @torch.no_grad()
    def _memory_maps(self, stride4: torch.Tensor) -> list[torch.Tensor]:
        """The frozen ImageNet feature maps behind ``MEMORY_FEATURES``, from the encoder's stride-4 map."""
        maps = []
        hidden = stride4
        for stage, tap in zip(self._memory_stages, self._memory_taps, strict=True):
            hidden = stage(hidden)
            if tap:
                maps.append(hidden)
        return maps

    def memory_features(self, images: torch.Tensor) -> list[torch.Tensor]:
        """Feature maps of ``images`` (any size) as the normal memory sees them: ``collect`` these from normals."""
        padded, _ = self._prepare(images)
        was_training = self.training
        self.eval()  # no batch-norm statistics of the trainable stages move while the memory is filled
        try:
            with torch.no_grad():
                return self._memory_maps(self.network.encoder(padded)[_MEMORY_INPUT])
        finally:
            self.train(was_training)

    # ------------------------------------------------------------------ forward
    def forward(self, images: torch.Tensor) -> torch.Tensor | InferenceBatch:
        if self.training:
            return self.signals(images)[0]
        logits, distance = self.signals(images, with_distance=self.prior is not None)
        if self.prior is not None:
            assert distance is not None
            anomaly_map = self.prior.fuse(logits, distance).squeeze(1)
            return InferenceBatch(pred_score=self.prior.fuse_scores(logits, distance), anomaly_map=anomaly_map)
        anomaly_map = torch.sigmoid(logits).squeeze(1)
        return InferenceBatch(pred_score=self.image_score(anomaly_map), anomaly_map=anomaly_map)

    def signals(self, images: torch.Tensor, *, with_distance: bool = False) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Defect logits ``[B, 1, H, W]`` and, when asked, the memory's distance upsampled to the same size.

        ``NormalPrior`` is calibrated on these two from normal images and fuses them at prediction.
        """
        padded, (height, width) = self._prepare(images)
        logits, distance = self._logits(padded)
        logits = logits[..., :height, :width].contiguous()
        if not with_distance:
            return logits, None
        if distance is None:
            raise InvalidInputError("the distance map needs the normal memory", fix="pass normal_memory=True")
        distance = F.interpolate(distance.float(), size=padded.shape[-2:], mode="bilinear", align_corners=False)
        return logits, distance[..., :height, :width].contiguous()

    def _logits(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
        if self.memory is None:
            return self.network(images), None
        features = self.network.encoder(images)
        distance = self.memory.distance_map(self._memory_maps(features[_MEMORY_INPUT]))
        for index in _MEMORY_SKIPS:
            size = features[index].shape[-2:]
            resized = distance if distance.shape[-2:] == size else nn.functional.adaptive_max_pool2d(distance, size)
            features[index] = torch.cat([features[index], resized.to(features[index].dtype)], dim=1)
        return self.network.segmentation_head(self.network.decoder(features)), distance

    def image_score(self, anomaly_map: torch.Tensor) -> torch.Tensor:
        """Mean of the top ``score_top_fraction`` pixels per image: as sharp as the max, less noisy."""
        return top_fraction_mean(anomaly_map, self.score_top_fraction)


def _block_index(stage: str) -> int:
    """``N`` of a timm ``blocks.N`` stage name (ValueError otherwise)."""
    prefix, _, index = stage.partition(".")
    if prefix != "blocks" or not index.isdigit():
        raise ValueError(stage)
    return int(index)


__all__ = ["MEMORY_FEATURES", "SIZE_MULTIPLE", "SegmenterModel", "build_unet"]

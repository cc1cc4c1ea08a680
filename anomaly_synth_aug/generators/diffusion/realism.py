"""Realism in pretrained feature space: is a generated defect as close to a real shot as real shots are to each other?

Users of the published few-shot generators throw failed samples away by hand. ``ShotRealism``
does it by a rule that needs no test data and no tuning: each defect is described by ImageNet
features (EfficientNet-Lite0, offline weights) of a context crop around its mask, as the mean
feature inside the mask and its difference from the surrounding surface, at strides 8 and 16 of
the crop. A defect type's *spacing* is the median distance from each of its shots to the nearest
other shot of the type. A generated defect's ``ratio`` is its distance to the nearest shot of its
type in units of that spacing, and it is unrealistic when it lies farther from every shot than
the loneliest shot lies from the others (the type's largest leave-one-out distance).


Example:
    >>> realism = ShotRealism().fit(shots)
    >>> ratios, realistic = realism.judge(images, masks, types)
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch.nn import functional as F

from anomaly_synth_aug.backbones.frozen_features import (
    DETECTOR_FEATURE_INDICES,
    frozen_feature_extractor,
    imagenet_input,
)
from anomaly_synth_aug.data.sample import AnomalySample
from anomaly_synth_aug.errors import InvalidInputError, NotFittedError
from anomaly_synth_aug.generators.diffusion.patches import context_box, mask_bbox

logger = logging.getLogger(__name__)

#: Side of the context crop the features are taken from; the mask's box fills half of it.
CROP_SIZE = 64
#: Images per backbone call.
_BATCH = 32


@dataclass(frozen=True)
class TypeReference:
    """The shots of one defect type in feature space, and how far apart they lie."""

    features: torch.Tensor  # [N, D]
    spacing: float  # median leave-one-out nearest-shot distance
    limit: float  # largest leave-one-out nearest-shot distance, in units of ``spacing``


class ShotRealism:
    """Distance of defects to the real shots of their type in pretrained feature space (see module doc).

    Args:
        backbone: timm name of the feature extractor (offline ImageNet weights).
    """

    def __init__(self, backbone: str = "efficientnet_lite0") -> None:
        self.backbone = backbone
        self.references: dict[str, TypeReference] = {}
        self.fitted = False

    # ---------------------------------------------------------------- features
    @property
    def extractor(self) -> torch.nn.Module:
        """The shared frozen backbone (loaded on first use)."""
        return frozen_feature_extractor(self.backbone, DETECTOR_FEATURE_INDICES)

    @torch.no_grad()
    def describe(self, images: Sequence[torch.Tensor], masks: Sequence[torch.Tensor]) -> torch.Tensor:
        """``[N, D]`` descriptors of the defects ``masks`` marks in ``images`` (float ``[C, H, W]`` in [0, 1])."""
        crops, crop_masks = [], []
        for image, mask in zip(images, masks, strict=True):
            box = context_box(mask_bbox(mask), tuple(image.shape[-2:]), patch_size=CROP_SIZE, fill=0.5)
            rows, cols = box.slices()
            rgb = imagenet_input(image[:, rows, cols])[None]
            crops.append(F.interpolate(rgb, size=(CROP_SIZE, CROP_SIZE), mode="bilinear", antialias=True))
            region = mask[rows, cols].float()[None, None]
            crop_masks.append(F.interpolate(region, size=(CROP_SIZE, CROP_SIZE), mode="area"))
        if not crops:
            return torch.zeros(0, 0)
        batch = torch.cat(crops)
        weights = torch.cat(crop_masks)
        descriptors = []
        for start in range(0, len(batch), _BATCH):
            maps = self.extractor(batch[start : start + _BATCH])
            parts = []
            for feature in maps:
                inside = F.adaptive_avg_pool2d(weights[start : start + _BATCH], feature.shape[-2:]).clamp(0, 1)
                outside = 1.0 - inside
                mean_in = (feature * inside).sum((2, 3)) / inside.sum((2, 3)).clamp_min(1e-6)
                mean_out = (feature * outside).sum((2, 3)) / outside.sum((2, 3)).clamp_min(1e-6)
                parts += [mean_in, mean_in - mean_out]
            descriptors.append(torch.cat(parts, dim=1))
        return torch.cat(descriptors)

    # --------------------------------------------------------------------- fit
    def fit(self, shots: Sequence[AnomalySample]) -> ShotRealism:
        """Describe the shots of every type; a type needs two shots to have a spacing (else it is not judged)."""
        by_type: dict[str, list[AnomalySample]] = {}
        for shot in shots:
            by_type.setdefault(shot.defect_type, []).append(shot)
        self.references = {}
        for name, members in sorted(by_type.items()):
            if len(members) < 2:
                logger.warning("Defect type %r has one shot: its generated defects are not judged for realism.", name)
                continue
            features = self.describe([s.image for s in members], [s.mask for s in members])
            self.references[name] = reference_from(features)
        self.fitted = True
        return self

    # ------------------------------------------------------------------ judge
    def ratios(
        self, images: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], defect_types: Sequence[str]
    ) -> torch.Tensor:
        """Each defect's distance to its type's nearest shot, in units of the type's spacing (NaN: type not judged)."""
        if not self.fitted:
            raise NotFittedError("ShotRealism has no shots: call fit(shots) first")
        result = torch.full((len(images),), float("nan"))
        judged = [i for i, name in enumerate(defect_types) if name in self.references]
        if not judged:
            return result
        features = self.describe([images[i] for i in judged], [masks[i] for i in judged])
        for row, index in enumerate(judged):
            reference = self.references[defect_types[index]]
            distance = torch.cdist(features[row : row + 1], reference.features).min()
            result[index] = float(distance) / reference.spacing
        return result

    def judge(
        self, images: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], defect_types: Sequence[str]
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``ratios`` and whether each defect is realistic (within its type's ``limit``; unjudged types pass)."""
        ratios = self.ratios(images, masks, defect_types)
        limits = torch.tensor(
            [self.references[name].limit if name in self.references else float("inf") for name in defect_types]
        )
        return ratios, ~(ratios > limits)

    # ------------------------------------------------------------- persistence
    def state_tensors(self) -> dict[str, torch.Tensor]:
        """The references as flat tensors (for safetensors): features, and spacing with limit, per type."""
        tensors: dict[str, torch.Tensor] = {}
        for name, reference in self.references.items():
            tensors[f"{name}/features"] = reference.features.contiguous()
            tensors[f"{name}/scale"] = torch.tensor([reference.spacing, reference.limit])
        return tensors

    def load_tensors(self, tensors: dict[str, torch.Tensor]) -> ShotRealism:
        """Restore what ``state_tensors`` gave."""
        names = sorted({key.rsplit("/", 1)[0] for key in tensors})
        try:
            self.references = {
                name: TypeReference(
                    tensors[f"{name}/features"], float(tensors[f"{name}/scale"][0]), float(tensors[f"{name}/scale"][1])
                )
                for name in names
            }
        except KeyError as exc:
            raise InvalidInputError(f"realism tensors lack {exc}", fix="re-fit and save the generator") from exc
        self.fitted = True
        return self


def reference_from(features: torch.Tensor) -> TypeReference:
    """Spacing and limit of one type's shot descriptors ``[N, D]`` (N >= 2)."""
    distances = torch.cdist(features, features)
    distances.fill_diagonal_(float("inf"))
    nearest = distances.min(dim=1).values
    spacing = float(nearest.median().clamp_min(1e-6))
    return TypeReference(features=features, spacing=spacing, limit=float(nearest.max()) / spacing)


__all__ = ["CROP_SIZE", "ShotRealism", "TypeReference", "reference_from"]

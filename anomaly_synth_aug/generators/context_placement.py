"""Where on a target image a defect type belongs: the surface its shots sit on, in pretrained features.

A screw's head scratches belong on its head and its thread defects on the thread; placed anywhere on
the object, they teach a detector defects that never occur. ``ContextPlacement`` describes the
surface around each shot's defect (the defect itself inpainted away) by EfficientNet-Lite0 features
(offline ImageNet weights) at stride 16, averaged over a window of about a quarter of the image's
shorter side, at the defect's centre. On a target image a position may centre a defect of a type when its
context is at least as close to one of the type's shots as the type's least typical shot is to the
others (leave one shot out): every shot would have been admitted where it was. The rule needs the
shots only, no test data and no tuning; a type with one shot is placed anywhere.

Example:
    >>> placement = ContextPlacement().fit(shots)
    >>> allowed = placement.region(image, "scratch_head")  # bool [H, W], or None: anywhere
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np
import torch
from torch.nn import functional as F

from anomaly_synth_aug.backbones.frozen_features import (
    DETECTOR_FEATURE_INDICES,
    frozen_feature_extractor,
    imagenet_input,
)
from anomaly_synth_aug.data.sample import AnomalySample, to_bool_mask
from anomaly_synth_aug.errors import InvalidInputError

__all__ = ["ContextPlacement", "ShotContext", "centre_cell", "without_defect"]

#: Stride of the feature map the context is read from (the second of ``DETECTOR_FEATURE_INDICES``).
STRIDE = 16
#: The context window's side as a share of the image's shorter side.
WINDOW_FRACTION = 0.28
#: Pixels around the defect that are inpainted with it before its surface is described.
INPAINT_MARGIN = 4


@dataclass(frozen=True)
class ShotContext:
    """One shot as ``ContextPlacement`` sees it (``describe``)."""

    defect_type: str
    surface: torch.Tensor  # [C, H, W], the defect inpainted away
    contexts: torch.Tensor  # [C, h, w] unit context vectors
    cell: tuple[int, int]  # (row, col) of the defect's centre in ``contexts``

    @property
    def vector(self) -> torch.Tensor:
        """The context at the defect's centre."""
        return self.contexts[:, self.cell[0], self.cell[1]]


class ContextPlacement:
    """Per defect type, the contexts of its shots and how close a position's context must be (module doc).

    Args:
        backbone: timm name of the feature extractor (offline ImageNet weights).
        window_fraction: side of the context window, as a share of the image's shorter side (0.28: about a
            quarter).
    """

    def __init__(self, backbone: str = "efficientnet_lite0", window_fraction: float = WINDOW_FRACTION) -> None:
        if not 0.0 < window_fraction <= 1.0:
            raise InvalidInputError(
                f"window_fraction must lie in (0, 1], got {window_fraction}", fix="use e.g. 0.28"
            )
        self.backbone = backbone
        self.window_fraction = window_fraction
        self.contexts: dict[str, torch.Tensor] = {}  # type -> [N, C] unit context vectors of its shots
        self.floors: dict[str, float] = {}  # type -> least leave-one-out similarity of a shot to the others

    def fit(self, shots: Sequence[AnomalySample]) -> ContextPlacement:
        """Describe every shot's surroundings and set each type's floor (leave one shot out)."""
        described = (self.describe(shot) for shot in shots if bool(to_bool_mask(shot.mask).any()))
        return self.fit_described(list(described))

    def describe(self, shot: AnomalySample) -> ShotContext:
        """The shot's surface with its defect inpainted away, its context map, and the cell at the defect's centre."""
        mask = to_bool_mask(shot.mask)
        surface = without_defect(shot.image, mask)
        contexts = self.context_map(surface)
        return ShotContext(shot.defect_type, surface, contexts, centre_cell(mask, contexts.shape[-2:]))

    def fit_described(self, described: Sequence[ShotContext]) -> ContextPlacement:
        """``fit`` on shots already described (each type's vectors in the order of ``described``)."""
        by_type: dict[str, list[torch.Tensor]] = {}
        for shot in described:
            by_type.setdefault(shot.defect_type, []).append(shot.vector)
        self.contexts = {name: torch.stack(vectors) for name, vectors in by_type.items()}
        self.floors = {}
        for name, vectors in self.contexts.items():
            if len(vectors) < 2:
                continue  # nothing to compare a lone shot with: the type is placed anywhere
            similarity = vectors @ vectors.T
            similarity.fill_diagonal_(-float("inf"))
            self.floors[name] = float(similarity.max(dim=1).values.min())
        return self

    def context_map(self, image: torch.Tensor) -> torch.Tensor:
        """Unit context vectors ``[C, h, w]`` of ``image`` (``[C, H, W]`` in [0, 1]), one per stride-16 cell."""
        extractor = frozen_feature_extractor(self.backbone, DETECTOR_FEATURE_INDICES)
        with torch.inference_mode():
            features = extractor(imagenet_input(image)[None])[1][0].float()
        cells = max(1, round(self.window_fraction * min(image.shape[-2:]) / STRIDE))
        cells += 1 - cells % 2  # odd, centred on its cell
        pooled = F.avg_pool2d(features[None], cells, stride=1, padding=cells // 2, count_include_pad=False)[0]
        return F.normalize(pooled, dim=0)

    def region(self, image: torch.Tensor, defect_type: str) -> torch.Tensor | None:
        """Bool ``[H, W]``: where in ``image`` a ``defect_type`` defect may be centred (its context is met);
        None: anywhere (no floor, or no position reaches it)."""
        if defect_type not in self.floors:
            return None
        similarity = torch.einsum("chw,nc->nhw", self.context_map(image), self.contexts[defect_type])
        admitted = similarity.max(dim=0).values >= self.floors[defect_type] - 1e-6
        if not bool(admitted.any()):
            return None
        full = F.interpolate(admitted[None, None].float(), size=tuple(image.shape[-2:]), mode="nearest")
        return full[0, 0].bool()

    def state_tensors(self) -> dict[str, torch.Tensor]:
        """For ``safetensors.torch.save_file``: each type's context vectors and floor."""
        state = {f"contexts.{name}": vectors.contiguous() for name, vectors in self.contexts.items()}
        state.update({f"floors.{name}": torch.tensor(floor) for name, floor in self.floors.items()})
        return state

    def load_tensors(self, state: dict[str, torch.Tensor]) -> ContextPlacement:
        """Restore what ``state_tensors`` wrote."""
        self.contexts = {key.split(".", 1)[1]: value for key, value in state.items() if key.startswith("contexts.")}
        self.floors = {key.split(".", 1)[1]: float(value) for key, value in state.items() if key.startswith("floors.")}
        return self


def without_defect(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``image`` with the defect (and a margin) inpainted from its surroundings (Telea), so that only
    the surface around it is described."""
    pixels = (image.clamp(0, 1).permute(1, 2, 0).cpu().numpy() * 255).round().astype(np.uint8)  # on the CPU
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * INPAINT_MARGIN + 1,) * 2)
    hole = cv2.dilate(mask.cpu().numpy().astype(np.uint8), kernel)
    filled = cv2.inpaint(np.ascontiguousarray(pixels), hole, 2 * INPAINT_MARGIN, cv2.INPAINT_TELEA)
    filled = filled.reshape(*pixels.shape)
    return torch.from_numpy(filled).permute(2, 0, 1).float() / 255.0


def centre_cell(mask: torch.Tensor, cells: tuple[int, int]) -> tuple[int, int]:
    """The feature cell under the mask's centre of mass."""
    rows, cols = torch.nonzero(mask, as_tuple=True)
    scale_r, scale_c = cells[0] / mask.shape[0], cells[1] / mask.shape[1]
    row = min(cells[0] - 1, int(rows.float().mean() * scale_r))
    col = min(cells[1] - 1, int(cols.float().mean() * scale_c))
    return row, col

"""``PatchSource``: the training patches of the denoiser, cut from the few shots and the normal images.

Each batch mixes

* defect patches cut around each shot's mask (jittered scale/position, flips,
  rot90, mild gain/offset), labelled with their type's token only (SeaS
  decoupled anomaly alignment), and
* normal patches cut from normal images at the same scales, carrying a real
  shot's mask as the inpainting region and the NORMAL token, trained on the
  whole patch (SeaS normal alignment: the model also learns normal variation).

A shot that generation would tile into windows (``patches.defect_windows``) is cropped to windows
of that size, so the model learns each defect at the scale it will be asked to draw it.

Example:
    >>> source = PatchSource(shots, normals, ["crack", "dent"], patch_size=32, fill=0.5)
    >>> batch = source.draw(32, normal_fraction=0.25, generator=torch.Generator().manual_seed(0))
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from anomaly_synth_aug.data.sample import AnomalySample
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators.diffusion.model import NORMAL_TOKEN
from anomaly_synth_aug.generators.diffusion.patches import (
    CropBox,
    channels_for_model,
    context_box,
    crop_image_patch,
    crop_mask_patch,
    defect_windows,
    mask_bbox,
)


@dataclass
class PatchBatch:
    """A training batch: patches in [0, 1], their masks, token indices and which ones are defects."""

    images: torch.Tensor  # [B, C, p, p] float in [0, 1]
    masks: torch.Tensor  # [B, 1, p, p] bool
    tokens: torch.Tensor  # [B] long: 0 normal, k + 1 defect type k
    is_defect: torch.Tensor  # [B] bool


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * float(torch.rand((), generator=generator))


def _index(count: int, generator: torch.Generator | None) -> int:
    return int(torch.randint(count, (), generator=generator))


class PatchSource:
    """Draws augmented training patches from the shots and the normal images.

    Args:
        shots: defect samples (non-empty masks), each of a type in ``defect_types``.
        normal_images: float ``[C, H, W]`` normal images (any sizes).
        defect_types: ordered type names; type ``k`` gets token ``k + 1``.
        patch_size: side of the patches.
        fill: nominal fraction of the patch side the mask bbox spans (jittered by ``fill_jitter``).
        max_aspect: largest aspect ratio of the crop box (see ``context_box``).
        augment: flips, rot90 and gain/offset jitter (off for tests that need exact crops).
        channels: image channels the model works in (1 for grey datasets, see ``channels_for_model``).
        window_scale, max_windows: a shot that generation would tile into windows (``defect_windows``)
            is cropped to a window of the same size, around one of its mask pixels.
    """

    def __init__(
        self,
        shots: Sequence[AnomalySample],
        normal_images: Sequence[torch.Tensor],
        defect_types: Sequence[str],
        *,
        patch_size: int,
        fill: float,
        fill_jitter: float = 1.3,
        max_aspect: float = 1.0,
        augment: bool = True,
        channels: int = 3,
        window_scale: float | None = None,
        max_windows: int = 4,
    ) -> None:
        self.defect_types = list(defect_types)
        self.patch_size = patch_size
        self.fill = fill
        self.fill_jitter = fill_jitter
        self.max_aspect = max_aspect
        self.augment = augment
        self.normal_images = [channels_for_model(image, channels) for image in normal_images]
        self.shots = list(shots)
        self._shot_images = [channels_for_model(shot.image, channels) for shot in self.shots]
        self._bboxes = [mask_bbox(shot.mask) for shot in self.shots]
        self._window_sides = [
            self._window_side(shot.mask, bbox, window_scale, max_windows)
            for shot, bbox in zip(self.shots, self._bboxes, strict=True)
        ]
        self._mask_pixels = [
            torch.nonzero(shot.mask) if side is not None else None
            for shot, side in zip(self.shots, self._window_sides, strict=True)
        ]
        self._by_type: list[list[int]] = [[] for _ in self.defect_types]
        for index, shot in enumerate(self.shots):
            self._by_type[self.defect_types.index(shot.defect_type)].append(index)
        empty = [name for name, members in zip(self.defect_types, self._by_type, strict=True) if not members]
        if empty:
            raise InvalidInputError(f"no shots for defect types {empty}", fix="pass at least one shot per defect type")

    def draw(self, batch_size: int, normal_fraction: float, generator: torch.Generator | None) -> PatchBatch:
        """``batch_size`` patches, ``round(batch_size * normal_fraction)`` of them normal (if normal images exist)."""
        n_normal = round(batch_size * normal_fraction) if self.normal_images else 0
        images, masks, tokens = [], [], []
        for position in range(batch_size):
            is_normal = position < n_normal
            type_index = _index(len(self.defect_types), generator)  # uniform over types, then over shots
            shot_index = self._by_type[type_index][_index(len(self._by_type[type_index]), generator)]
            image, mask, box = self._shot_patch(shot_index, generator)
            if is_normal:  # the shot's mask at its own scale, as the inpainting region of a normal patch
                image = self._normal_patch((box.height, box.width), generator)
                mask = self._augment_geometry(mask, generator)
            images.append(self._augment_gain(image, generator))
            masks.append(mask)
            tokens.append(NORMAL_TOKEN if is_normal else type_index + 1)
        token_tensor = torch.tensor(tokens, dtype=torch.long)
        return PatchBatch(
            images=torch.stack(images),
            masks=torch.stack(masks),
            tokens=token_tensor,
            is_defect=token_tensor != NORMAL_TOKEN,
        )

    def _jittered_box(self, bbox: CropBox, image_size: tuple[int, int], generator: torch.Generator | None) -> CropBox:
        fill, offset = self.fill, (0.5, 0.5)
        if self.augment:
            scale = math.exp(_uniform(-math.log(self.fill_jitter), math.log(self.fill_jitter), generator))
            offset = (_uniform(0.2, 0.8, generator), _uniform(0.2, 0.8, generator))
            fill = min(1.0, self.fill * scale)
        return context_box(
            bbox, image_size, patch_size=self.patch_size, fill=fill, offset=offset, max_aspect=self.max_aspect
        )

    def _window_side(
        self, mask: torch.Tensor, bbox: CropBox, window_scale: float | None, max_windows: int
    ) -> int | None:
        """Side of the windows generation would tile this shot's mask into; None when it keeps one box."""
        box = context_box(
            bbox, tuple(mask.shape[-2:]), patch_size=self.patch_size, fill=self.fill, max_aspect=self.max_aspect
        )
        windows = defect_windows(
            mask, box, patch_size=self.patch_size, window_scale=window_scale, max_windows=max_windows
        )
        return None if windows == [box] else max(windows[0].height, windows[0].width)

    def _defect_window(self, index: int, side: int, generator: torch.Generator | None) -> CropBox:
        """A window of about ``side`` (jittered like the fill) around a random pixel of the shot's mask."""
        height, width = self.shots[index].mask.shape[-2:]
        pixels = self._mask_pixels[index]
        assert pixels is not None  # set for every shot with a window side
        row, col = (int(v) for v in pixels[_index(len(pixels), generator)])
        offset = (0.5, 0.5)
        if self.augment:
            scale = math.exp(_uniform(-math.log(self.fill_jitter), math.log(self.fill_jitter), generator))
            side = max(self.patch_size, round(side * scale))
            offset = (_uniform(0.2, 0.8, generator), _uniform(0.2, 0.8, generator))
        side_h, side_w = min(side, height), min(side, width)
        top = min(max(0, row - round(offset[0] * side_h)), height - side_h)
        left = min(max(0, col - round(offset[1] * side_w)), width - side_w)
        return CropBox(top, left, side_h, side_w)

    def _shot_patch(
        self, index: int, generator: torch.Generator | None
    ) -> tuple[torch.Tensor, torch.Tensor, CropBox]:
        shot = self.shots[index]
        side = self._window_sides[index]
        if side is None:
            box = self._jittered_box(self._bboxes[index], tuple(shot.image.shape[-2:]), generator)
        else:
            box = self._defect_window(index, side, generator)
        image = crop_image_patch(self._shot_images[index], box, self.patch_size)
        mask = crop_mask_patch(shot.mask, box, self.patch_size)
        both = self._augment_geometry(torch.cat([image, mask.to(image.dtype)]), generator)
        return both[:-1], both[-1:] > 0.5, box

    def _normal_patch(self, box_size: tuple[int, int], generator: torch.Generator | None) -> torch.Tensor:
        image = self.normal_images[_index(len(self.normal_images), generator)]
        height, width = image.shape[-2:]
        box_h, box_w = min(box_size[0], height), min(box_size[1], width)
        box = CropBox(_index(height - box_h + 1, generator), _index(width - box_w + 1, generator), box_h, box_w)
        return self._augment_geometry(crop_image_patch(image, box, self.patch_size), generator)

    def _augment_geometry(self, patch: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        if not self.augment:
            return patch
        if _index(2, generator):
            patch = patch.flip(-1)
        if _index(2, generator):
            patch = patch.flip(-2)
        return torch.rot90(patch, _index(4, generator), dims=(-2, -1))

    def _augment_gain(self, image: torch.Tensor, generator: torch.Generator | None) -> torch.Tensor:
        """Mild global gain/offset so a defect is learned relative to its surroundings, not absolute grey levels."""
        if not self.augment:
            return image
        return (image * _uniform(0.9, 1.1, generator) + _uniform(-0.05, 0.05, generator)).clamp(0.0, 1.0)


__all__ = ["PatchBatch", "PatchSource"]

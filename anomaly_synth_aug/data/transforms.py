"""torchvision v2 transforms for training at native resolution: defect-aware crops and shot augmentation.

Downscaling a whole image to 128 px erases thin cracks and scratches, and squashing magnetic tile's
varying aspect ratios into a square distorts them. Supervised detectors here therefore train on
fixed-size crops at native resolution and predict on the whole image. A uniform random crop of an
image with a small defect mostly misses the defect, so ``DefectCentredRandomCrop`` places the
window over a random defect pixel (image and mask cropped together).

Example:
    >>> from anomalib.data import Folder
    >>> folder = Folder(..., train_augmentations=native_crop_augmentations(256))
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import PIL.Image
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as F

from anomaly_synth_aug.errors import InvalidInputError


class DefectCentredRandomCrop(v2.RandomCrop):
    """``RandomCrop`` whose window contains defect pixels whenever the mask has any.

    With probability ``defect_probability`` (and a non-empty ``Mask`` among the inputs) one defect pixel
    is drawn uniformly and the window is drawn uniformly among the positions that contain it; otherwise
    the window is uniform as in ``RandomCrop``. Images smaller than ``size`` are padded
    (``padding_mode``, ``"reflect"`` by default, applied to image and mask alike, so a mirrored defect
    stays labelled).

    Args:
        size: crop height and width (an int for a square).
        defect_probability: chance of centring on a defect when there is one, in [0, 1].
        padding_mode: how images smaller than ``size`` are padded (see ``v2.RandomCrop``).
    """

    def __init__(
        self,
        size: int | Sequence[int],
        defect_probability: float = 1.0,
        padding_mode: str = "reflect",
    ) -> None:
        if not 0.0 <= defect_probability <= 1.0:
            raise InvalidInputError(
                f"defect_probability must be in [0, 1], got {defect_probability}", fix="use e.g. 1.0"
            )
        super().__init__(size, pad_if_needed=True, padding_mode=padding_mode)  # type: ignore[arg-type]
        self.defect_probability = defect_probability

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        params = super().make_params(flat_inputs)
        height, width = F.get_size(next(inpt for inpt in flat_inputs if isinstance(inpt, torch.Tensor)))
        pad_left, pad_top, pad_right, pad_bottom = params["padding"]
        # reflection needs padding smaller than the side; far smaller images repeat their edge
        fits = max(pad_top, pad_bottom) < height and max(pad_left, pad_right) < width
        params["padding_mode"] = self.padding_mode if fits or self.padding_mode != "reflect" else "edge"
        mask = next((inpt for inpt in flat_inputs if isinstance(inpt, tv_tensors.Mask)), None)
        if mask is None or not bool(mask.any()) or float(torch.rand(())) >= self.defect_probability:
            return params
        pad_left, pad_top, pad_right, pad_bottom = params["padding"]
        defects = mask.as_subclass(torch.Tensor).reshape(-1, *mask.shape[-2:]).any(0)
        padded = torch.nn.functional.pad(defects, (pad_left, pad_right, pad_top, pad_bottom))
        ys, xs = torch.nonzero(padded, as_tuple=True)
        pick = int(torch.randint(len(ys), ()))
        y, x = int(ys[pick]), int(xs[pick])
        crop_height, crop_width = params["height"], params["width"]
        padded_height, padded_width = padded.shape
        top = _window_start(y, crop_height, padded_height)
        left = _window_start(x, crop_width, padded_width)
        params.update(top=top, left=left, needs_crop=padded_height > crop_height or padded_width > crop_width)
        return params

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["needs_pad"]:
            inpt = self._call_kernel(F.pad, inpt, padding=params["padding"], padding_mode=params["padding_mode"])
        if params["needs_crop"]:
            inpt = self._call_kernel(
                F.crop, inpt, top=params["top"], left=params["left"], height=params["height"], width=params["width"]
            )
        return inpt


def _window_start(position: int, window: int, extent: int) -> int:
    """A uniform start of a ``window``-long span inside ``[0, extent)`` that covers ``position``."""
    low = max(0, position - window + 1)
    high = min(position, extent - window)
    return int(torch.randint(low, high + 1, ()))


#: Counter-clockwise quarter turns, as ``torch.rot90`` makes them on tensors.
_PIL_TURNS = {1: PIL.Image.Transpose.ROTATE_90, 2: PIL.Image.Transpose.ROTATE_180, 3: PIL.Image.Transpose.ROTATE_270}


class RandomRot90(v2.Transform):
    """Rotate by a uniformly drawn multiple of 90 degrees (image and mask together).

    Right angles keep every pixel (no interpolation, no filled corners), which is what a few
    real shots should get: their defects must not be blurred by the augmentation.

    A quarter turn swaps a non-square image's height and width; unless a crop follows, anomalib's
    collate would resize it back to its batch's size and stretch its defect. So by default
    (``keep_shape=True``) a non-square image turns by 0 or 180 degrees only; square images
    draw all four turns either way.

    Args:
        keep_shape: turn non-square images by half turns only, so their shape never changes.

    Example:
        >>> image, mask = RandomRot90()(tv_tensors.Image(image), tv_tensors.Mask(mask))
    """

    def __init__(self, keep_shape: bool = True) -> None:
        super().__init__()
        self.keep_shape = keep_shape

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        turns = int(torch.randint(4, ()))
        images = [inpt for inpt in flat_inputs if isinstance(inpt, (torch.Tensor, PIL.Image.Image))]
        if self.keep_shape and images:
            height, width = F.get_size(images[0])
            if height != width:
                turns = 2 * (turns % 2)  # the same single draw: even draws keep the image, odd ones turn it over
        return {"turns": turns}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        if params["turns"] == 0:
            return inpt
        if isinstance(inpt, PIL.Image.Image):
            return inpt.transpose(_PIL_TURNS[params["turns"]])
        if not isinstance(inpt, torch.Tensor):
            return inpt  # labels and the like
        rotated = torch.rot90(inpt.as_subclass(torch.Tensor), params["turns"], dims=(-2, -1))
        return tv_tensors.wrap(rotated, like=inpt) if isinstance(inpt, tv_tensors.TVTensor) else rotated


def shot_augmentations(intensity_jitter: float = 0.1, *, keep_shape: bool = True) -> v2.Compose:
    """Flips, right-angle rotations and brightness/contrast jitter for training on the real shots.

    Geometric transforms move image and mask together; the jitter touches the image only.
    ``keep_shape`` (see ``RandomRot90``) may be False when a crop follows, so that non-square
    shots also get quarter turns.

    Example:
        >>> SyntheticAnomalyDataModule(folder, mode="shots", shot_transform=shot_augmentations(keep_shape=False))
    """
    return v2.Compose(
        [
            v2.RandomHorizontalFlip(),
            v2.RandomVerticalFlip(),
            RandomRot90(keep_shape=keep_shape),
            v2.ColorJitter(brightness=intensity_jitter, contrast=intensity_jitter),
        ]
    )


def native_crop_augmentations(crop_size: int, *, flips: bool = True) -> v2.Compose:
    """Training augmentations for native-resolution detectors: a defect-centred crop, then flips.

    ``crop_size`` should be a multiple of 32 for U-Net-style detectors.
    """
    steps: list[v2.Transform] = [DefectCentredRandomCrop(crop_size)]
    if flips:
        steps += [v2.RandomHorizontalFlip(), v2.RandomVerticalFlip()]
    return v2.Compose(steps)


def pad_to_multiple(images: torch.Tensor, multiple: int) -> tuple[torch.Tensor, tuple[int, int]]:
    """Pad ``[B, C, H, W]`` at the bottom and right to sides divisible by ``multiple``.

    Reflection padding (replicate where the image is too small to reflect) keeps the padded border
    looking like surface rather than a black frame. Returns the padded batch and the original size.
    """
    height, width = images.shape[-2:]
    pad_h, pad_w = (-height) % multiple, (-width) % multiple
    if pad_h == 0 and pad_w == 0:
        return images, (height, width)
    mode = "reflect" if pad_h < height and pad_w < width else "replicate"
    return torch.nn.functional.pad(images, (0, pad_w, 0, pad_h), mode=mode), (height, width)


__all__ = [
    "DefectCentredRandomCrop",
    "RandomRot90",
    "native_crop_augmentations",
    "pad_to_multiple",
    "shot_augmentations",
]

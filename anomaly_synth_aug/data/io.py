"""Reading images and masks with errors that name the file and the fix.

Masks are binarised here with a documented threshold (``MASK_THRESHOLD``, i.e.
pixel > 127 of 255) because real datasets ship soft, anti-aliased masks and
anomalib's own reader turns every non-zero pixel into "defect", which inflates
defect regions at the edges. Masks that never reach the threshold but are not
empty would be misread by that rule, so they are recognised first: 0/1 masks (what
many labelling tools write), palette masks whose defect colour turns dark in
gray, 16-bit masks holding 0/255. Their non-zero pixels are read as defect, with a
warning once per folder. 16-bit files are scaled to 8 bits instead of being
clipped (a 16-bit grayscale photo would otherwise come out all white).
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from anomaly_synth_aug.data.sample import AnomalySample, to_rgb_float
from anomaly_synth_aug.errors import CorruptFileError, InvalidInputError, MaskError

#: A mask pixel is "defect" when its 8-bit value is strictly greater than this.
MASK_THRESHOLD = 127

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
#: Pillow modes of single-channel images with more than 8 bits per pixel.
_WIDE_GRAY_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I")

logger = logging.getLogger(__name__)
_warned_binary_folders: set[Path] = set()


def _open(path: Path, mode: str, *, raw_gray: bool = False) -> np.ndarray:
    """Decode ``path`` into ``mode`` (8 bits per channel).

    16-bit grayscale is scaled to 8 bits (Pillow's ``convert`` would clip it to 255). With
    ``raw_gray`` a 16-bit grayscale file is returned as its own ``uint16`` values instead.
    """
    if not path.is_file():
        raise InvalidInputError("file not found", path=path, fix="check the path and the dataset layout")
    try:
        with Image.open(path) as img:
            img.load()
            if img.mode in _WIDE_GRAY_MODES:
                wide = np.asarray(img).astype(np.int64)
                if raw_gray:
                    return wide.clip(0, 65535).astype(np.uint16)
                scaled = np.round(wide.clip(0, 65535) / 257.0).astype(np.uint8)  # 65535 -> 255
                return np.asarray(Image.fromarray(scaled, mode="L").convert(mode))
            return np.asarray(img.convert(mode))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise CorruptFileError(
            f"cannot decode image ({exc.__class__.__name__}: {exc})",
            path=path,
            fix="re-export or remove the corrupt file",
        ) from exc


def image_size(path: str | Path) -> tuple[int, int]:
    """``(H, W)`` of an image file, after decoding all of it (a truncated or corrupt file is an error naming it)."""
    path = Path(path)
    if not path.is_file():
        raise InvalidInputError("file not found", path=path, fix="check the path and the dataset layout")
    try:
        with Image.open(path) as img:
            img.load()
            return (img.height, img.width)
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise CorruptFileError(
            f"cannot decode image ({exc.__class__.__name__}: {exc})",
            path=path,
            fix="re-export or remove the corrupt file",
        ) from exc


def load_image(path: str | Path) -> torch.Tensor:
    """Read an image as float ``[3, H, W]`` in ``[0, 1]`` (grayscale promoted to RGB, 16-bit scaled)."""
    array = _open(Path(path), "RGB")
    return to_rgb_float(torch.from_numpy(array.copy()).permute(2, 0, 1), name=path)


def _binarise(array: np.ndarray, threshold: int, path: Path) -> np.ndarray:
    """Defect pixels of a mask array: ``> threshold`` (of 255), or non-zero when no pixel reaches it.

    A mask whose largest value is above 0 but not above ``threshold`` marks its defect with small
    values (0/1 labels, a palette index, 16-bit 0/255); thresholding would empty it, so its non-zero
    pixels are the defect, with a warning once per folder.
    """
    scaled = np.round(array / 257.0) if array.dtype == np.uint16 else array
    largest = int(array.max(initial=0))
    if largest > 0 and scaled.max(initial=0) <= threshold:
        folder = path.parent.resolve()
        if folder not in _warned_binary_folders:
            _warned_binary_folders.add(folder)
            logger.warning(
                "%s holds masks whose largest value (%d in %s) does not reach the threshold %d: reading every "
                "non-zero pixel as defect (0/1 labels, palette indices or 16-bit 0/255 masks). Save masks as "
                "0/255 to silence this.",
                folder,
                largest,
                path.name,
                threshold,
            )
        return array > 0
    return scaled > threshold


def load_mask(
    path: str | Path,
    *,
    threshold: int = MASK_THRESHOLD,
    expected_size: tuple[int, int] | None = None,
    require_defect: bool = False,
) -> torch.Tensor:
    """Read a mask as bool ``[H, W]``: pixel > ``threshold`` (of 255) is defect.

    A mask that is not empty but never exceeds ``threshold`` (0/1 labels, palette indices, 16-bit
    0/255) is read as non-zero = defect (warned once per folder). 16-bit masks are compared on the
    8-bit scale (65535 -> 255).

    Args:
        path: mask file (any single- or multi-channel image; converted to 8-bit gray).
        threshold: binarisation threshold; soft masks are binarised, never passed on soft.
        expected_size: ``(H, W)`` of the image this mask belongs to; a mismatch is an error.
        require_defect: raise when the binarised mask is empty (a defect shot needs pixels).
    """
    path = Path(path)
    mask = torch.from_numpy(_binarise(_open(path, "L", raw_gray=True), threshold, path))
    if expected_size is not None and tuple(mask.shape) != tuple(expected_size):
        raise MaskError(
            f"mask size {tuple(mask.shape)} (H, W) differs from its image size {tuple(expected_size)}",
            path=path,
            fix="save the mask at the image's resolution",
        )
    if require_defect and not bool(mask.any()):
        raise MaskError(
            f"mask is empty after binarising at > {threshold}",
            path=path,
            fix="draw the defect region in the mask, or leave this image out of the few-shot set",
        )
    return mask


def load_sample(
    image_path: str | Path,
    mask_path: str | Path | None,
    defect_type: str,
    *,
    threshold: int = MASK_THRESHOLD,
    require_defect: bool = False,
) -> AnomalySample:
    """Read an image and (for anomalies) its mask into an ``AnomalySample``."""
    image = load_image(image_path)
    if mask_path is None or str(mask_path) in ("", "nan"):
        if require_defect:
            raise MaskError(
                "this defect image has no mask",
                path=image_path,
                fix="add <stem>_mask.png under ground_truth/<defect_type>/",
            )
        return AnomalySample.normal(image, image_path=str(image_path))
    mask = load_mask(
        mask_path, threshold=threshold, expected_size=tuple(image.shape[-2:]), require_defect=require_defect
    )
    return AnomalySample(
        image=image,
        mask=mask,
        label=1,
        defect_type=defect_type,
        image_path=str(image_path),
        mask_path=str(mask_path),
    )

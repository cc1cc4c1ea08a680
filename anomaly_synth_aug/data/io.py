"""Reading images and masks with errors that name the file and the fix.

Masks are binarised here with a documented threshold (``MASK_THRESHOLD``, i.e.
pixel > 127 of 255) because real datasets ship soft, anti-aliased masks and
anomalib's own reader turns every non-zero pixel into "defect", which inflates
defect regions at the edges.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from anomaly_synth_aug.data.sample import AnomalySample, to_rgb_float
from anomaly_synth_aug.errors import CorruptFileError, InvalidInputError, MaskError

#: A mask pixel is "defect" when its 8-bit value is strictly greater than this.
MASK_THRESHOLD = 127

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _open(path: Path, mode: str) -> np.ndarray:
    if not path.is_file():
        raise InvalidInputError("file not found", path=path, fix="check the path and the dataset layout")
    try:
        with Image.open(path) as img:
            img.load()
            return np.asarray(img.convert(mode))
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
        raise CorruptFileError(
            f"cannot decode image ({exc.__class__.__name__}: {exc})",
            path=path,
            fix="re-export or remove the corrupt file",
        ) from exc


def load_image(path: str | Path) -> torch.Tensor:
    """Read an image as float ``[3, H, W]`` in ``[0, 1]`` (grayscale promoted to RGB)."""
    array = _open(Path(path), "RGB")
    return to_rgb_float(torch.from_numpy(array.copy()).permute(2, 0, 1), name=path)


def load_mask(
    path: str | Path,
    *,
    threshold: int = MASK_THRESHOLD,
    expected_size: tuple[int, int] | None = None,
    require_defect: bool = False,
) -> torch.Tensor:
    """Read a mask as bool ``[H, W]``: pixel > ``threshold`` (of 255) is defect.

    Args:
        path: mask file (any single- or multi-channel image; converted to 8-bit gray).
        threshold: binarisation threshold; soft masks are binarised, never passed on soft.
        expected_size: ``(H, W)`` of the image this mask belongs to; a mismatch is an error.
        require_defect: raise when the binarised mask is empty (a defect shot needs pixels).
    """
    path = Path(path)
    array = _open(path, "L")
    mask = torch.from_numpy(array > threshold)
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
    mask = load_mask(mask_path, threshold=threshold, expected_size=tuple(image.shape[-2:]), require_defect=require_defect)
    return AnomalySample(
        image=image,
        mask=mask,
        label=1,
        defect_type=defect_type,
        image_path=str(image_path),
        mask_path=str(mask_path),
    )

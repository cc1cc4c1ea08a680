"""Samples as 8-bit PNG bytes: lossless, readable by any tool, and hashed before they are written.

Encoding to bytes first (rather than saving to a path) lets the cache write each file atomically
and record its sha256 without reading it back.
"""

from __future__ import annotations

import io

import numpy as np
import torch
from PIL import Image


def _png_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(array).save(buffer, format="PNG")
    return buffer.getvalue()


def encode_image_png(image: torch.Tensor) -> bytes:
    """Float ``[3, H, W]`` in [0, 1] (or uint8) as 8-bit RGB PNG bytes."""
    if image.dtype != torch.uint8:
        image = (image.detach().float().clamp(0, 1) * 255).round().to(torch.uint8)
    return _png_bytes(image.cpu().permute(1, 2, 0).contiguous().numpy())


def encode_mask_png(mask: torch.Tensor) -> bytes:
    """Bool ``[H, W]`` as 8-bit grayscale PNG bytes, 255 = defect (read back with ``load_mask``)."""
    return _png_bytes(mask.detach().cpu().numpy().astype(np.uint8) * 255)

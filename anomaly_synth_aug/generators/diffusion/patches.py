"""Crop/paste geometry: the defect is generated in a square patch around its mask, at native scale when it is small.

Generating the whole image would waste compute on background and shrink small
defects to nothing. Instead a context box is cut around the mask's bounding box
(the bbox fills ``fill`` of each box side, the box is never smaller than the
patch, so small defects are modelled 1:1, and long thin defects get a box of
bounded aspect ratio so they stay visible), resized to ``patch_size`` and, after
generation, resized back and pasted *only inside a mask*, so every pixel outside
it is bit-identical to the input. Training and generation use the same rule, so
the model always sees defects at the scale it will be asked to draw them. With ``window_scale``
a defect whose box is larger than a window is generated in several windows of finer scale instead
(``defect_windows``), and training crops such defects to windows of the same size.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from anomaly_synth_aug.errors import InvalidInputError, MaskError


@dataclass(frozen=True)
class CropBox:
    """An axis-aligned box in image pixels (``top``/``left`` inclusive, ``height``/``width`` > 0)."""

    top: int
    left: int
    height: int
    width: int

    @property
    def bottom(self) -> int:
        return self.top + self.height

    @property
    def right(self) -> int:
        return self.left + self.width

    def slices(self) -> tuple[slice, slice]:
        """Row and column slices selecting the box from an ``[..., H, W]`` tensor."""
        return slice(self.top, self.bottom), slice(self.left, self.right)


def mask_bbox(mask: torch.Tensor) -> CropBox:
    """Tight bounding box of a bool ``[H, W]`` mask."""
    rows = torch.nonzero(mask.any(dim=1)).flatten()
    cols = torch.nonzero(mask.any(dim=0)).flatten()
    if rows.numel() == 0:
        raise MaskError("cannot place a patch around an empty mask", fix="pass a mask with at least one pixel set")
    top, left = int(rows[0]), int(cols[0])
    return CropBox(top, left, int(rows[-1]) - top + 1, int(cols[-1]) - left + 1)


def context_box(
    bbox: CropBox,
    image_size: tuple[int, int],
    *,
    patch_size: int,
    fill: float,
    offset: tuple[float, float] = (0.5, 0.5),
    max_aspect: float = 1.0,
) -> CropBox:
    """The box to generate in, clamped to the image and always containing ``bbox``.

    Each side is ``max(patch_size, bbox side / fill)``; the longer side is then at most
    ``max_aspect`` times the shorter one (1.0: a square of the longest side). A square box
    shrinks a long thin defect (a crack) until it is sub-pixel in the patch; allowing an
    aspect ratio keeps its width. ``offset`` (each in [0, 1]) says where the bbox sits inside
    the box along (rows, cols): 0.5 centres it, other values shift the context (training
    jitter). Where the image is smaller than a side, that side is the whole image. The patch
    is resized (anisotropically if need be) and pasted back with the inverse resize.
    """
    if not 0.0 < fill <= 1.0:
        raise InvalidInputError(f"fill must be in (0, 1], got {fill}", fix="use e.g. 0.5 (bbox spans half the patch)")
    if max_aspect < 1.0:
        raise InvalidInputError(f"max_aspect must be >= 1, got {max_aspect}", fix="use 1.0 for square boxes")
    height, width = image_size
    if bbox.top < 0 or bbox.left < 0 or bbox.bottom > height or bbox.right > width:
        raise MaskError(f"mask bbox {bbox} lies outside the image of size {image_size}", fix="pass the image's own mask")
    side_h = max(patch_size, math.ceil(bbox.height / fill))
    side_w = max(patch_size, math.ceil(bbox.width / fill))
    longest = max(side_h, side_w)
    side_h, side_w = max(side_h, math.ceil(longest / max_aspect)), max(side_w, math.ceil(longest / max_aspect))
    box_h, box_w = min(side_h, height), min(side_w, width)
    top = _place(bbox.top, bbox.bottom, box_h, height, offset[0])
    left = _place(bbox.left, bbox.right, box_w, width, offset[1])
    return CropBox(top, left, box_h, box_w)


#: Each retry of the window search coarsens the scale by this factor.
_SCALE_STEP = 1.25


def check_window_settings(window_scale: float | None, max_windows: int) -> None:
    """``window_scale`` is None or at least 1 native pixel per patch pixel; ``max_windows`` at least 1."""
    if (window_scale is not None and window_scale < 1.0) or max_windows < 1:
        raise InvalidInputError(
            f"got window_scale={window_scale}, max_windows={max_windows}",
            fix="use window_scale >= 1 (e.g. 2.0) or None, and max_windows >= 1",
        )


def defect_windows(
    mask: torch.Tensor,
    box: CropBox,
    *,
    patch_size: int,
    window_scale: float | None,
    max_windows: int = 4,
    overlap: float = 0.25,
) -> list[CropBox]:
    """The boxes one defect is generated in: ``box`` itself, or windows whose scale follows the defect.

    A context box larger than the patch is generated coarse and upscaled: a large defect loses its
    fine structure, and a thin crack in a long box becomes sub-pixel in the patch. With
    ``window_scale`` (native pixels per patch pixel), square windows of side ``patch_size *
    window_scale`` tile the mask's bounding box instead (neighbours overlap by ``overlap`` of a side)
    and are generated one after another, each seeing what the earlier ones painted. A defect that
    would need more than ``max_windows`` windows is tiled at the finest coarser scale (in steps of
    x1.25) that needs at most that many, which bounds the cost per defect; one that fits a window,
    or needs one as large as ``box``, keeps ``box``. Only windows holding mask pixels that no earlier
    window held are kept, in row-major order.

    Example:
        >>> defect_windows(mask, box, patch_size=32, window_scale=2.0)  # [box] when box fits in 64 px
    """
    check_window_settings(window_scale, max_windows)
    if window_scale is None:
        return [box]
    if not 0.0 <= overlap < 1.0:
        raise InvalidInputError(f"overlap must be in [0, 1), got {overlap}", fix="use e.g. 0.25")
    bbox = mask_bbox(mask)
    scale = window_scale
    while True:
        side = round(patch_size * scale)
        if side >= max(box.height, box.width):
            return [box]
        windows = _tiles(mask, bbox, side, overlap)
        if len(windows) <= max_windows:
            return windows
        scale *= _SCALE_STEP


def _tiles(mask: torch.Tensor, bbox: CropBox, side: int, overlap: float) -> list[CropBox]:
    """Windows of ``side`` over ``bbox`` that each add mask pixels no earlier window held (row-major)."""
    height, width = mask.shape[-2:]
    side_h, side_w = min(side, height), min(side, width)
    windows: list[CropBox] = []
    covered = torch.zeros_like(mask, dtype=torch.bool)
    for top in _window_starts(bbox.top, bbox.bottom, side_h, height, overlap):
        for left in _window_starts(bbox.left, bbox.right, side_w, width, overlap):
            window = CropBox(top, left, side_h, side_w)
            rows, cols = window.slices()
            if bool((mask[rows, cols] & ~covered[rows, cols]).any()):
                windows.append(window)
                covered[rows, cols] = True
    return windows


def _window_starts(start: int, end: int, side: int, limit: int, overlap: float) -> list[int]:
    """Starts of windows of ``side`` covering ``[start, end)`` with the given overlap, inside ``[0, limit)``."""
    span = end - start
    if span <= side:
        return [_place(start, end, side, limit, 0.5)]
    count = math.ceil((span - side) / (side * (1.0 - overlap))) + 1
    starts = [start + round(i * (span - side) / (count - 1)) for i in range(count)]
    return [min(max(0, value), limit - side) for value in starts]


def enclosing_box(boxes: list[CropBox]) -> CropBox:
    """The smallest box holding every box of ``boxes``."""
    top, left = min(b.top for b in boxes), min(b.left for b in boxes)
    bottom, right = max(b.bottom for b in boxes), max(b.right for b in boxes)
    return CropBox(top, left, bottom - top, right - left)


def _place(start: int, end: int, length: int, limit: int, offset: float) -> int:
    """Start of a window of ``length`` inside ``[0, limit)`` containing ``[start, end)``, at ``offset`` of its range."""
    lowest = max(0, end - length)
    highest = min(start, limit - length)
    return lowest + round(min(max(offset, 0.0), 1.0) * (highest - lowest))


def is_grayscale(image: torch.Tensor) -> bool:
    """True when all channels of ``[C, H, W]`` are identical (a grey image promoted to RGB)."""
    return bool((image == image[:1]).all())


def channels_for_model(image: torch.Tensor, channels: int) -> torch.Tensor:
    """``image`` with the channel count the model works in: itself, or its grey level for a 1-channel model.

    Grey datasets (e.g. Magnetic Tile) are modelled in one channel: a third of the work, and
    no colour noise from a small model that would have to learn that R = G = B.
    """
    if image.shape[0] == channels:
        return image
    if channels == 1:
        return image.mean(dim=0, keepdim=True)
    raise InvalidInputError(
        f"cannot turn a {image.shape[0]}-channel image into {channels} channels",
        fix="pass RGB or grey images",
    )


def crop_image_patch(image: torch.Tensor, box: CropBox, patch_size: int) -> torch.Tensor:
    """``[C, H, W]`` image -> ``[C, p, p]`` patch (antialiased bilinear, so downscaling does not alias)."""
    patch = TF.resized_crop(image, box.top, box.left, box.height, box.width, [patch_size, patch_size], antialias=True)
    return patch.clamp(0.0, 1.0)


def crop_mask_patch(mask: torch.Tensor, box: CropBox, patch_size: int) -> torch.Tensor:
    """Bool ``[H, W]`` mask -> bool ``[1, p, p]``: a patch pixel is defect if any pixel it covers is.

    Any-coverage (not nearest) keeps thin defects such as cracks when the box is downscaled.
    """
    region = mask[box.slices()].float()[None, None]
    if box.height >= patch_size and box.width >= patch_size:
        coverage = F.adaptive_max_pool2d(region, patch_size)
    else:  # a side smaller than the patch (tiny image): nearest upsampling keeps the mask binary
        coverage = F.interpolate(region, size=(patch_size, patch_size), mode="nearest")
    return coverage[0] > 0


def uncrop_patch(patch: torch.Tensor, box: CropBox) -> torch.Tensor:
    """``[C, p, p]`` patch -> ``[C, box.height, box.width]`` at the image's native resolution."""
    restored = TF.resize(patch, [box.height, box.width], antialias=True)
    return restored.clamp(0.0, 1.0)


def fine_detail(image: torch.Tensor, box: CropBox, patch_size: int) -> torch.Tensor:
    """What of the box's content is finer than a ``patch_size`` patch can hold: signed ``[C, box.height, box.width]``.

    A box larger than the patch is generated at the patch's resolution and upscaled, so without this
    band a large defect comes out smooth where the surface is textured (a large "uneven" region of
    magnetic tile became a flat blur that erased the tile's stripes). The generator changes the
    coarse band; adding back the target's own fine band (the box minus its round trip through the
    patch resolution, i.e. a Laplacian-pyramid split at the patch's scale) keeps the surface's texture
    under the change. For a box no larger than the patch the round trip barely changes it and the band
    is about zero, so small defects, generated 1:1, stay as generated.

    Example:
        >>> restored = uncrop_patch(patch, box) + fine_detail(image, box, patch_size=32)
    """
    return image[(slice(None), *box.slices())] - uncrop_patch(crop_image_patch(image, box, patch_size), box)


def paste_patch(image: torch.Tensor, restored: torch.Tensor, box: CropBox, region: torch.Tensor) -> torch.Tensor:
    """Copy ``restored`` (native-size box content) into a copy of ``image`` only where ``region`` is True.

    ``region`` is a bool ``[H, W]`` mask that must lie inside ``box``; every other pixel of the
    result is the input pixel, bit for bit.
    """
    rows, cols = box.slices()
    outside = region.clone()
    outside[rows, cols] = False
    if bool(outside.any()):
        raise MaskError(
            f"paste region reaches outside the generated box {box}",
            fix="pass a region inside the box (the mask the patch was generated for, or its refinement)",
        )
    result = image.clone()
    window = result[:, rows, cols]
    inside = region[rows, cols]
    window[:, inside] = restored[:, inside].to(result.dtype)
    return result

"""DRAEM-style Perlin-noise anomalies, from anomalib's ``PerlinAnomalyGenerator``.

anomalib's generator blends a Perlin-thresholded blob of (augmented) noise or
texture into the image. This wrapper adds what the package contract needs:
seeded determinism (anomalib draws from the global torch RNG), placement masks,
and a mask that is exactly where the image changed (anomalib's mask also marks
pixels its blend left unchanged). It never downloads anything: textures come
only from ``texture_dir``; without it the noise itself is the anomaly source.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import torch
import torchvision
from anomalib.data.utils.generators.perlin import PerlinAnomalyGenerator
from torchvision.datasets.folder import IMG_EXTENSIONS
from torchvision.transforms.v2 import functional as TF

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators._patch_ops import Box, bounding_box, expand_box
from anomaly_synth_aug.generators.classic import ClassicGenerator, checked_range
from anomaly_synth_aug.utils.random import seeded_global_rng

#: anomalib's noise uses up to 32 cells per side of the power-of-two padded size,
#: so sides of 16 px or less can fail; smaller windows are padded to this size.
MIN_PERLIN_SIZE = 32


class PerlinGenerator(ClassicGenerator):
    """Perlin-noise blobs filled with augmented noise or texture (anomalib's DRAEM synthesis).

    Args:
        texture_dir: folder of texture images (e.g. a local copy of DTD) used as anomaly
            source; None uses the Perlin noise itself. Nothing is ever downloaded.
        blend_factor: opacity of the anomaly, fixed or a ``(min, max)`` range.
        rotation_range: rotation in degrees of the noise pattern.
        dual_mask: union of two independent blobs half of the time (more varied shapes).
    """

    def __init__(
        self,
        texture_dir: str | None = None,
        blend_factor: float | tuple[float, float] = (0.2, 1.0),
        rotation_range: tuple[float, float] = (-90.0, 90.0),
        dual_mask: bool = False,
    ) -> None:
        super().__init__()
        self.texture_dir = None if texture_dir is None else str(texture_dir)
        # anomalib only honours a float or a tuple, and JSON configs come back as lists.
        self.blend_factor = (
            checked_range("blend_factor", (blend_factor, blend_factor), float, low=0.0, high=1.0)[0]
            if isinstance(blend_factor, int | float)
            else checked_range("blend_factor", blend_factor, float, low=0.0, high=1.0)
        )
        if max(self.blend_factor if isinstance(self.blend_factor, tuple) else (self.blend_factor,)) == 0.0:
            raise InvalidInputError(
                "blend_factor 0 leaves every image unchanged: no defect could ever be drawn",
                fix="use a blend factor above 0, e.g. (0.2, 1.0)",
            )
        self.rotation_range = checked_range("rotation_range", rotation_range, float, low=-360.0, high=360.0)
        self.dual_mask = dual_mask
        if self.texture_dir is not None:
            _check_texture_dir(Path(self.texture_dir))
        # anomalib draws its solarize threshold from the global RNG at construction: fix it,
        # so that the same config always means the same generator (and the user's RNG is untouched).
        with seeded_global_rng(torch.Generator().manual_seed(0)):
            self._perlin = PerlinAnomalyGenerator(
                anomaly_source_path=self.texture_dir,
                probability=1.0,
                blend_factor=self.blend_factor,
                rotation_range=self.rotation_range,
                dual_mask=dual_mask,
            )
        # anomalib lists the textures in the file system's order: sort them, so a seed picks the same one anywhere
        self._perlin.anomaly_source_paths = sorted(self._perlin.anomaly_source_paths)

    @property
    def defect_types(self) -> list[str]:
        return ["perlin"]

    def _synthesize(
        self,
        image: torch.Tensor,
        placement: torch.Tensor | None,
        defect_type: str,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = image.shape[-2:]
        # With a placement, the noise is drawn over its bounding box so that blobs are
        # sized to it and small placements are still hit.
        window = (
            Box(0, 0, height, width)
            if placement is None
            else expand_box(bounding_box(placement), (height, width), min_size=MIN_PERLIN_SIZE)
        )
        rows, cols = window.slices
        crop = image[:, rows, cols]
        pad_bottom, pad_right = max(0, MIN_PERLIN_SIZE - window.height), max(0, MIN_PERLIN_SIZE - window.width)
        if pad_bottom or pad_right:
            crop = TF.pad(crop, [0, 0, pad_right, pad_bottom], padding_mode="edge")
        with seeded_global_rng(generator):
            augmented, perlin_mask = self._perlin(crop)
        candidate = image.clone()
        candidate[:, rows, cols] = augmented[:, : window.height, : window.width]
        region = torch.zeros((height, width), dtype=torch.bool)
        region[rows, cols] = perlin_mask[0, : window.height, : window.width] > 0
        return candidate, region


def _check_texture_dir(directory: Path) -> None:
    """Fail early when the folder has no images (anomalib would silently fall back to noise), or holds a type
    of image anomalib cannot decode (it collects every torchvision image extension but reads textures with
    ``torchvision.io``, which cannot decode some, such as ``.bmp``, ``.tif``, ``.ppm``: it would fail
    mid-training, at the first such texture drawn, without naming it). One texture of each type is decoded."""
    if not directory.is_dir():
        raise InvalidInputError(
            "texture_dir is not a folder", path=directory, fix="pass a folder of texture images, or None for noise"
        )
    first_of_type = {ext: found for ext in IMG_EXTENSIONS if (found := next(directory.rglob(f"*{ext}"), None))}
    if not first_of_type:
        raise InvalidInputError(
            f"texture_dir holds no images ({', '.join(IMG_EXTENSIONS)})",
            path=directory,
            fix="put texture images in it (anomalib matches lower-case extensions), or pass None for noise",
        )
    for path in first_of_type.values():
        try:
            with warnings.catch_warnings():  # torchvision's notice that its decoders are deprecated: anomalib's call
                warnings.simplefilter("ignore", DeprecationWarning)
                torchvision.io.decode_image(torchvision.io.read_file(str(path)), mode=torchvision.io.ImageReadMode.RGB)
        except RuntimeError as exc:
            raise InvalidInputError(
                f"anomalib reads Perlin textures with torchvision.io, which cannot decode this file ({exc})",
                path=path,
                fix="convert the textures to PNG or JPEG, or remove the files of this type",
            ) from exc

"""NSA-style anomalies (Schlüter et al., ECCV 2022): a patch of another normal image, Poisson-blended in.

Design: the source patches come from a pool of normal images kept by ``fit``
(up to ``pool_size``, drawn with the fit seed) and saved with the generator.
Taking them from the other images of the *batch* instead would make an image's
anomaly depend on its batch-mates, breaking the contract that a batch equals
its per-image calls (and a batch of one would have no source at all).
``cv2.seamlessClone`` does the blending; its result is reduced to the pixels
that visibly changed inside the clone rectangle, so the mask stays pixel-exact.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torchvision.transforms.v2 import functional as TF

from anomaly_synth_aug.data.sample import AnomalySample
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators._patch_ops import (
    Box,
    CloneMode,
    random_int,
    random_top_left,
    random_uniform,
    seamless_clone,
)
from anomaly_synth_aug.generators._tensor_store import digest_tensor_lists, load_tensor_lists, save_tensor_lists
from anomaly_synth_aug.generators.classic import ClassicGenerator, checked_range

POOL_FILE = "source_pool.safetensors"
#: OpenCV changes only interior pixels of the clone region, so a patch needs a few pixels per side.
MIN_PATCH_SIZE = 5


class PoissonBlendGenerator(ClassicGenerator):
    """Rectangles from other normal images, seamlessly cloned at a random place (fit on normals first).

    Args:
        clone_mode: "normal" imports the source gradients; "mixed" keeps the stronger of source and
            target gradient per pixel (NSA's choice: subtler, texture-preserving anomalies).
        patch_ratio: patch height and width, each as a fraction of the image's, drawn from this range.
        pool_size: how many normal images ``fit`` keeps as patch sources (saved with the generator).
    """

    requires_fit = True

    def __init__(
        self,
        clone_mode: CloneMode = "mixed",
        patch_ratio: tuple[float, float] = (0.1, 0.4),
        pool_size: int = 32,
    ) -> None:
        super().__init__()
        if clone_mode not in ("normal", "mixed"):
            raise InvalidInputError(f"unknown clone_mode {clone_mode!r}", fix='use "normal" or "mixed"')
        if pool_size < 1:
            raise InvalidInputError(f"pool_size must be >= 1, got {pool_size}", fix="keep at least one source image")
        self.clone_mode = clone_mode
        self.patch_ratio = checked_range("patch_ratio", patch_ratio, float, low=0.0, high=1.0)
        self.pool_size = int(pool_size)
        self._pool: list[torch.Tensor] = []  # uint8 [3, H, W]: the 8-bit sources cost a quarter of float

    @property
    def defect_types(self) -> list[str]:
        return ["poisson"]

    def _fit(
        self,
        normal_images: list[torch.Tensor],
        shots: list[AnomalySample],
        generator: torch.Generator | None,
    ) -> None:
        if not normal_images:
            raise InvalidInputError(
                "PoissonBlendGenerator.fit() got no normal images", fix="pass the training normals as normal_images"
            )
        keep = torch.randperm(len(normal_images), generator=generator)[: self.pool_size].sort().values
        self._pool = [(normal_images[i].cpu() * 255).round().to(torch.uint8) for i in keep.tolist()]

    def _synthesize(
        self,
        image: torch.Tensor,
        placement: torch.Tensor | None,
        defect_type: str,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        height, width = image.shape[-2:]
        if min(height, width) < MIN_PATCH_SIZE:
            raise InvalidInputError(
                f"image of size {height}x{width} is too small for Poisson blending",
                fix=f"use images of at least {MIN_PATCH_SIZE}x{MIN_PATCH_SIZE} pixels",
            )
        source = self._pool[random_int(generator, 0, len(self._pool))].float() / 255
        if source.shape[-2:] != image.shape[-2:]:
            source = TF.resize(source, [height, width], antialias=True)
        patch_h = max(MIN_PATCH_SIZE, round(height * random_uniform(generator, *self.patch_ratio)))
        patch_w = max(MIN_PATCH_SIZE, round(width * random_uniform(generator, *self.patch_ratio)))
        size = (patch_h, patch_w)
        cut_rows, cut_cols = Box(*random_top_left((height, width), size, None, generator), *size).slices
        rows, cols = Box(*random_top_left((height, width), size, placement, generator), *size).slices
        aligned_source = image.clone()  # seamless_clone wants the patch already at its target position
        aligned_source[:, rows, cols] = source[:, cut_rows, cut_cols]
        region = torch.zeros((height, width), dtype=torch.bool)
        region[rows, cols] = True
        return seamless_clone(image, aligned_source, region, self.clone_mode), region

    # ------------------------------------------------------------ persistence
    def state_fingerprint(self) -> str:
        return digest_tensor_lists({"pool": self._pool}, {})

    def _save_state(self, directory: Path) -> None:
        save_tensor_lists(directory / POOL_FILE, {"pool": self._pool}, {})

    def _load_state(self, directory: Path) -> None:
        lists, _ = load_tensor_lists(directory / POOL_FILE)
        self._pool = lists["pool"]

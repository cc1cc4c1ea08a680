"""``NormalPatchMemory``: PatchCore's memory of normal patches, as an input of a supervised detector.

A segmenter that sees only the image learns what its training defects look like; shown a defect
of another appearance, it has nothing to compare with. PatchCore knows what *normal* looks like
(the nearest normal patch feature) but not what a defect is. Giving the segmenter PatchCore's
nearest-neighbour distance map as an extra input joins the two, as prototype-residual detectors
do (Zhang et al., PRN, CVPR 2023): the memory says "this patch is unlike any normal one", and the
supervised decoder, trained on (synthetic) defects with masks, learns which such deviations are
defects and where their borders run.

The memory follows PatchCore (Roth et al., CVPR 2022): frozen features of two backbone stages,
each averaged over 3 x 3 neighbourhoods, the deeper one upsampled to the first one's stride and
concatenated; a greedy k-center coreset of the normal patches (``greedy_coreset``); and the
distance of each patch to its nearest coreset patch. It takes the feature maps from the caller
(the segmenter's frozen ImageNet stages), so the backbone runs once. Distances are divided by the
coreset's spacing (the mean distance from a kept patch to the nearest other one), so the decoder
sees the same scale on every dataset.

Example:
    >>> memory = NormalPatchMemory()
    >>> for features in normal_feature_batches:  # [stride-8 map, stride-16 map] of normal images
    ...     memory.collect(features)
    >>> memory.build(size=4096)
    >>> memory.distance_map(features).shape  # [B, 1, H / 8, W / 8]
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from anomaly_synth_aug.errors import InvalidInputError, NotFittedError
from anomaly_synth_aug.models.patchcore import greedy_coreset

#: Queries per nearest-neighbour chunk: bounds the distance matrix held at once.
_QUERY_CHUNK = 4096
#: Coreset patches whose distance to their nearest neighbour sets the scale.
SCALE_SAMPLE = 16384
#: Patches held before the coreset search (about 1.2 GB of 152-dimensional features): about 500 images of
#: 512 px fit whole; more, or larger, images are thinned uniformly (``collect``).
MAX_PATCHES = 2_000_000


class NormalPatchMemory(nn.Module):
    """A PatchCore memory bank that answers with a per-patch distance map.

    Args:
        pool_size: side of the neighbourhood each feature is averaged over (PatchCore's 3).
        max_patches: most patches held before the coreset search. Past it, every held patch and every
            later one is kept with half the chance, as often as needed, so a category of many large
            images is thinned to a uniform sample instead of filling the RAM.
        seed: seeds the memory's own random draws (thinning, the coreset's projection and first patch),
            so that the memory is a function of the normal images and the seed alone, and building it
            leaves the global RNG where it was. None: the process's torch seed (``seed_everything``'s)
            when the first images are collected.
    """

    def __init__(self, pool_size: int = 3, max_patches: int = MAX_PATCHES, seed: int | None = None) -> None:
        super().__init__()
        if max_patches < 2:
            raise InvalidInputError(f"max_patches must be >= 2, got {max_patches}", fix=f"use e.g. {MAX_PATCHES}")
        self.max_patches = max_patches
        self.seed = seed
        self._draws = torch.Generator()
        self._keep = 1.0  # the chance each collected patch is kept
        self.pooler = nn.AvgPool2d(pool_size, stride=1, padding=pool_size // 2)
        self.memory_bank: torch.Tensor
        self.scale: torch.Tensor
        self.register_buffer("memory_bank", torch.empty(0))
        self.register_buffer("scale", torch.ones(()))
        self._store: list[torch.Tensor] = []

    @property
    def is_built(self) -> bool:
        return self.memory_bank.numel() > 0

    @torch.no_grad()
    def embed(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Patch embeddings ``[B, D, h, w]`` at the first map's stride from feature maps, finest first."""
        if not features:
            raise InvalidInputError("the normal memory needs at least one feature map", fix="pass backbone features")
        first = self.pooler(features[0].float())
        deeper = [
            F.interpolate(self.pooler(f.float()), size=first.shape[-2:], mode="bilinear", align_corners=False)
            for f in features[1:]
        ]
        return torch.cat([first, *deeper], dim=1)

    def collect(self, features: Sequence[torch.Tensor]) -> None:
        """Remember the patches of normal images' feature maps (call ``build`` once all are collected)."""
        if not self._store:  # a new memory: its draws start from the seed
            self._draws.manual_seed(self.seed if self.seed is not None else torch.initial_seed())
        embedding = self.embed(features)
        patches = embedding.permute(0, 2, 3, 1).reshape(-1, embedding.shape[1])
        if self._keep < 1.0:
            patches = patches[torch.rand(len(patches), generator=self._draws) < self._keep]
        self._store.append(patches)
        while sum(len(chunk) for chunk in self._store) > self.max_patches:
            self._keep /= 2
            self._store = [chunk[torch.rand(len(chunk), generator=self._draws) < 0.5] for chunk in self._store]

    @torch.no_grad()
    def build(self, size: int, *, progress: bool = False) -> None:
        """Keep a greedy k-center coreset of ``size`` collected patches and set the distance scale.

        ``progress`` shows a bar over the coreset search (minutes for a category's worth of images).
        """
        if not self._store:
            raise InvalidInputError("the normal memory saw no normal images", fix="give it normal training images")
        bank = torch.cat(self._store)
        self._store.clear()
        self._keep = 1.0
        kept = greedy_coreset(bank, min(size, bank.shape[0]), progress=progress, generator=self._draws)
        self.memory_bank = bank[kept]
        if len(self.memory_bank) < 2:
            raise InvalidInputError(
                "the normal memory needs at least two distinct patches", fix="give it more or larger normal images"
            )
        sample = self.memory_bank[torch.randperm(len(self.memory_bank), generator=self._draws)[:SCALE_SAMPLE]]
        self.scale = self._nearest(sample, skip_self=True).mean().clamp_min(1e-6)

    def _nearest(self, embedding: torch.Tensor, *, skip_self: bool = False) -> torch.Tensor:
        """Distance of each row to its nearest memory patch (``skip_self``: to the nearest *other* one)."""
        rank = 1 if skip_self else 0
        return torch.cat(
            [
                torch.cdist(chunk, self.memory_bank).topk(rank + 1, dim=1, largest=False).values[:, rank]
                for chunk in embedding.split(_QUERY_CHUNK)
            ]
        )

    @torch.no_grad()
    def distance_map(self, features: Sequence[torch.Tensor]) -> torch.Tensor:
        """Nearest-normal-patch distance ``[B, 1, h, w]`` at the first map's stride, in units of ``scale``."""
        if not self.is_built:
            raise NotFittedError("the normal memory is empty: collect() normal images and build() it first")
        embedding = self.embed(features)
        batch, dims, height, width = embedding.shape
        distances = self._nearest(embedding.permute(0, 2, 3, 1).reshape(-1, dims))
        return (distances / self.scale).reshape(batch, height, width).unsqueeze(1)

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        """Take the saved bank's size, on this module's device and dtype: a fresh memory is empty until it is built.

        The checkpoint's own device would not do: a bank saved from CPU training stayed on the CPU under a
        model moved to a GPU, as no other buffer does.
        """
        saved = state_dict.get(f"{prefix}memory_bank")
        if saved is not None:
            current = self.memory_bank
            self.memory_bank = torch.empty(saved.shape, device=current.device, dtype=current.dtype)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)


__all__ = ["MAX_PATCHES", "SCALE_SAMPLE", "NormalPatchMemory"]

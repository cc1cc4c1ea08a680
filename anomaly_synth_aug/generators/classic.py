"""Common loop of the classic baselines: one image at a time, one seed per image, only visible change.

Subclasses implement ``_synthesize`` (a candidate image and the region it was
allowed to change); this class turns that into the ``AnomalyGenerator``
contract for all of them:

* each image gets its own ``torch.Generator`` seeded by one draw from the
  caller's, so a batch call equals the same per-image calls made in sequence,
  and an image's result does not shift when an earlier image needed redraws;
* the placement mask (if any) is intersected with the region, and the returned
  mask is exactly where the image visibly changed (``keep_visible_change``);
* a sample with no visible change is redrawn, up to ``max_attempts`` times.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import ClassVar, TypeVar

import torch

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators._patch_ops import keep_visible_change, random_int
from anomaly_synth_aug.generators.base import AnomalyGenerator, GeneratedBatch
from anomaly_synth_aug.utils.random import derive_seed

Number = TypeVar("Number", int, float)


class ClassicGenerator(AnomalyGenerator):
    """Base of generators that synthesise each image independently (CPU, no learned weights)."""

    #: Redraws allowed when a sample changes nothing visible (e.g. a patch pasted onto its twin).
    max_attempts: ClassVar[int] = 20

    def _generate(
        self,
        images: list[torch.Tensor],
        masks: list[torch.Tensor | None],
        defect_types: list[str | None],
        generator: torch.Generator | None,
    ) -> GeneratedBatch:
        batch = GeneratedBatch(images=[], masks=[], defect_types=[], stats={"redraws": 0})
        for index, (image, placement, requested) in enumerate(zip(images, masks, defect_types, strict=True)):
            image_generator = torch.Generator().manual_seed(derive_seed(generator))
            result, mask, defect_type, redraws = self._generate_one(
                index, image.cpu(), placement, requested, image_generator
            )
            batch.images.append(result.to(image.device))
            batch.masks.append(mask.to(image.device))
            batch.defect_types.append(defect_type)
            batch.stats["redraws"] += redraws
        return batch

    def _generate_one(
        self,
        index: int,
        image: torch.Tensor,
        placement: torch.Tensor | None,
        requested_type: str | None,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor, str, int]:
        """Image, mask, defect type and redraw count for one input; raises when nothing visible changes."""
        if placement is not None:
            placement = placement.cpu()
        for attempt in range(self.max_attempts):
            defect_type = requested_type or self.defect_types[random_int(generator, 0, len(self.defect_types))]
            candidate, region = self._synthesize(image, placement, defect_type, generator)
            if placement is not None:
                region = region & placement
            result, mask = keep_visible_change(image, candidate, region)
            if bool(mask.any()):
                return result, mask, defect_type, attempt
        problem = f"{type(self).__name__} made no visible change to image {index} in {self.max_attempts} attempts"
        if placement is not None and _hugs_the_border(placement):
            raise InvalidInputError(
                f"{problem}: its placement mask lies within {BORDER_BAND} px of the image border, where a patch, "
                "kept inside the image and cut to the placement mask, seldom reaches",
                fix=f"widen the placement mask inward by at least {BORDER_BAND} px",
            )
        raise InvalidInputError(
            problem, fix="check that the image is not flat (e.g. all black) and that its placement mask is not tiny"
        )

    @abstractmethod
    def _synthesize(
        self,
        image: torch.Tensor,
        placement: torch.Tensor | None,
        defect_type: str,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """One candidate: the altered image (float ``[3, H, W]``) and the bool region it may differ in.

        Draw all randomness from ``generator`` (wrap global-RNG code in ``seeded_global_rng``).
        ``placement`` (bool ``[H, W]`` or None) says where the defect should go.
        """


#: A placement mask with no pixel farther than this from the image border is named as the likely cause of a
#: failed draw: patches are shifted inward to stay inside the image, and Poisson blending leaves the outermost
#: pixels as they are.
BORDER_BAND = 8


def _hugs_the_border(placement: torch.Tensor) -> bool:
    """Whether every placement pixel lies within ``BORDER_BAND`` px of the image border."""
    inner = placement[BORDER_BAND:-BORDER_BAND, BORDER_BAND:-BORDER_BAND]
    return inner.numel() > 0 and bool(placement.any()) and not bool(inner.any())


def checked_range(
    name: str, values: Sequence[Number], cast: type[Number], *, low: float, high: float | None = None
) -> tuple[Number, Number]:
    """Validate a ``(min, max)`` constructor argument and return it as a tuple (JSON configs give lists).

    A scalar, a pair of another length, a non-number or (for ``int``) a fractional value is named
    here, at construction, rather than failing as a bare ``TypeError`` or being truncated silently.
    """
    bounds = f"[{low}, {high}]" if high is not None else f"[{low}, inf)"
    example = f"pass e.g. {name}=(min, max) within {bounds}"
    try:
        items = list(values) if not isinstance(values, str | bytes) else None
        pair = [cast(value) for value in items] if items is not None else None
    except (TypeError, ValueError):
        pair = None
    if pair is None or len(pair) != 2:
        raise InvalidInputError(f"{name} must be a (min, max) pair of numbers, got {values!r}", fix=example)
    if cast is int and any(float(value) != int(value) for value in items):  # type: ignore[union-attr]
        raise InvalidInputError(f"{name} takes whole numbers, got {tuple(values)}", fix=example)
    first, second = pair
    if not (low <= first <= second and (high is None or second <= high)):
        raise InvalidInputError(
            f"{name} must be a (min, max) pair with min <= max inside {bounds}, got {tuple(values)}",
            fix=f"pass e.g. {name}=({first}, {max(first, second)}) within {bounds}",
        )
    return first, second

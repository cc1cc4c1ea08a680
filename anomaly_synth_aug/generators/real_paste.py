"""The honest baseline: paste the few real defect shots themselves (augmented) onto normal images.

If a learned generator cannot beat re-using its own training shots, it has
learned nothing useful. ``fit`` cuts each shot out by its mask (bounding box
plus a margin of surrounding surface); ``generate`` flips, rotates, rescales
and colour-jitters a crop together with its mask (torchvision v2 tv_tensors
keep them aligned) and blends it in with a feathered alpha or Poisson cloning.
In an object category (the shots decide, as for the diffusion generator) each
defect is centred on the object, not on the background around it. The crops
are saved with the generator, so a loaded one needs no dataset. With ``context_placement`` each shot
is centred where the target's surface looks like the surface its type's shots sit on (the diffusion
generator's ``ContextPlacement``): the same placement rule as diffusion's, so the two compare fairly.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from safetensors.torch import load_file, save_file
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2 import functional as TF

from anomaly_synth_aug.data.sample import AnomalySample
from anomaly_synth_aug.errors import CorruptFileError, InvalidInputError, NotFittedError
from anomaly_synth_aug.generators._patch_ops import (
    blend_patch,
    bounding_box,
    dilate,
    expand_box,
    feather,
    fit_into,
    random_int,
    random_top_left,
    random_uniform,
    seamless_clone,
)
from anomaly_synth_aug.generators._tensor_store import digest_tensor_lists, load_tensor_lists, save_tensor_lists
from anomaly_synth_aug.generators.classic import ClassicGenerator, checked_range
from anomaly_synth_aug.generators.context_placement import ContextPlacement
from anomaly_synth_aug.generators.foreground import OBJECT_THRESHOLDS, defects_lie_on_objects, foreground_region
from anomaly_synth_aug.utils.random import seeded_global_rng

SHOTS_FILE = "shots.safetensors"
PLACEMENT_FILE = "context_placement.safetensors"
BlendMode = Literal["alpha", "poisson"]


class RealShotPasteGenerator(ClassicGenerator):
    """Augmented copies of the real defect shots, blended onto normal images.

    Args:
        margin: pixels of surface kept around each defect's bounding box (room for feathering
            and for Poisson cloning's boundary).
        rotation: crops are rotated uniformly within +- this many degrees (the canvas grows to fit).
        scale_range: crops are rescaled by a factor drawn from this range.
        color_jitter: brightness and contrast jitter strength of the crop.
        blend: "alpha" (feathered paste; keeps the defect's own look) or "poisson"
            (``cv2.seamlessClone`` of the defect plus a thin ring; matches the target's shading).
        feather_sigma: Gaussian fall-off (pixels) of the alpha around the defect.
        restrict_to_foreground: centre each defect on the object, in categories whose shots show
            defects on an object a background surrounds (``defects_lie_on_objects``); a texture
            category is unaffected. A caller's placement mask always wins.
        context_placement: centre each defect where the surface looks like the surface its type's shots
            sit on, in pretrained features (``generators/context_placement.py``; one feature pass per
            defect). Where no position qualifies, the defect goes anywhere allowed.
    """

    requires_fit = True
    #: Options whose value here is how the generator behaved before they existed: left out of fingerprints,
    #: so fits and sample caches saved earlier stay valid.
    neutral_defaults: ClassVar[dict[str, Any]] = {"context_placement": False}

    def __init__(
        self,
        margin: int = 4,
        rotation: float = 180.0,
        scale_range: tuple[float, float] = (0.8, 1.25),
        color_jitter: float = 0.1,
        blend: BlendMode = "alpha",
        feather_sigma: float = 1.0,
        restrict_to_foreground: bool = True,
        context_placement: bool = False,
    ) -> None:
        super().__init__()
        if blend not in ("alpha", "poisson"):
            raise InvalidInputError(f"unknown blend {blend!r}", fix='use "alpha" or "poisson"')
        if margin < 0 or feather_sigma < 0:
            raise InvalidInputError(
                f"margin and feather_sigma must be >= 0, got {margin} and {feather_sigma}", fix="e.g. margin=4"
            )
        self.margin = int(margin)
        self.rotation = float(rotation)
        self.scale_range = checked_range("scale_range", scale_range, float, low=1e-3)
        self.color_jitter = float(color_jitter)
        self.blend = blend
        self.feather_sigma = float(feather_sigma)
        self.restrict_to_foreground = bool(restrict_to_foreground)
        self.context_placement = bool(context_placement)
        self.object_category = False  # decided by fit, on the shots
        self._placement: ContextPlacement | None = None  # fitted on the shots when context_placement
        self._regions: dict[str, torch.Tensor | None] = {}  # the current image's automatic placement, per type
        self._augment = v2.Compose(
            [
                v2.RandomHorizontalFlip(),
                v2.RandomVerticalFlip(),
                v2.RandomRotation(self.rotation, expand=True),
                v2.ColorJitter(brightness=self.color_jitter, contrast=self.color_jitter),
            ]
        )
        self._crops: list[torch.Tensor] = []  # float [3, h, w]
        self._masks: list[torch.Tensor] = []  # bool [h, w]: the defect inside its crop
        self._types: list[str] = []

    @property
    def defect_types(self) -> list[str]:
        return sorted(set(self._types))

    def _fit(
        self,
        normal_images: list[torch.Tensor],
        shots: list[AnomalySample],
        generator: torch.Generator | None,
    ) -> None:
        if not shots:
            raise InvalidInputError(
                "RealShotPasteGenerator.fit() got no defect shots", fix="pass the few real defect samples as shots"
            )
        self._crops, self._masks, self._types = [], [], []
        for shot in shots:
            box = expand_box(bounding_box(shot.mask), tuple(shot.mask.shape), margin=self.margin)
            rows, cols = box.slices
            self._crops.append(shot.image[:, rows, cols].cpu().clone())
            self._masks.append(shot.mask[rows, cols].cpu().clone())
            self._types.append(shot.defect_type)
        self.object_category = self.restrict_to_foreground and defects_lie_on_objects(shots)
        self._placement = ContextPlacement().fit(shots) if self.context_placement else None

    def _synthesize(
        self,
        image: torch.Tensor,
        placement: torch.Tensor | None,
        defect_type: str,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        candidates = [i for i, t in enumerate(self._types) if t == defect_type]
        index = candidates[random_int(generator, 0, len(candidates))]
        crop, defect, valid = self._augmented(index, generator)
        height, width = image.shape[-2:]
        shrink = fit_into(tuple(crop.shape[-2:]), (height, width))
        if shrink < 1.0:  # a crop larger than the target image is scaled down to fit
            size = _scaled(crop.shape[-2:], shrink)
            crop, defect, valid = TF.resize(crop, size, antialias=True), TF.resize(defect, size), TF.resize(valid, size)
        if placement is None:
            placement = self._automatic_placement(image, defect_type)
        top, left = random_top_left((height, width), tuple(crop.shape[-2:]), placement, generator)
        crop, defect, valid = (t.as_subclass(torch.Tensor) for t in (crop, defect, valid))
        # Pixels that rotation filled in are not surface: never blend them in.
        if self.blend == "poisson":
            return self._clone(image, crop, defect, valid, top, left)
        return blend_patch(image, crop, feather(defect, self.feather_sigma) * valid, top, left)

    def _generate_one(
        self,
        index: int,
        image: torch.Tensor,
        placement: torch.Tensor | None,
        requested_type: str | None,
        generator: torch.Generator,
    ) -> tuple[torch.Tensor, torch.Tensor, str, int]:
        """One image: its automatic placements are worked out once and reused by every redraw."""
        self._regions = {}
        try:
            return super()._generate_one(index, image, placement, requested_type, generator)
        finally:
            self._regions = {}

    def _automatic_placement(self, image: torch.Tensor, defect_type: str) -> torch.Tensor | None:
        """Where a defect may be centred without a caller's mask: on the object (object categories), on
        the surface its type's shots sit on (``context_placement``), both where they meet; None: anywhere."""
        if defect_type not in self._regions:
            self._regions[defect_type] = self._placement_for(image, defect_type)
        return self._regions[defect_type]

    def _placement_for(self, image: torch.Tensor, defect_type: str) -> torch.Tensor | None:
        allowed = foreground_region(image, **OBJECT_THRESHOLDS) if self.object_category else None
        if not self.context_placement:
            return allowed
        if self._placement is None:
            raise NotFittedError(
                f"context_placement needs the shots' surroundings ({PLACEMENT_FILE}), which this generator's "
                "state lacks. Fix: fit and save the generator again."
            )
        centres = self._placement.region(image, defect_type)
        if centres is None or allowed is None:
            return allowed if centres is None else centres
        both = allowed & centres
        return both if bool(both.any()) else allowed

    def _augmented(
        self, index: int, generator: torch.Generator
    ) -> tuple[tv_tensors.Image, tv_tensors.Mask, tv_tensors.Mask]:
        """The crop, its defect mask and its valid-pixel mask, flipped/rotated/jittered/rescaled together."""
        crop = tv_tensors.Image(self._crops[index])
        defect = tv_tensors.Mask(self._masks[index])
        valid = tv_tensors.Mask(torch.ones_like(self._masks[index]))
        with seeded_global_rng(generator):
            crop, defect, valid = self._augment(crop, defect, valid)
        size = _scaled(crop.shape[-2:], random_uniform(generator, *self.scale_range))
        return TF.resize(crop, size, antialias=True), TF.resize(defect, size), TF.resize(valid, size)

    @staticmethod
    def _clone(
        image: torch.Tensor, crop: torch.Tensor, defect: torch.Tensor, valid: torch.Tensor, top: int, left: int
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Poisson-clone the defect plus a 2 px ring: OpenCV keeps the clone's edge pixels, so the ring
        makes every defect pixel interior."""
        clone_area = dilate(defect, 2) & valid
        aligned_source, region = blend_patch(image, crop, clone_area.float(), top, left)
        if not bool(region.any()):  # rescaling dropped a thin defect: nothing to clone, the caller draws again
            return image.clone(), region
        return seamless_clone(image, aligned_source, region, "normal"), region

    # ------------------------------------------------------------ persistence
    def _state(self) -> tuple[dict[str, list[torch.Tensor]], dict[str, str]]:
        metadata = {"defect_types": json.dumps(self._types), "object_category": json.dumps(self.object_category)}
        return {"crops": self._crops, "masks": self._masks}, metadata

    def state_fingerprint(self) -> str:
        lists, metadata = self._state()
        if self.context_placement and self._placement is not None:
            state = self._placement.state_tensors()
            lists = {**lists, "placement": [state[name] for name in sorted(state)]}
        return digest_tensor_lists(lists, metadata)

    def _save_state(self, directory: Path) -> None:
        save_tensor_lists(directory / SHOTS_FILE, *self._state())
        if self.context_placement and self._placement is not None:
            save_file(self._placement.state_tensors(), directory / PLACEMENT_FILE)
        else:
            (directory / PLACEMENT_FILE).unlink(missing_ok=True)  # a folder re-used by a generator without it

    def _load_state(self, directory: Path) -> None:
        lists, metadata = load_tensor_lists(directory / SHOTS_FILE)
        if "defect_types" not in metadata:
            raise CorruptFileError("defect types missing", path=directory / SHOTS_FILE, fix="re-save the generator")
        self._crops, self._masks = lists["crops"], lists["masks"]
        self._types = json.loads(metadata["defect_types"])
        if "object_category" not in metadata:  # saved before placements followed the object: anywhere, as then
            self.restrict_to_foreground, self.object_category = False, False
        else:
            self.object_category = bool(json.loads(metadata["object_category"]))
        placement_file = directory / PLACEMENT_FILE
        wanted = self.context_placement and placement_file.is_file()
        self._placement = ContextPlacement().load_tensors(load_file(placement_file)) if wanted else None


def _scaled(size: torch.Size | tuple[int, ...], factor: float) -> list[int]:
    return [max(1, round(side * factor)) for side in size]

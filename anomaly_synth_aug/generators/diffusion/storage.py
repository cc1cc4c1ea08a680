"""What a saved diffusion generator holds: one sub-folder or file per component, diffusers style.

``AnomalyGenerator.save`` writes ``generator.json`` (the index: class, config, a sha256 per file,
verified on load); ``StorageMixin`` writes the components beside it:

* ``denoiser/`` and ``scheduler/``: ``save_pretrained`` folders of the ``DefectDenoiser`` and its DDPM schedule;
* ``mask_prior/``: the learned mask VAE (``mask_source="prior"`` only);
* ``shot_masks.safetensors``: the shot-mask bank;
* ``realism.safetensors``: the shots' ImageNet descriptors (the realism filter's reference);
* ``diffusion_state.json``: defect types, training report and the calibrated guidance scales.

Example:
    >>> folder = generator.save("runs/tile-generator")
    >>> DiffusionAnomalyGenerator.load(folder, mode="repaint")  # sampling options may change on load
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import torch
from safetensors.torch import load_file, save_file

from anomaly_synth_aug.errors import CheckpointMismatchError, NotFittedError
from anomaly_synth_aug.generators.diffusion.mask_prior import MaskPrior
from anomaly_synth_aug.generators.diffusion.masks import ShotMaskBank
from anomaly_synth_aug.generators.diffusion.model import DefectDenoiser
from anomaly_synth_aug.generators.context_placement import ContextPlacement
from anomaly_synth_aug.generators.diffusion.realism import ShotRealism
from anomaly_synth_aug.generators.diffusion.training import TrainingReport
from anomaly_synth_aug.utils.fingerprint import update_with_tensors

if TYPE_CHECKING:
    from anomaly_synth_aug.generators.diffusion.generator import (
        DiffusionAnomalyGenerator,
    )

DENOISER_DIR = "denoiser"
SCHEDULER_DIR = "scheduler"
MASK_PRIOR_DIR = "mask_prior"
SHOT_MASKS_FILE = "shot_masks.safetensors"
REALISM_FILE = "realism.safetensors"
PLACEMENT_FILE = "context_placement.safetensors"
STATE_FILE = "diffusion_state.json"


class StorageMixin:
    """``_save_state``/``_load_state`` and the learned-state fingerprint of ``DiffusionAnomalyGenerator``."""

    def _save_state(self: DiffusionAnomalyGenerator, directory: Path) -> None:
        if self._denoiser is None or self._mask_bank is None:
            raise NotFittedError(f"{type(self).__name__} has nothing to save: call fit() first")
        self._denoiser.save_pretrained(directory / DENOISER_DIR)
        self._noise_scheduler.save_pretrained(directory / SCHEDULER_DIR)
        if self._mask_prior is not None:
            self._mask_prior.save_pretrained(directory / MASK_PRIOR_DIR)
        save_file(self._shot_mask_tensors(), directory / SHOT_MASKS_FILE)
        if self._realism is not None:
            save_file(self._realism.state_tensors(), directory / REALISM_FILE)
        if self._placement is not None:
            save_file(self._placement.state_tensors(), directory / PLACEMENT_FILE)
        state = {
            "category": self.category,
            "defect_types": self._defect_types,
            "patch_size": self.patch_size,
            "training": asdict(self.training_report) if self.training_report is not None else None,
            **self._fitted_choices(),
        }
        (directory / STATE_FILE).write_text(json.dumps(state, indent=2))

    def _shot_mask_tensors(self: DiffusionAnomalyGenerator) -> dict[str, torch.Tensor]:
        assert self._mask_bank is not None
        return {
            f"{name}/{index}": crop.to(torch.uint8).contiguous()
            for name in self._mask_bank.defect_types
            for index, crop in enumerate(self._mask_bank.masks(name))
        }

    def _fitted_choices(self: DiffusionAnomalyGenerator) -> dict[str, object]:
        """What the fit measured and chose on the shots, beside the weights (saved, and fingerprinted)."""
        return {
            "calibrated_guidance": self.calibrated_guidance,
            "object_category": self.object_category,
            "shot_contrast": self.shot_contrast,
            "shot_visibility": self.shot_visibility,
            "defect_strength": self.defect_strength,
            "matched_guidance": self.matched_guidance,
            "guidance_calibration": {
                name: {str(scale): mean for scale, mean in means.items()}
                for name, means in self.guidance_calibration.items()
            },
        }

    def _load_state(self: DiffusionAnomalyGenerator, directory: Path) -> None:
        state_path = directory / STATE_FILE
        if not state_path.is_file():
            raise CheckpointMismatchError(
                f"{directory}: no {STATE_FILE}; this folder was not written by DiffusionAnomalyGenerator.save(). "
                "Fix: fit the generator and save it there."
            )
        state = json.loads(state_path.read_text())
        # however it is loaded (load(), AnomalyGenerator.load(), load_state()), and before any state is assigned
        self.check_auto_guidance(directory, state.get("calibrated_guidance"), state.get("shot_contrast"))
        self._defect_types = list(state["defect_types"])
        if state.get("category") != self.category or state.get("patch_size") != self.patch_size:
            raise CheckpointMismatchError(
                f"{directory}: weights were trained for category {state.get('category')!r} at patch size "
                f"{state.get('patch_size')}, but generator.json says {self.category!r} / {self.patch_size}. "
                "Fix: re-save the generator (the folder was edited or mixed)."
            )
        self._denoiser = DefectDenoiser.from_pretrained(directory / DENOISER_DIR).eval()
        if self._denoiser.config.num_defect_types != len(self._defect_types):
            raise CheckpointMismatchError(
                f"{directory}: the denoiser has {self._denoiser.config.num_defect_types} defect tokens but "
                f"{len(self._defect_types)} defect types are recorded. Fix: re-save the generator."
            )
        self._noise_scheduler = type(self._noise_scheduler).from_pretrained(directory / SCHEDULER_DIR)
        if state.get("training"):  # how long the saved model trained (absent in folders saved before it was kept)
            self.training_report = TrainingReport(**state["training"])
        if (directory / MASK_PRIOR_DIR).is_dir():
            self._mask_prior = MaskPrior.from_pretrained(directory / MASK_PRIOR_DIR).eval()
        if (directory / REALISM_FILE).is_file():
            self._realism = ShotRealism().load_tensors(load_file(directory / REALISM_FILE))
        if (directory / PLACEMENT_FILE).is_file():  # absent in folders saved before fit version 5
            self._placement = ContextPlacement().load_tensors(load_file(directory / PLACEMENT_FILE))
        self.object_category = bool(state.get("object_category", False))
        self.shot_contrast = {str(k): float(v) for k, v in (state.get("shot_contrast") or {}).items()}
        self.shot_visibility = {str(k): float(v) for k, v in (state.get("shot_visibility") or {}).items()}
        self.defect_strength = {str(k): float(v) for k, v in (state.get("defect_strength") or {}).items()}
        self.matched_guidance = {str(k): float(v) for k, v in (state.get("matched_guidance") or {}).items()}
        calibrated = state.get("calibrated_guidance")
        calibrated = calibrated if isinstance(calibrated, dict) else {}  # none: saved before per-type calibration
        self.calibrated_guidance = {str(name): float(scale) for name, scale in calibrated.items()}
        self.guidance_calibration = {
            str(name): {float(scale): float(mean) for scale, mean in means.items()}
            for name, means in (state.get("guidance_calibration") or {}).items()
            if isinstance(means, dict)
        }
        masks_by_type: dict[str, list[torch.Tensor]] = {name: [] for name in self._defect_types}
        for key, crop in sorted(load_file(directory / SHOT_MASKS_FILE).items(), key=lambda kv: _mask_key(kv[0])):
            masks_by_type[key.rsplit("/", 1)[0]].append(crop.bool())
        self._mask_bank = ShotMaskBank(masks_by_type)

    def state_fingerprint(self: DiffusionAnomalyGenerator) -> str:
        """Everything a fit leaves that shapes samples: weights, shot masks, per-type choices, the fit version.

        Cached pools are keyed by it: two fits with equal weights but other calibrated guidance or strength
        (a new ``fit_version``) must not share a pool. The training report (its seconds) is left out.
        """
        if self._denoiser is None:
            return ""
        head = {"defect_types": self._defect_types, "fit_version": self.fit_version, **self._fitted_choices()}
        digest = hashlib.sha256(json.dumps(head, sort_keys=True).encode())
        tensors = {f"denoiser.{name}": tensor for name, tensor in self._denoiser.state_dict().items()}
        if self._mask_bank is not None:
            tensors.update({f"shot_masks.{key}": crop for key, crop in self._shot_mask_tensors().items()})
        if self._mask_prior is not None:
            tensors.update({f"mask_prior.{key}": value for key, value in self._mask_prior.state_dict().items()})
        for part, component in (("realism", self._realism), ("placement", self._placement)):
            if component is not None:
                tensors.update({f"{part}.{key}": value for key, value in component.state_tensors().items()})
        update_with_tensors(digest, tensors)
        return digest.hexdigest()


def _mask_key(key: str) -> tuple[str, int]:
    name, index = key.rsplit("/", 1)
    return name, int(index)


__all__ = [
    "DENOISER_DIR",
    "MASK_PRIOR_DIR",
    "REALISM_FILE",
    "SCHEDULER_DIR",
    "SHOT_MASKS_FILE",
    "STATE_FILE",
    "StorageMixin",
]

"""Fitting the diffusion generator: check the shots, train the denoiser, build the realism reference, calibrate.

``FittingMixin._fit`` runs, in order: the shot-mask bank (and, with ``mask_source="prior"``, the
mask prior); the denoiser, trained from scratch on shot and normal patches within its step budget
(``training.py``); the realism reference of the shots in ImageNet feature space (``realism.py``);
and, for ``guidance_scale="auto"``, the guidance scale of every defect type, chosen on the shots.

Example:
    >>> generator = DiffusionAnomalyGenerator(category="tile")
    >>> generator.fit(normal_images, shots, generator=torch.Generator().manual_seed(0))
    >>> generator.calibrated_guidance  # e.g. {"crack": 5.0, "fray": 2.0}
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from anomaly_synth_aug.data.sample import NORMAL_TYPE, AnomalySample
from anomaly_synth_aug.errors import InvalidInputError, NotFittedError
from anomaly_synth_aug.generators.diffusion.calibration import (
    attenuation,
    calibrate_guidance,
    contrast_by_type,
    lowest_reaching_scale,
)
from anomaly_synth_aug.generators.diffusion.mask_prior import MaskPrior
from anomaly_synth_aug.generators.diffusion.masks import (
    MaskSource,
    ShotMaskBank,
    defects_lie_on_objects,
)
from anomaly_synth_aug.generators.diffusion.model import DefectDenoiser
from anomaly_synth_aug.generators.diffusion.patch_source import PatchSource
from anomaly_synth_aug.generators.diffusion.patches import is_grayscale
from anomaly_synth_aug.generators.context_placement import ContextPlacement
from anomaly_synth_aug.generators.diffusion.realism import ShotRealism
from anomaly_synth_aug.generators.diffusion.visibility import faintest_by_type
from anomaly_synth_aug.generators.diffusion.training import TrainingSettings, train_denoiser
from anomaly_synth_aug.generators.diffusion.training_checkpoint import training_data_digest
from anomaly_synth_aug.utils.random import (
    as_torch_generator,
    derive_seed,
    seeded_global_rng,
)
from anomaly_synth_aug.utils.threads import torch_threads

if TYPE_CHECKING:
    from anomaly_synth_aug.generators.diffusion.generator import (
        DiffusionAnomalyGenerator,
    )

logger = logging.getLogger(__name__)

#: Fewer shots than this per type: the generator mostly copies them (warned).
FEW_SHOTS_WARNING = 3
#: ``guidance_scale`` value that chooses the scale per fit and defect type (``calibration.calibrate_guidance``).
AUTO = "auto"
#: The scale an ``"auto"`` generator uses for a type it has no calibrated scale for (saved before calibration).
FALLBACK_GUIDANCE = 5.0
#: Options that change how the denoiser trains (its network shape is checked apart): a training checkpoint made
#: with other values belongs to another fit and is refused, never resumed with its old optimiser and weights.
TRAINING_OPTIONS = (
    "learning_rate",
    "batch_size",
    "normal_fraction",
    "masked_loss",
    "background_disentangle",
    "adaptive_weighting",
    "fill",
    "max_aspect",
)


class FittingMixin:
    """``fit`` and guidance calibration of ``DiffusionAnomalyGenerator``."""

    def _fit(
        self: DiffusionAnomalyGenerator,
        normal_images: list[torch.Tensor],
        shots: list[AnomalySample],
        generator: torch.Generator | None,
    ) -> None:
        self._defect_types = self._check_training_data(normal_images, shots)
        shot_contrast = contrast_by_type(
            [shot.image for shot in shots], [shot.mask for shot in shots], [shot.defect_type for shot in shots]
        )
        if self.guidance_scale == AUTO and not shot_contrast:  # found before training, not after it
            raise InvalidInputError(
                "guidance_scale='auto' matches each type's defects to its shots' contrast with their surroundings, "
                "but every shot's mask covers its whole image",
                fix="pass a fixed guidance_scale (e.g. 5.0), or shots whose masks leave surface around the defect",
            )
        generator = generator if generator is not None else torch.Generator().manual_seed(derive_seed(None))
        with torch_threads(self.num_threads):
            self._mask_bank = ShotMaskBank.from_shots(shots)
            self.object_category = defects_lie_on_objects(shots)  # kept even when off: it is a sampling option
            if self.mask_source == MaskSource.prior:
                with seeded_global_rng(generator):
                    prior = MaskPrior(defect_types=self._defect_types)
                self._mask_prior = prior.fit(self._mask_bank, self.mask_prior_steps, generator, self.progress)
            images = [*normal_images, *(shot.image for shot in shots)]
            self._image_channels = 1 if all(is_grayscale(image) for image in images) else 3
            with seeded_global_rng(generator):
                self._denoiser = self._build_denoiser(len(self._defect_types), self._image_channels)
            source = PatchSource(
                shots,
                normal_images,
                self._defect_types,
                patch_size=self.patch_size,
                fill=self.fill,
                max_aspect=self.max_aspect,
                channels=self._image_channels,
                window_scale=self.window_scale,
                max_windows=self.max_windows,
            )
            settings = TrainingSettings(
                max_steps=self.max_steps,
                max_minutes=self.max_minutes,
                batch_size=self.batch_size,
                learning_rate=self.learning_rate,
                normal_fraction=self.normal_fraction,
                checkpoint_dir=Path(self.checkpoint_dir) if self.checkpoint_dir else None,
                progress=self.progress,
                switches=self._switches,
            )
            self.training_report = train_denoiser(
                self._denoiser,
                source,
                settings,
                noise_scheduler=self._noise_scheduler,
                generator=generator,
                identity=self._identity(training_data_digest(normal_images, shots) if self.checkpoint_dir else None),
            )
            self._realism = ShotRealism().fit(shots)
            self._placement = ContextPlacement().fit(shots)
            framed = [shot for shot in shots if not bool(shot.mask.all())]  # a whole-image mask has no ring to compare
            self.shot_visibility = faintest_by_type(
                self._feature_contrast()([shot.image for shot in framed], [shot.mask for shot in framed]),
                [shot.defect_type for shot in framed],
            )
            if unjudged := sorted(set(self._defect_types) - set(self.shot_visibility)):
                logger.warning(
                    "Every shot of %s covers its whole image: visibility_filter will not judge these types.",
                    ", ".join(unjudged),
                )
        self.shot_contrast = shot_contrast
        self.calibrated_guidance, self.guidance_calibration = {}, {}
        self.matched_guidance, self.defect_strength = {}, {}
        if self.guidance_scale == AUTO:
            self.calibrate_guidance(normal_images or [shot.image for shot in shots], generator)

    def calibrate_guidance(
        self: DiffusionAnomalyGenerator, targets: list[torch.Tensor], generator: int | torch.Generator | None = 0
    ) -> dict[str, float]:
        """Choose each defect type's guidance scale for ``guidance_scale="auto"``, on the shots alone.

        Every candidate of ``guidance_candidates`` draws the same placements on the same ``targets``
        (``calibration_samples`` per type, first draws, no filter); per type, the candidate whose
        defects are as visible as that type's shots, in the same direction, wins (``calibration.py``).
        ``fit`` calls this on its normal images; call it again on a loaded generator to recalibrate.
        """
        if not self.shot_contrast:
            raise NotFittedError("the shots' contrast is measured in fit(): fit() or load() first")
        seed = derive_seed(as_torch_generator(generator))

        def sample(scale: float) -> tuple[list[torch.Tensor], list[torch.Tensor], list[str]]:
            rng = torch.Generator().manual_seed(seed)
            jobs = []
            for index, name in enumerate(self._defect_types):
                token = self.denoiser.token(index + 1)[0].detach()
                for _ in range(self.calibration_samples):
                    image = targets[int(torch.randint(len(targets), (), generator=rng))]
                    stream = torch.Generator().manual_seed(derive_seed(rng))
                    jobs.append(self._job(image, None, name, token, name, stream, False, guidance=scale, strength=1.0))
            batch = self._synthesise(jobs, judge_realism=False)
            return batch.images, batch.masks, batch.defect_types

        with torch_threads(self.num_threads):
            self.calibrated_guidance, self.guidance_calibration, contrast = calibrate_guidance(
                sample, self.shot_contrast, self.guidance_candidates
            )
        self.matched_guidance = {
            name: lowest_reaching_scale(by_scale, self.shot_contrast[name]) for name, by_scale in contrast.items()
        }
        self.defect_strength = {
            name: attenuation(self.shot_contrast[name], contrast[name][scale])
            for name, scale in self.matched_guidance.items()
        }
        logger.info(
            "Chosen on the shots, per defect type: guidance %s (without strength matching: %s), strength %s.",
            self.matched_guidance,
            self.calibrated_guidance,
            {name: round(value, 3) for name, value in self.defect_strength.items()},
        )
        return dict(self._guidance_table())

    def check_auto_guidance(
        self: DiffusionAnomalyGenerator, directory: str | Path, calibrated: object, shot_contrast: object
    ) -> None:
        """Refuse ``guidance_scale="auto"`` for a saved fit (its ``calibrated`` scales and ``shot_contrast``, as
        stored) made with a fixed scale, which calibrated none: every type would draw at ``FALLBACK_GUIDANCE``,
        which no fit chose. Saves older than calibration (no shot contrast either) keep that fallback, with its
        warning."""
        if self.guidance_scale == AUTO and not calibrated and shot_contrast:
            raise InvalidInputError(
                "this generator was fitted with a fixed guidance scale, so it has no per-type scales for "
                "guidance_scale='auto'",
                path=directory,
                fix="load it with its own or another fixed guidance_scale; for 'auto', call "
                "calibrate_guidance(normal_images) on the loaded generator, then set guidance_scale='auto'",
            )

    def _guidance_table(self: DiffusionAnomalyGenerator) -> dict[str, float]:
        """The calibrated scale per type this generator draws with (it depends on ``match_contrast``)."""
        if self.match_contrast and self.matched_guidance:
            return {**self.calibrated_guidance, **self.matched_guidance}
        return self.calibrated_guidance

    def strength_for(self: DiffusionAnomalyGenerator, label: str) -> float:
        """The share of the generated change a defect labelled ``label`` keeps (``match_contrast``; 1: all).

        Only with ``guidance_scale="auto"``: a scale the user fixed means the defects drawn at that scale.
        """
        if not self.match_contrast or self.guidance_scale != AUTO or label == NORMAL_TYPE:
            return 1.0
        known = [self.defect_strength[part] for part in label.split("+") if part in self.defect_strength]
        return sum(known) / len(known) if known else 1.0

    def guidance_for(self: DiffusionAnomalyGenerator, label: str) -> float:
        """The guidance scale a defect labelled ``label`` is drawn with (``"a+b"`` for mixed tokens)."""
        if label == NORMAL_TYPE:
            return 1.0  # guiding the normal token away from itself is a no-op
        if self.guidance_scale != AUTO:
            return float(self.guidance_scale)
        table = self._guidance_table()
        scales = [table.get(part) for part in label.split("+")]
        known = [scale for scale in scales if scale is not None]
        if not known:
            if not getattr(self, "_warned_fallback", False):
                self._warned_fallback = True
                logger.warning(
                    "No calibrated guidance scale for %r (a generator saved before calibration?): using %s. "
                    "Call calibrate_guidance(normal_images) or fit again.",
                    label,
                    FALLBACK_GUIDANCE,
                )
            return FALLBACK_GUIDANCE
        return sum(known) / len(known)

    def _check_training_data(
        self: DiffusionAnomalyGenerator, normal_images: list[torch.Tensor], shots: list[AnomalySample]
    ) -> list[str]:
        if not shots:
            raise InvalidInputError(
                "no defect shots to learn from", fix="pass at least one AnomalySample with a mask per defect type"
            )
        counts = Counter(shot.defect_type for shot in shots)
        if NORMAL_TYPE in counts:
            raise InvalidInputError(
                f"a defect shot is typed {NORMAL_TYPE!r}, the name reserved for normal images",
                path=next(s.image_path for s in shots if s.defect_type == NORMAL_TYPE),
                fix="give defect shots their defect type name",
            )
        for name, count in sorted(counts.items()):
            if count < FEW_SHOTS_WARNING:
                logger.warning(
                    "Defect type %r has only %d shot(s); the generator will mostly copy it. "
                    "%d or more shots per type give more varied defects.",
                    name,
                    count,
                    FEW_SHOTS_WARNING,
                )
        if self.normal_fraction > 0 and not normal_images:
            raise InvalidInputError(
                "no normal images: normal alignment (normal_fraction > 0) needs some",
                fix="pass the category's normal training images, or set normal_fraction=0",
            )
        return sorted(counts)

    def _build_denoiser(self: DiffusionAnomalyGenerator, num_defect_types: int, image_channels: int) -> DefectDenoiser:
        return DefectDenoiser(
            num_defect_types=num_defect_types,
            patch_size=self.patch_size,
            image_channels=image_channels,
            block_out_channels=self.block_out_channels,
            layers_per_block=self.layers_per_block,
            attention=self.attention,
        )

    def _identity(self: DiffusionAnomalyGenerator, training_data: str | None = None) -> dict[str, Any]:
        """What a resumable training checkpoint must match to be resumed for this generator (and its data)."""
        identity: dict[str, Any] = {
            "category": self.category,
            "defect_types": self._defect_types,
            "patch_size": self.patch_size,
            "image_channels": self._image_channels,
            "block_out_channels": list(self.block_out_channels),
            "layers_per_block": self.layers_per_block,
            "attention": self.attention,
        }
        if self.window_scale is not None:  # only then: checkpoints written before the option still resume
            identity.update(window_scale=self.window_scale, max_windows=self.max_windows)
        identity["training"] = {name: getattr(self, name) for name in TRAINING_OPTIONS}
        if training_data is not None:
            identity["training_data"] = training_data
        return identity


__all__ = ["AUTO", "FALLBACK_GUIDANCE", "FEW_SHOTS_WARNING", "TRAINING_OPTIONS", "FittingMixin"]

"""The generate loop of the diffusion generator: place, sample, paste, judge, retry.

Each defect to make is a ``SynthesisJob``: a target image, a placement mask (given, or drawn from
the shot-mask bank or the mask prior, on the foreground), the boxes it is generated in (its context
box, or with ``window_scale`` several windows, ``patches.defect_windows``), a token, a guidance scale
and a private random stream. ``SynthesisMixin._synthesise`` crops every job's box to a patch,
denoises the patches in UNet batches (``sampling.PatchSampler``), resizes each back and pastes it
*only inside its mask*, so the background stays bit-identical. Windows are drawn in rounds: round
``k`` generates every job's ``k``-th window from the image the earlier rounds painted. Jobs that check quality are
judged by the pixel ``QualityFilter``, with ``realism_filter`` by ``ShotRealism`` and with
``visibility_filter`` by ``FeatureContrast`` against the faintest shot of the type; rejected ones
are drawn again with more fresh noise, up to ``max_retries`` times, and the last draw is kept.

Example:
    >>> jobs = [generator._job(image, None, "crack", token, "crack", rng, check_quality=True)]
    >>> batch = generator._synthesise(jobs)
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import torch

from anomaly_synth_aug.data.sample import NORMAL_TYPE
from anomaly_synth_aug.errors import NotFittedError
from anomaly_synth_aug.generators.batch import GeneratedBatch
from anomaly_synth_aug.generators.diffusion.masks import (
    OBJECT_THRESHOLDS,
    MaskSource,
    foreground_region,
    place_mask,
)
from anomaly_synth_aug.generators.diffusion.patches import (
    CropBox,
    channels_for_model,
    context_box,
    crop_image_patch,
    crop_mask_patch,
    defect_windows,
    enclosing_box,
    fine_detail,
    mask_bbox,
    paste_patch,
    uncrop_patch,
)
from anomaly_synth_aug.generators.diffusion.quality import QualityFilter, refine_mask
from anomaly_synth_aug.generators.diffusion.sampling import PatchSampler, SamplingMode
from anomaly_synth_aug.generators.diffusion.visibility import FeatureContrast
from anomaly_synth_aug.utils.threads import torch_threads

if TYPE_CHECKING:
    from anomaly_synth_aug.generators.diffusion.generator import (
        DiffusionAnomalyGenerator,
    )

#: Fresh-noise share added per retry in inversion mode (see ``SynthesisMixin._sampler``).
RETRY_INVERSION_NOISE = 0.5


@dataclass
class SynthesisJob:
    """One defect to synthesise: its image, placement, boxes, token, guidance scale and private random stream.

    ``windows`` are the boxes generated one after another (default: ``[box]``); ``box`` encloses them
    all and is where the result is judged.
    """

    image: torch.Tensor
    mask: torch.Tensor
    box: CropBox
    token: torch.Tensor
    label: str
    rng: torch.Generator
    check_quality: bool
    guidance: float = 1.0
    strength: float = 1.0
    windows: list[CropBox] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.windows:
            self.windows = [self.box]


class SynthesisMixin:
    """Placement, sampling, pasting and the retry loop of ``DiffusionAnomalyGenerator``."""

    def _job(
        self: DiffusionAnomalyGenerator,
        image: torch.Tensor,
        mask: torch.Tensor | None,
        mask_type: str,
        token: torch.Tensor,
        label: str,
        rng: torch.Generator,
        check_quality: bool,
        guidance: float | None = None,
        strength: float | None = None,
    ) -> SynthesisJob:
        """A job for ``label``: ``mask``, or a placement of a ``mask_type`` shape drawn from ``rng``."""
        if mask is None:
            mask = self._sample_mask(image, mask_type, rng)
        box = context_box(
            mask_bbox(mask),
            tuple(image.shape[-2:]),
            patch_size=self.patch_size,
            fill=self.fill,
            max_aspect=self.max_aspect,
        )
        windows = defect_windows(
            mask, box, patch_size=self.patch_size, window_scale=self.window_scale, max_windows=self.max_windows
        )
        scale = self.guidance_for(label) if guidance is None else guidance
        if strength is None:
            strength = self.strength_for(label) * self._strength_factor(label, rng)
        extent = enclosing_box([box, *windows])
        return SynthesisJob(image, mask, extent, token, label, rng, check_quality, scale, strength, windows)

    def _strength_factor(self: DiffusionAnomalyGenerator, label: str, rng: torch.Generator) -> float:
        """How much more or less visible than its calibrated strength this defect is (``strength_jitter``).

        Log-uniform in ``[1 / (1 + j), 1 + j]``, drawn from the job's stream only when jitter is on, so
        without it every defect is the same as before. Normal variations are never jittered.
        """
        if self.strength_jitter == 0.0 or label == NORMAL_TYPE:
            return 1.0
        span = math.log1p(self.strength_jitter)
        return math.exp(span * (2.0 * float(torch.rand((), generator=rng)) - 1.0))

    def _sample_mask(
        self: DiffusionAnomalyGenerator, image: torch.Tensor, defect_type: str, rng: torch.Generator
    ) -> torch.Tensor:
        """A placement for ``defect_type`` in ``image``: a shot-bank or prior shape, on the foreground if asked."""
        if self._mask_prior is not None and self.mask_source == MaskSource.prior:
            crop = self._mask_prior.sample(self._mask_prior.type_index(defect_type), rng)
        elif self._mask_bank is not None:
            crop = self._mask_bank.sample(defect_type, rng)
        else:
            raise NotFittedError("no mask source: fit() or load() the generator, or pass masks explicitly")
        on_object = self.restrict_to_foreground and self.object_category
        region = foreground_region(image, **OBJECT_THRESHOLDS) if on_object else None
        centres = self._on_shot_surface(image, defect_type) if self.context_placement else None
        return place_mask(crop, tuple(image.shape[-2:]), region, rng, centres=centres)

    def _on_shot_surface(
        self: DiffusionAnomalyGenerator, image: torch.Tensor, defect_type: str
    ) -> torch.Tensor | None:
        """Where in ``image`` a ``defect_type`` defect may be centred: where the surface looks like the one its
        shots sit on (the floor is set at the shots' centres); None: anywhere."""
        if self._placement is None:
            raise NotFittedError(
                "context_placement needs the shots' surroundings, which this generator's fit does not record "
                "(fitted before fit version 5). Fix: fit the generator again, or load it with "
                "context_placement=False."
            )
        return self._placement.region(image, defect_type)

    @torch.no_grad()
    def _synthesise(
        self: DiffusionAnomalyGenerator, jobs: list[SynthesisJob], *, judge_realism: bool = True
    ) -> GeneratedBatch:
        """Run all jobs through the sampler in UNet batches; re-run rejected ones up to ``max_retries`` times.

        A job that checks quality is rejected when its pixels fail the ``QualityFilter``, with
        ``realism_filter`` (and ``judge_realism``) when its defect lies too far from the shots, and with
        ``visibility_filter`` (and ``judge_realism``) when it stands out less than its type's faintest shot.
        """
        if not jobs:
            return GeneratedBatch(images=[], masks=[], defect_types=[])
        reasons: Counter[str] = Counter()
        results: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        attempts = exhausted = 0
        pending = list(range(len(jobs)))
        # from the live settings: sampling options may be changed on a loaded generator
        quality = QualityFilter(min_inside_change=self.min_inside_change, max_outside_change=self.max_outside_change)
        realism = self._realism if self.realism_filter and judge_realism else None
        visibility = self._visibility_measure() if self.visibility_filter and judge_realism else None
        with torch_threads(self.num_threads):
            for attempt in range(self.max_retries + 1):
                if not pending:
                    break
                candidates = self._draw(self._sampler(attempt), jobs, pending)
                attempts += len(pending)
                last = attempt == self.max_retries
                rejected: dict[int, str] = {}
                for index, (image, region) in candidates.items():
                    job = jobs[index]
                    if job.check_quality:
                        rows, cols = job.box.slices()
                        before, after = job.image[:, rows, cols], image[:, rows, cols]
                        verdict = quality.assess(before, after, (job.mask | region)[rows, cols])
                        if not verdict.accepted:
                            rejected[index] = verdict.reason
                judged = [i for i in candidates if jobs[i].check_quality and i not in rejected]
                if realism is not None and judged:
                    images = [candidates[i][0] for i in judged]
                    masks = [candidates[i][1] for i in judged]
                    _, realistic = realism.judge(images, masks, [jobs[i].label for i in judged])
                    verdicts = zip(judged, realistic.tolist(), strict=True)
                    rejected.update({i: "unrealistic" for i, ok in verdicts if not ok})
                if visibility is not None:  # a whole-image mask has no surface around it to compare: not judged
                    judged = [
                        i
                        for i in judged
                        if i not in rejected
                        and jobs[i].label in self.shot_visibility
                        and not bool(candidates[i][1].all())
                    ]
                if visibility is not None and judged:
                    values = visibility([candidates[i][0] for i in judged], [candidates[i][1] for i in judged])
                    verdicts = zip(judged, values.tolist(), strict=True)
                    rejected.update({i: "faint" for i, v in verdicts if v < self.shot_visibility[jobs[i].label]})
                reasons.update(rejected.values())
                exhausted += len(rejected) if last else 0
                results.update({i: c for i, c in candidates.items() if i not in rejected or last})
                pending = [] if last else sorted(rejected)
        stats = {
            "attempts": attempts,
            "rejected": sum(reasons.values()),
            "reasons": dict(reasons),
            "exhausted": exhausted,
        }
        return GeneratedBatch(
            images=[results[i][0] for i in range(len(jobs))],
            masks=[results[i][1] for i in range(len(jobs))],
            defect_types=[job.label for job in jobs],
            stats=stats,
        )

    def _visibility_measure(self: DiffusionAnomalyGenerator) -> FeatureContrast:
        """The ``FeatureContrast`` the visibility filter judges with (built once); the fit must have its floors."""
        if not self.shot_visibility:
            raise NotFittedError(
                "visibility_filter needs each type's faintest shot in feature space, which this generator's fit "
                "did not record (it was saved by an older version, or every shot's mask covers its whole image and "
                "leaves no surface to compare with). Fix: fit the generator again, or generate with "
                "visibility_filter=False."
            )
        return self._feature_contrast()

    def _feature_contrast(self: DiffusionAnomalyGenerator) -> FeatureContrast:
        """One ``FeatureContrast`` for the fit's floors and the filter's verdicts (its backbone is process-wide)."""
        if self._visibility is None:
            self._visibility = FeatureContrast()
        return self._visibility

    def _sampler(self: DiffusionAnomalyGenerator, attempt: int) -> PatchSampler:
        """The sampler for retry ``attempt`` (0 = first try); each job brings its own guidance scale.

        Pure DDIM inversion is deterministic: retrying it with the same placement would redraw the
        very patch the quality filter just rejected. Each retry therefore mixes more fresh noise
        into the inverted latent inside the mask (0.5, then 1.0), while the background still comes
        from the inverted trajectory of the target image.
        """
        noise = self.inversion_noise
        if self.mode == SamplingMode.inversion and attempt > 0:
            noise = max(noise, min(1.0, RETRY_INVERSION_NOISE * attempt))
        return PatchSampler(
            self.denoiser,
            self._noise_scheduler,
            num_inference_steps=self.num_inference_steps,
            mode=self.mode,
            inversion_noise=noise,
        )

    def _sample_patches(
        self: DiffusionAnomalyGenerator,
        sampler: PatchSampler,
        jobs: list[SynthesisJob],
        indices: list[int],
        known: torch.Tensor,
        patch_masks: torch.Tensor,
    ) -> list[torch.Tensor]:
        """Generated patches for ``indices`` (``known[k]`` and ``patch_masks[k]`` belong to ``indices[k]``),
        ``generation_batch_size`` at a time."""
        patches: list[torch.Tensor] = []
        for start in range(0, len(indices), self.generation_batch_size):
            stop = start + self.generation_batch_size
            chunk = indices[start:stop]
            tokens = torch.stack([jobs[i].token for i in chunk])
            scales = torch.tensor([jobs[i].guidance for i in chunk])
            rngs = [jobs[i].rng for i in chunk]
            patches.extend(sampler.sample(known[start:stop], patch_masks[start:stop], tokens, rngs, scales))
        return patches

    def _draw(
        self: DiffusionAnomalyGenerator, sampler: PatchSampler, jobs: list[SynthesisJob], indices: list[int]
    ) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
        """One draw of each job in ``indices``: ``{index: (image, pasted region)}``, window by window.

        Round ``k`` samples the ``k``-th window of every job that has one, in UNet batches, from the
        image as the earlier rounds left it, and pastes the mask pixels no earlier window painted.
        """
        channels = self.denoiser.config.image_channels
        images = {i: jobs[i].image for i in indices}
        painted = {i: torch.zeros_like(jobs[i].mask) for i in indices}
        for round_index in range(max(len(jobs[i].windows) for i in indices)):
            active = [i for i in indices if round_index < len(jobs[i].windows)]
            windows = {i: jobs[i].windows[round_index] for i in active}
            known = torch.stack(
                [crop_image_patch(channels_for_model(images[i], channels), windows[i], self.patch_size) for i in active]
            )
            masks = torch.stack([crop_mask_patch(jobs[i].mask, windows[i], self.patch_size) for i in active])
            patches = self._sample_patches(sampler, jobs, active, known, masks)
            for position, (index, patch) in enumerate(zip(active, patches, strict=True)):
                job, window = jobs[index], windows[index]
                if job.strength != 1.0:  # as visible as the shots: keep that share of the change
                    patch = known[position] + job.strength * (patch - known[position])
                restored = uncrop_patch(patch, window).expand(job.image.shape[0], -1, -1)
                if self.keep_fine_detail:
                    restored = (restored + fine_detail(images[index], window, self.patch_size)).clamp(0.0, 1.0)
                rows, cols = window.slices()
                placement = job.mask[rows, cols] & ~painted[index][rows, cols]
                region = self._paste_region(images[index][:, rows, cols], restored, placement)
                region = region & ~painted[index][rows, cols]  # a refined region may grow into painted pixels
                full_region = torch.zeros_like(job.mask)
                full_region[rows, cols] = region
                images[index] = paste_patch(images[index], restored, window, full_region)
                painted[index] |= full_region
        return {i: (images[i], painted[i]) for i in indices}

    def _paste_region(
        self: DiffusionAnomalyGenerator, before: torch.Tensor, restored: torch.Tensor, placement: torch.Tensor
    ) -> torch.Tensor:
        """Bool mask over the box to paste through: where the patch really changed near the placement
        (mask alignment), or the placement itself when refinement is off or finds no change (never empty)."""
        if not self.refine_masks:
            return placement
        refined = refine_mask(before, restored, placement, dilation=self.refine_dilation)
        return refined if bool(refined.any()) else placement


__all__ = ["RETRY_INVERSION_NOISE", "SynthesisJob", "SynthesisMixin"]

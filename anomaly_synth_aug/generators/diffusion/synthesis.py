"""The generate loop of the diffusion generator: place, sample, paste, judge, retry.

Each defect to make is a ``SynthesisJob``: a target image, a placement mask (given, or drawn from
the shot-mask bank or the mask prior, on the foreground), the context box around it, a token, a
guidance scale and a private random stream. ``SynthesisMixin._synthesise`` crops every job's box
to a patch, denoises the patches in UNet batches (``sampling.PatchSampler``), resizes each back and
pastes it *only inside its mask*, so the background stays bit-identical. Jobs that check quality are
judged by the pixel ``QualityFilter`` and, with ``realism_filter``, by ``ShotRealism``; rejected ones
are drawn again with more fresh noise, up to ``max_retries`` times, and the last draw is kept.

Example:
    >>> jobs = [generator._job(image, None, "crack", token, "crack", rng, check_quality=True)]
    >>> batch = generator._synthesise(jobs)
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
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
    fine_detail,
    mask_bbox,
    paste_patch,
    uncrop_patch,
)
from anomaly_synth_aug.generators.diffusion.quality import (
    QualityVerdict,
    composite,
    refine_mask,
)
from anomaly_synth_aug.generators.diffusion.sampling import PatchSampler, SamplingMode
from anomaly_synth_aug.utils.threads import torch_threads

if TYPE_CHECKING:
    from anomaly_synth_aug.generators.diffusion.generator import (
        DiffusionAnomalyGenerator,
    )

#: Fresh-noise share added per retry in inversion mode (see ``SynthesisMixin._sampler``).
RETRY_INVERSION_NOISE = 0.5


@dataclass
class SynthesisJob:
    """One patch to synthesise: its image, placement, token, guidance scale and private random stream."""

    image: torch.Tensor
    mask: torch.Tensor
    box: CropBox
    token: torch.Tensor
    label: str
    rng: torch.Generator
    check_quality: bool
    guidance: float = 1.0
    strength: float = 1.0


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
        scale = self.guidance_for(label) if guidance is None else guidance
        if strength is None:
            strength = self.strength_for(label) * self._strength_factor(label, rng)
        return SynthesisJob(image, mask, box, token, label, rng, check_quality, scale, strength)

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
        return place_mask(crop, tuple(image.shape[-2:]), region, rng)

    @torch.no_grad()
    def _synthesise(
        self: DiffusionAnomalyGenerator, jobs: list[SynthesisJob], *, judge_realism: bool = True
    ) -> GeneratedBatch:
        """Run all jobs through the sampler in UNet batches; re-run rejected ones up to ``max_retries`` times.

        A job that checks quality is rejected when its pixels fail the ``QualityFilter`` or, with
        ``realism_filter`` (and ``judge_realism``), when its defect lies too far from the shots.
        """
        if not jobs:
            return GeneratedBatch(images=[], masks=[], defect_types=[])
        channels = self.denoiser.config.image_channels
        known = torch.stack(
            [crop_image_patch(channels_for_model(job.image, channels), job.box, self.patch_size) for job in jobs]
        )
        patch_masks = torch.stack([crop_mask_patch(job.mask, job.box, self.patch_size) for job in jobs])
        details: dict[int, torch.Tensor] = {}  # each job's fine detail, once, however often it is retried
        results: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        reasons: Counter[str] = Counter()
        attempts = exhausted = 0
        pending = list(range(len(jobs)))
        realism = self._realism if self.realism_filter and judge_realism else None
        with torch_threads(self.num_threads):
            for attempt in range(self.max_retries + 1):
                if not pending:
                    break
                patches = self._sample_patches(self._sampler(attempt), jobs, pending, known, patch_masks)
                attempts += len(pending)
                last = attempt == self.max_retries
                candidates: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
                rejected: dict[int, str] = {}
                for index, patch in zip(pending, patches, strict=True):
                    job = jobs[index]
                    if job.strength != 1.0:  # as visible as the shots: keep that share of the change
                        patch = known[index] + job.strength * (patch - known[index])
                    restored = uncrop_patch(patch, job.box).expand(job.image.shape[0], -1, -1)
                    if self.keep_fine_detail:
                        if index not in details:
                            details[index] = fine_detail(job.image, job.box, self.patch_size)
                        restored = (restored + details[index]).clamp(0.0, 1.0)
                    region = self._paste_region(job, restored)
                    full_region = torch.zeros_like(job.mask)
                    full_region[job.box.slices()] = region
                    candidates[index] = (paste_patch(job.image, restored, job.box, full_region), full_region)
                    if job.check_quality:
                        verdict = self._assess(job, restored, region)
                        if not verdict.accepted:
                            rejected[index] = verdict.reason
                judged = [i for i in candidates if jobs[i].check_quality and i not in rejected]
                if realism is not None and judged:
                    images = [candidates[i][0] for i in judged]
                    masks = [candidates[i][1] for i in judged]
                    _, realistic = realism.judge(images, masks, [jobs[i].label for i in judged])
                    verdicts = zip(judged, realistic.tolist(), strict=True)
                    rejected.update({i: "unrealistic" for i, ok in verdicts if not ok})
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
        """Generated patches for ``indices``, ``generation_batch_size`` at a time (sizes already uniform)."""
        patches: list[torch.Tensor] = []
        for start in range(0, len(indices), self.generation_batch_size):
            chunk = indices[start : start + self.generation_batch_size]
            tokens = torch.stack([jobs[i].token for i in chunk])
            scales = torch.tensor([jobs[i].guidance for i in chunk])
            out = sampler.sample(known[chunk], patch_masks[chunk], tokens, [jobs[i].rng for i in chunk], scales)
            patches.extend(out)
        return patches

    def _paste_region(self: DiffusionAnomalyGenerator, job: SynthesisJob, restored: torch.Tensor) -> torch.Tensor:
        """Bool mask over the box to paste through: where the patch really changed near the placement
        (mask alignment), or the placement itself when refinement is off or finds no change (never empty)."""
        rows, cols = job.box.slices()
        placement = job.mask[rows, cols]
        if not self.refine_masks:
            return placement
        refined = refine_mask(job.image[:, rows, cols], restored, placement, dilation=self.refine_dilation)
        return refined if bool(refined.any()) else placement

    def _assess(
        self: DiffusionAnomalyGenerator, job: SynthesisJob, restored: torch.Tensor, region: torch.Tensor
    ) -> QualityVerdict:
        """Judge the box as it will be returned; measured over placement and refined mask together, so a
        defect that filled only a sliver of the requested placement counts as incomplete."""
        rows, cols = job.box.slices()
        before = job.image[:, rows, cols]
        placement = job.mask[rows, cols]
        return self._filter.assess(before, composite(before, restored, region), placement | region)


__all__ = ["RETRY_INVERSION_NOISE", "SynthesisJob", "SynthesisMixin"]

"""``DiffusionAnomalyGenerator``: a few-shot, per-category defect generator trained from scratch on CPU.

What it learns: a small conditional UNet (``model.py``) that inpaints a defect
of a given type (or normal surface) inside a mask, from patches around the few
real shots and from normal images (``training.py``). Where defects go comes
from the shots' own masks, augmented, or a learned mask prior (``masks.py``).
How a defect is made (``sampling.py``): a context patch around the mask is
cropped at native scale, denoised with DDIM (RePaint blending or DDIM inversion
of the target), refined to where the image actually changed and checked by a
quality filter (``quality.py``), then pasted back only inside the mask, so the
background is bit-identical to the input.

Mechanisms and the papers they come from, each switchable:

====================================  =====================================  ==========================
mechanism                             paper                                  switch
====================================  =====================================  ==========================
masked defect loss                    AnomalyDiffusion (masked inversion)    ``masked_loss``
adaptive mask re-weighting            AnomalyDiffusion (attention reweight)  ``adaptive_weighting``
background disentanglement loss       Cho et al. 2024                        ``background_disentangle``
DDIM inversion onto the target        Cho et al. 2024                        ``mode="inversion"``
normal token, decoupled type tokens   SeaS (NA / DA)                         ``normal_fraction``
token mixing (unseen combinations)    SeaS / AnomalyDiffusion embeddings     ``generate_mixed``
learned mask prior, shot mask bank    AnomalyDiffusion (mask generation)     ``mask_source``
mask refinement to real change        AnomalyDiffusion (mask alignment)      ``refine_masks``
quality filter with retries           —                                      ``quality_filter``
====================================  =====================================  ==========================
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, ClassVar, Literal

import torch
from safetensors.torch import load_file, save_file

from anomaly_synth_aug.data.sample import NORMAL_TYPE, AnomalySample
from anomaly_synth_aug.errors import (
    CheckpointMismatchError,
    InvalidInputError,
    NotFittedError,
    UnknownDefectTypeError,
)
from anomaly_synth_aug.generators.base import AnomalyGenerator, GeneratedBatch, ImagesLike, as_image_list
from anomaly_synth_aug.generators.diffusion.mask_prior import MaskPrior
from anomaly_synth_aug.generators.diffusion.masks import ShotMaskBank, foreground_region, place_mask
from anomaly_synth_aug.generators.diffusion.model import NORMAL_TOKEN, DefectDenoiser
from anomaly_synth_aug.generators.diffusion.patches import (
    CropBox,
    channels_for_model,
    context_box,
    crop_image_patch,
    crop_mask_patch,
    is_grayscale,
    mask_bbox,
    paste_patch,
    uncrop_patch,
)
from anomaly_synth_aug.generators.diffusion.quality import QualityFilter, QualityVerdict, composite, refine_mask
from anomaly_synth_aug.generators.diffusion.realism import ShotRealism, calibrate_guidance
from anomaly_synth_aug.generators.diffusion.sampling import SAMPLING_MODES, PatchSampler, check_guidance_scale
from anomaly_synth_aug.generators.diffusion.training import (
    LossSwitches,
    PatchSource,
    TrainingReport,
    TrainingSettings,
    make_noise_scheduler,
    train_denoiser,
)
from anomaly_synth_aug.utils.random import as_torch_generator, derive_seed, seeded_global_rng

logger = logging.getLogger(__name__)

DENOISER_DIR = "denoiser"
SCHEDULER_DIR = "scheduler"
MASK_PRIOR_DIR = "mask_prior"
SHOT_MASKS_FILE = "shot_masks.safetensors"
STATE_FILE = "diffusion_state.json"
FEW_SHOTS_WARNING = 3
#: Fresh-noise share added per retry in inversion mode (see ``DiffusionAnomalyGenerator._sampler``).
RETRY_INVERSION_NOISE = 0.5
#: ``guidance_scale`` value that chooses the scale per fit (``realism.calibrate_guidance``).
AUTO = "auto"
#: The scale used by an ``"auto"`` generator saved before calibration existed.
FALLBACK_GUIDANCE = 5.0
REALISM_FILE = "realism.safetensors"


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """Run a block with ``count`` intra-op threads (None: leave torch's setting), restoring it after."""
    if count is None:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


@dataclass
class _Job:
    """One patch to synthesise: its image, placement, token and private random stream."""

    image: torch.Tensor
    mask: torch.Tensor
    box: CropBox
    token: torch.Tensor
    label: str
    rng: torch.Generator
    check_quality: bool


class DiffusionAnomalyGenerator(AnomalyGenerator):
    """Learns one category's defects from a few shots; synthesises them into normal images at native resolution.

    Args:
        category: name of the category (recorded; a checkpoint of another category will not load).
        patch_size: side of the square patch the defect is generated in (multiple of 4).
        fill: fraction of the patch side the mask's bounding box spans; the rest is context.
        max_aspect: largest aspect ratio of the crop box (long thin defects keep their width).
        block_out_channels: UNet widths per level.
        layers_per_block: UNet ResNet layers per level.
        attention: self-attention at the UNet's lowest resolution.
        max_steps: training steps, the budget (None: only ``max_minutes`` limits). A step budget makes a fit
            give the same model on a busy machine and on an idle one; the default fits well under
            10 minutes on 2 CPU cores (benchmarks/README.md).
        max_minutes: optional wall-clock guard on top of ``max_steps`` (None: steps alone decide).
        batch_size: training patches per step.
        learning_rate: AdamW learning rate.
        normal_fraction: share of normal patches per batch (normal alignment; 0 disables it).
        masked_loss: defect loss only inside the mask (else the whole patch with the defect token).
        background_disentangle: Cho et al. background term (needs ``masked_loss``).
        adaptive_weighting: strength of the error-driven re-weighting inside the mask (0 disables).
        num_inference_steps: DDIM steps per sample.
        mode: ``"inversion"`` (DDIM-inverted target, Cho et al.; the default, because it is what the downstream
            benchmark measured: switching to RePaint cost the segmenter image AUROC on every seed) or
            ``"repaint"`` (forward-noised background each step; skips the inversion passes, about 1.4x faster).
        inversion_noise: fresh-noise share inside the mask in inversion mode (0 = pure inversion). Pure
            inversion fills a mask the caller fixes the same way for every seed (the seed still draws sampled
            masks); raise it, or use RePaint, for several variants on one mask.
        guidance_scale: normal-token guidance (``sampling.py``): > 1 strengthens what sets the defect apart
            from normal surface; 1 turns it off (one UNet pass per step instead of two). ``"auto"`` (the
            default) picks, at the end of ``fit``, the scale of ``guidance_candidates`` whose samples on the
            training normals lie closest to the shots in pretrained feature space (``realism.py``): a rule
            that needs no test data and follows how strongly each fit draws its defects.
        guidance_candidates: the scales ``"auto"`` chooses from.
        calibration_samples: defects per type generated per candidate scale to choose it.
        realism_filter: reject (and regenerate) defects that lie farther from every real shot of their type,
            in pretrained feature space, than the loneliest shot lies from the others (``realism.py``).
        mask_source: ``"bank"`` (augmented shot masks) or ``"prior"`` (learned mask VAE).
        mask_prior_steps: training steps of the mask prior (``mask_source="prior"``).
        restrict_to_foreground: place sampled masks on the estimated foreground only.
        refine_masks: shrink/grow the output mask to where the image changed (within the dilated mask).
            Off by default: on textured surfaces the pixel change is speckled, and so were the refined masks.
        refine_dilation: pixels the mask may grow by during refinement.
        quality_filter: reject and regenerate samples whose defect did not appear or whose background drifted.
        min_inside_change: quality filter: least mean change over the placement (and refined) mask.
        max_outside_change: quality filter: largest change allowed outside it (a guard of the pixel-exact contract).
        max_retries: regeneration attempts per rejected sample (then the last attempt is kept and counted).
        generation_batch_size: patches per UNet batch while generating. 16 is fastest on 2 CPU cores
            (measured on a 32 px patch model: 4.4 images/s against 3.9 with 64, whose activations
            outgrow the cache); on a GPU larger batches pay.
        checkpoint_dir: folder for resumable training state (None: no checkpoints).
        num_threads: torch intra-op threads during fit/generate (None: leave as is).
        progress: show a tqdm bar while fitting.
    """

    requires_fit: ClassVar[bool] = True
    per_sample_generators: ClassVar[bool] = True
    sampling_options: ClassVar[frozenset[str]] = frozenset(
        {
            "num_inference_steps",
            "mode",
            "inversion_noise",
            "guidance_scale",
            "realism_filter",
            "restrict_to_foreground",
            "refine_masks",
            "refine_dilation",
            "quality_filter",
            "min_inside_change",
            "max_outside_change",
            "max_retries",
            "generation_batch_size",
            "num_threads",
            "progress",
        }
    )

    def __init__(
        self,
        category: str = "category",
        patch_size: int = 32,
        fill: float = 0.5,
        max_aspect: float = 3.0,
        block_out_channels: Sequence[int] = (32, 64, 64),
        layers_per_block: int = 1,
        attention: bool = True,
        max_steps: int | None = 500,
        max_minutes: float | None = None,
        batch_size: int = 32,
        learning_rate: float = 1e-3,
        normal_fraction: float = 0.25,
        masked_loss: bool = True,
        background_disentangle: bool = True,
        adaptive_weighting: float = 1.0,
        num_inference_steps: int = 10,
        mode: Literal["repaint", "inversion"] = "inversion",
        inversion_noise: float = 0.0,
        guidance_scale: float | Literal["auto"] = "auto",
        guidance_candidates: Sequence[float] = (1.0, 2.0, 3.0, 5.0),
        calibration_samples: int = 8,
        realism_filter: bool = True,
        mask_source: Literal["bank", "prior"] = "bank",
        mask_prior_steps: int = 400,
        restrict_to_foreground: bool = True,
        refine_masks: bool = False,
        refine_dilation: int = 3,
        quality_filter: bool = True,
        min_inside_change: float = 0.03,
        max_outside_change: float = 2.0 / 255.0,
        max_retries: int = 2,
        generation_batch_size: int = 16,
        checkpoint_dir: str | Path | None = None,
        num_threads: int | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__()
        if mode not in SAMPLING_MODES:
            raise InvalidInputError(f"unknown mode {mode!r}", fix=f"use one of {SAMPLING_MODES}")
        if mask_source not in ("bank", "prior"):
            raise InvalidInputError(f"unknown mask_source {mask_source!r}", fix="use 'bank' or 'prior'")
        if guidance_scale != AUTO:
            check_guidance_scale(float(guidance_scale))  # at construction, not first at generate()
        for candidate in guidance_candidates:
            check_guidance_scale(float(candidate))
        if calibration_samples < 1:
            raise InvalidInputError(
                f"calibration_samples must be >= 1, got {calibration_samples}", fix="use e.g. 8 defects per type"
            )
        if max_retries < 0:
            raise InvalidInputError(f"max_retries must be >= 0, got {max_retries}", fix="use e.g. 2")
        self.category = category
        self.patch_size = patch_size
        self.fill = fill
        self.max_aspect = max_aspect
        self.block_out_channels = tuple(block_out_channels)
        self.layers_per_block = layers_per_block
        self.attention = attention
        self.max_steps = max_steps
        self.max_minutes = max_minutes
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.normal_fraction = normal_fraction
        self.masked_loss = masked_loss
        self.background_disentangle = background_disentangle
        self.adaptive_weighting = adaptive_weighting
        self.num_inference_steps = num_inference_steps
        self.mode = mode
        self.inversion_noise = inversion_noise
        self.guidance_scale = guidance_scale
        self.guidance_candidates = tuple(float(c) for c in guidance_candidates)
        self.calibration_samples = calibration_samples
        self.realism_filter = realism_filter
        self.mask_source = mask_source
        self.mask_prior_steps = mask_prior_steps
        self.restrict_to_foreground = restrict_to_foreground
        self.refine_masks = refine_masks
        self.refine_dilation = refine_dilation
        self.quality_filter = quality_filter
        self.min_inside_change = min_inside_change
        self.max_outside_change = max_outside_change
        self.max_retries = max_retries
        self.generation_batch_size = generation_batch_size
        self.checkpoint_dir = str(checkpoint_dir) if checkpoint_dir is not None else None
        self.num_threads = num_threads
        self.progress = progress
        self._switches = LossSwitches(masked_loss, background_disentangle, adaptive_weighting)  # validates
        self._defect_types: list[str] = []
        self._denoiser: DefectDenoiser | None = None
        self._noise_scheduler = make_noise_scheduler()
        self._mask_bank: ShotMaskBank | None = None
        self._mask_prior: MaskPrior | None = None
        self._image_channels = 3
        self._filter = QualityFilter(min_inside_change=min_inside_change, max_outside_change=max_outside_change)
        self.training_report: TrainingReport | None = None
        self._realism: ShotRealism | None = None
        #: ``guidance_scale="auto"``: the scale chosen at the end of ``fit``, and each candidate's mean realism ratio.
        self.calibrated_guidance: float | None = None
        self.guidance_calibration: dict[float, float] = {}

    # ------------------------------------------------------------------ types
    @property
    def defect_types(self) -> list[str]:
        return list(self._defect_types)

    @property
    def denoiser(self) -> DefectDenoiser:
        if self._denoiser is None:
            raise NotFittedError(f"{type(self).__name__} has no model yet: call fit() or load() first")
        return self._denoiser

    # -------------------------------------------------------------------- fit
    def _fit(
        self,
        normal_images: list[torch.Tensor],
        shots: list[AnomalySample],
        generator: torch.Generator | None,
    ) -> None:
        self._defect_types = self._check_training_data(normal_images, shots)
        generator = generator if generator is not None else torch.Generator().manual_seed(derive_seed(None))
        with torch_threads(self.num_threads):
            self._mask_bank = ShotMaskBank.from_shots(shots)
            if self.mask_source == "prior":
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
                identity=self._identity(),
            )
            self._realism = ShotRealism().fit(shots)
            if self.guidance_scale == AUTO:
                self._calibrate_guidance(normal_images or [shot.image for shot in shots], generator)

    def _calibrate_guidance(self, targets: list[torch.Tensor], generator: torch.Generator) -> None:
        """Choose the guidance scale for ``"auto"``: the candidate whose defects lie closest to the shots.

        Every candidate draws the same placements on the same target images (``calibration_samples`` per
        type, first draws, no filter), so the candidates differ in their scale alone.
        """
        seed = derive_seed(generator)

        def sample(scale: float) -> tuple[list[torch.Tensor], list[torch.Tensor], list[str]]:
            rng = torch.Generator().manual_seed(seed)
            jobs = []
            for index, name in enumerate(self._defect_types):
                token = self.denoiser.token(index + 1)[0].detach()
                for _ in range(self.calibration_samples):
                    image = targets[int(torch.randint(len(targets), (), generator=rng))]
                    stream = torch.Generator().manual_seed(derive_seed(rng))
                    jobs.append(self._job(image, None, name, token, name, stream, check_quality=False))
            batch = self._synthesise(jobs, guidance=scale, judge_realism=False)
            return batch.images, batch.masks, batch.defect_types

        if self._realism is None:
            raise NotFittedError("the realism reference is built from the shots in fit()")
        with torch_threads(self.num_threads):
            self.calibrated_guidance, self.guidance_calibration = calibrate_guidance(
                sample, self._realism, self.guidance_candidates
            )
        logger.info(
            "Guidance scale %s chosen on the shots (mean distance to the nearest shot per candidate: %s).",
            self.calibrated_guidance,
            {scale: round(value, 3) for scale, value in self.guidance_calibration.items()},
        )

    def effective_guidance_scale(self) -> float:
        """The scale sampling uses: ``guidance_scale``, or the one ``"auto"`` chose at fit time."""
        if self.guidance_scale != AUTO:
            return float(self.guidance_scale)
        if self.calibrated_guidance is None:
            logger.warning(
                "This generator was saved without a calibrated guidance scale: using %s (fit again to calibrate).",
                FALLBACK_GUIDANCE,
            )
            return FALLBACK_GUIDANCE
        return self.calibrated_guidance

    def _check_training_data(self, normal_images: list[torch.Tensor], shots: list[AnomalySample]) -> list[str]:
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

    def _build_denoiser(self, num_defect_types: int, image_channels: int) -> DefectDenoiser:
        return DefectDenoiser(
            num_defect_types=num_defect_types,
            patch_size=self.patch_size,
            image_channels=image_channels,
            block_out_channels=self.block_out_channels,
            layers_per_block=self.layers_per_block,
            attention=self.attention,
        )

    def _identity(self) -> dict[str, Any]:
        """What a checkpoint must match to be reused for this generator."""
        return {
            "category": self.category,
            "defect_types": self._defect_types,
            "patch_size": self.patch_size,
            "image_channels": self._image_channels,
            "block_out_channels": list(self.block_out_channels),
            "layers_per_block": self.layers_per_block,
            "attention": self.attention,
        }

    # --------------------------------------------------------------- generate
    def _generate(
        self,
        images: list[torch.Tensor],
        masks: list[torch.Tensor | None],
        defect_types: list[str | None],
        generator: torch.Generator | list[torch.Generator] | None,
    ) -> GeneratedBatch:
        jobs = []
        for index, (image, mask, name) in enumerate(zip(images, masks, defect_types, strict=True)):
            source = generator[index] if isinstance(generator, list) else generator
            rng = torch.Generator().manual_seed(derive_seed(source))
            name = name if name is not None else self._random_type(rng)
            token = self.denoiser.token(self._defect_types.index(name) + 1)[0].detach()
            jobs.append(self._job(image, mask, name, token, name, rng, check_quality=self.quality_filter))
        return self._synthesise(jobs)

    def generate_mixed(
        self,
        normal_images: ImagesLike,
        mix_types: tuple[str, str, float],
        masks: Sequence[torch.Tensor | None] | None = None,
        generator: int | torch.Generator | None = None,
    ) -> GeneratedBatch:
        """Defects of an unseen appearance: the token is ``w * token[a] + (1 - w) * token[b]``.

        The mask of each sample comes from type ``a`` with probability ``w``, else from ``b``.
        Samples are labelled ``"a+b"``.
        """
        first, second, weight = mix_types
        for name in (first, second):
            self._check_type(name)
        token = self.denoiser.mixed_token(
            self._defect_types.index(first) + 1, self._defect_types.index(second) + 1, float(weight)
        )[0].detach()
        generator = as_torch_generator(generator)
        images, mask_list = self._normalise_inputs(normal_images, masks)
        jobs = []
        for image, mask in zip(images, mask_list, strict=True):
            rng = torch.Generator().manual_seed(derive_seed(generator))
            mask_type = first  # only drawn when a mask must be sampled, so given masks leave the stream alone
            if mask is None and float(torch.rand((), generator=rng)) >= weight:
                mask_type = second
            jobs.append(self._job(image, mask, mask_type, token, f"{first}+{second}", rng, self.quality_filter))
        return self._synthesise(jobs)

    def generate_normal(
        self,
        normal_images: ImagesLike,
        masks: Sequence[torch.Tensor | None] | None = None,
        generator: int | torch.Generator | None = None,
    ) -> GeneratedBatch:
        """Normal variation (SeaS normal alignment): re-synthesise a masked region with the NORMAL token.

        Masks default to random shot-like shapes. The result is a *normal* image (label 0 when
        used for training; ``defect_types`` reads ``"good"``); the quality filter is skipped because
        a good normal inpainting is expected to change little.
        """
        generator = as_torch_generator(generator)
        images, mask_list = self._normalise_inputs(normal_images, masks)
        token = self.denoiser.token(NORMAL_TOKEN)[0].detach()
        jobs = []
        for image, mask in zip(images, mask_list, strict=True):
            rng = torch.Generator().manual_seed(derive_seed(generator))
            jobs.append(self._job(image, mask, self._random_type(rng), token, NORMAL_TYPE, rng, check_quality=False))
        return self._synthesise(jobs, guided=False)  # guiding the normal token away from itself is a no-op

    def _normalise_inputs(
        self, normal_images: ImagesLike, masks: Sequence[torch.Tensor | None] | None
    ) -> tuple[list[torch.Tensor], list[torch.Tensor | None]]:
        if not self.is_fitted:
            raise NotFittedError(f"{type(self).__name__} must be fitted before generating")
        images = as_image_list(normal_images)
        return images, self._check_masks(images, masks)

    def _random_type(self, rng: torch.Generator) -> str:
        return self._defect_types[int(torch.randint(len(self._defect_types), (), generator=rng))]

    def _check_type(self, name: str) -> None:
        if name not in self._defect_types:
            raise UnknownDefectTypeError(
                f"unknown defect type {name!r} for {type(self).__name__}; known: {self._defect_types}",
                fix="use one of the known types, or fit the generator on shots of that type",
            )

    def _job(
        self,
        image: torch.Tensor,
        mask: torch.Tensor | None,
        mask_type: str,
        token: torch.Tensor,
        label: str,
        rng: torch.Generator,
        check_quality: bool,
    ) -> _Job:
        if mask is None:
            mask = self._sample_mask(image, mask_type, rng)
        box = context_box(
            mask_bbox(mask),
            tuple(image.shape[-2:]),
            patch_size=self.patch_size,
            fill=self.fill,
            max_aspect=self.max_aspect,
        )
        return _Job(image, mask, box, token, label, rng, check_quality)

    def _sample_mask(self, image: torch.Tensor, defect_type: str, rng: torch.Generator) -> torch.Tensor:
        """A placement for ``defect_type`` in ``image``: a shot-bank or prior shape, on the foreground if asked."""
        if self._mask_prior is not None and self.mask_source == "prior":
            crop = self._mask_prior.sample(self._mask_prior.type_index(defect_type), rng)
        elif self._mask_bank is not None:
            crop = self._mask_bank.sample(defect_type, rng)
        else:
            raise NotFittedError("no mask source: fit() or load() the generator, or pass masks explicitly")
        region = foreground_region(image) if self.restrict_to_foreground else None
        return place_mask(crop, tuple(image.shape[-2:]), region, rng)

    @torch.no_grad()
    def _synthesise(
        self, jobs: list[_Job], guided: bool = True, *, guidance: float | None = None, judge_realism: bool = True
    ) -> GeneratedBatch:
        """Run all jobs through the sampler in UNet batches; re-run rejected ones up to ``max_retries`` times.

        A job that checks quality is rejected when its pixels fail the ``QualityFilter`` or, with
        ``realism_filter``, when its defect lies too far from the shots (``ShotRealism.judge``).
        ``guidance`` overrides the scale (calibration); ``guided=False`` samples without guidance.
        """
        if not jobs:
            return GeneratedBatch(images=[], masks=[], defect_types=[])
        channels = self.denoiser.config.image_channels
        known = torch.stack(
            [crop_image_patch(channels_for_model(job.image, channels), job.box, self.patch_size) for job in jobs]
        )
        patch_masks = torch.stack([crop_mask_patch(job.mask, job.box, self.patch_size) for job in jobs])
        results: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        reasons: Counter[str] = Counter()
        attempts = exhausted = 0
        pending = list(range(len(jobs)))
        scale = 1.0 if not guided else guidance if guidance is not None else self.effective_guidance_scale()
        realism = self._realism if self.realism_filter and judge_realism else None
        with torch_threads(self.num_threads):
            for attempt in range(self.max_retries + 1):
                if not pending:
                    break
                patches = self._sample_patches(self._sampler(attempt, scale), jobs, pending, known, patch_masks)
                attempts += len(pending)
                last = attempt == self.max_retries
                candidates: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
                rejected: dict[int, str] = {}
                for index, patch in zip(pending, patches, strict=True):
                    job = jobs[index]
                    restored = uncrop_patch(patch, job.box).expand(job.image.shape[0], -1, -1)
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
        images = [results[i][0] for i in range(len(jobs))]
        out_masks = [results[i][1] for i in range(len(jobs))]
        stats = {
            "attempts": attempts,
            "rejected": sum(reasons.values()),
            "reasons": dict(reasons),
            "exhausted": exhausted,
        }
        return GeneratedBatch(images=images, masks=out_masks, defect_types=[j.label for j in jobs], stats=stats)

    def _sampler(self, attempt: int, guidance_scale: float) -> PatchSampler:
        """The sampler for retry ``attempt`` (0 = first try), with normal-token guidance ``guidance_scale``.

        Pure DDIM inversion is deterministic: retrying it with the same placement would redraw the
        very patch the quality filter just rejected. Each retry therefore mixes more fresh noise
        into the inverted latent inside the mask (0.5, then 1.0), while the background still comes
        from the inverted trajectory of the target image.
        """
        noise = self.inversion_noise
        if self.mode == "inversion" and attempt > 0:
            noise = max(noise, min(1.0, RETRY_INVERSION_NOISE * attempt))
        return PatchSampler(
            self.denoiser,
            self._noise_scheduler,
            num_inference_steps=self.num_inference_steps,
            mode=self.mode,
            inversion_noise=noise,
            guidance_scale=guidance_scale,
        )

    def _sample_patches(
        self,
        sampler: PatchSampler,
        jobs: list[_Job],
        indices: list[int],
        known: torch.Tensor,
        patch_masks: torch.Tensor,
    ) -> list[torch.Tensor]:
        """Generated patches for ``indices``, ``generation_batch_size`` at a time (sizes already uniform)."""
        patches: list[torch.Tensor] = []
        for start in range(0, len(indices), self.generation_batch_size):
            chunk = indices[start : start + self.generation_batch_size]
            tokens = torch.stack([jobs[i].token for i in chunk])
            out = sampler.sample(known[chunk], patch_masks[chunk], tokens, [jobs[i].rng for i in chunk])
            patches.extend(out)
        return patches

    def _paste_region(self, job: _Job, restored: torch.Tensor) -> torch.Tensor:
        """Bool mask over the box to paste through: where the patch really changed near the placement
        (mask alignment), or the placement itself when refinement is off or finds no change (never empty)."""
        rows, cols = job.box.slices()
        placement = job.mask[rows, cols]
        if not self.refine_masks:
            return placement
        refined = refine_mask(job.image[:, rows, cols], restored, placement, dilation=self.refine_dilation)
        return refined if bool(refined.any()) else placement

    def _assess(self, job: _Job, restored: torch.Tensor, region: torch.Tensor) -> QualityVerdict:
        """Judge the box as it will be returned; measured over placement and refined mask together, so a
        defect that filled only a sliver of the requested placement counts as incomplete."""
        rows, cols = job.box.slices()
        before = job.image[:, rows, cols]
        placement = job.mask[rows, cols]
        return self._filter.assess(before, composite(before, restored, region), placement | region)

    # ------------------------------------------------------------ persistence
    def check_compatible(
        self,
        *,
        category: str | None = None,
        defect_types: Sequence[str] | None = None,
        patch_size: int | None = None,
    ) -> None:
        """Raise ``CheckpointMismatchError`` if this (loaded) generator was trained for something else."""
        problems = []
        if category is not None and category != self.category:
            problems.append(f"category {self.category!r}, expected {category!r}")
        if defect_types is not None and sorted(defect_types) != sorted(self._defect_types):
            problems.append(f"defect types {self._defect_types}, expected {sorted(defect_types)}")
        if patch_size is not None and patch_size != self.patch_size:
            problems.append(f"patch size {self.patch_size}, expected {patch_size}")
        if problems:
            raise CheckpointMismatchError(
                f"this diffusion generator was trained with {'; '.join(problems)}. "
                "Fix: fit a generator for this category/defect set (or load the checkpoint saved for it)."
            )

    @classmethod
    def load(
        cls,
        directory: str | Path,
        *,
        category: str | None = None,
        defect_types: Sequence[str] | None = None,
        patch_size: int | None = None,
        **overrides: Any,
    ) -> DiffusionAnomalyGenerator:
        """Load a saved generator; with ``category``/``defect_types``/``patch_size`` also check it is the right one.

        ``overrides`` change ``sampling_options`` (e.g. ``guidance_scale=3.0``, ``mode="repaint"``).
        """
        instance = super().load(directory, **overrides)
        if not isinstance(instance, DiffusionAnomalyGenerator):  # loaded through the base class registry
            raise CheckpointMismatchError(f"{directory} holds a {type(instance).__name__}, not a diffusion generator")
        instance.check_compatible(category=category, defect_types=defect_types, patch_size=patch_size)
        return instance

    def _save_state(self, directory: Path) -> None:
        if self._denoiser is None or self._mask_bank is None:
            raise NotFittedError(f"{type(self).__name__} has nothing to save: call fit() first")
        self._denoiser.save_pretrained(directory / DENOISER_DIR)
        self._noise_scheduler.save_pretrained(directory / SCHEDULER_DIR)
        if self._mask_prior is not None:
            self._mask_prior.save_pretrained(directory / MASK_PRIOR_DIR)
        shot_masks = {
            f"{name}/{index}": crop.to(torch.uint8).contiguous()
            for name in self._mask_bank.defect_types
            for index, crop in enumerate(self._mask_bank.masks(name))
        }
        save_file(shot_masks, directory / SHOT_MASKS_FILE)
        if self._realism is not None:
            save_file(self._realism.state_tensors(), directory / REALISM_FILE)
        state = {
            "category": self.category,
            "defect_types": self._defect_types,
            "patch_size": self.patch_size,
            "training": asdict(self.training_report) if self.training_report is not None else None,
            "calibrated_guidance": self.calibrated_guidance,
            "guidance_calibration": {str(k): v for k, v in self.guidance_calibration.items()},
        }
        (directory / STATE_FILE).write_text(json.dumps(state, indent=2))

    def _load_state(self, directory: Path) -> None:
        state_path = directory / STATE_FILE
        if not state_path.is_file():
            raise CheckpointMismatchError(
                f"{directory}: no {STATE_FILE}; this folder was not written by DiffusionAnomalyGenerator.save(). "
                "Fix: fit the generator and save it there."
            )
        state = json.loads(state_path.read_text())
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
        self.calibrated_guidance = state.get("calibrated_guidance")
        self.guidance_calibration = {float(k): float(v) for k, v in (state.get("guidance_calibration") or {}).items()}
        masks_by_type: dict[str, list[torch.Tensor]] = {name: [] for name in self._defect_types}
        for key, crop in sorted(load_file(directory / SHOT_MASKS_FILE).items(), key=lambda kv: _mask_key(kv[0])):
            masks_by_type[key.rsplit("/", 1)[0]].append(crop.bool())
        self._mask_bank = ShotMaskBank(masks_by_type)

    def state_fingerprint(self) -> str:
        if self._denoiser is None:
            return ""
        digest = hashlib.sha256(json.dumps(self._defect_types).encode())
        for name, tensor in sorted(self._denoiser.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor.detach().contiguous().numpy().tobytes())
        return digest.hexdigest()


def _mask_key(key: str) -> tuple[str, int]:
    name, index = key.rsplit("/", 1)
    return name, int(index)

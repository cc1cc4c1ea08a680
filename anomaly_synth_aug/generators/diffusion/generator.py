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

One job per file: ``fitting.py`` (fit and guidance calibration), ``synthesis.py`` (the
generate/retry loop), ``storage.py`` (the saved folder), and this file (the configuration and the
public generate calls).

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
fine detail kept under large defects  — (Laplacian split at the patch scale)  ``keep_fine_detail``
realism filter, per-type guidance     — (ImageNet features of the shots)     ``realism_filter``, ``"auto"``
visibility filter                     — (feature contrast of the shots)      ``visibility_filter``
placement on the shots' surface       — (feature context of the shots)       ``context_placement``
strength matched to the shots         — (signed contrast of the shots)       ``match_contrast``
====================================  =====================================  ==========================
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from anomaly_synth_aug.data.sample import NORMAL_TYPE
from anomaly_synth_aug.errors import (
    CheckpointMismatchError,
    InvalidInputError,
    NotFittedError,
    UnknownDefectTypeError,
)
from anomaly_synth_aug.generators.base import (
    AnomalyGenerator,
    GeneratedBatch,
    ImagesLike,
    SeedSource,
    as_image_list,
    per_image_seed_sources,
)
from anomaly_synth_aug.generators.config import captures_config
from anomaly_synth_aug.generators.diffusion.fitting import AUTO, FittingMixin
from anomaly_synth_aug.generators.diffusion.mask_prior import MaskPrior
from anomaly_synth_aug.generators.diffusion.masks import MaskSource, ShotMaskBank
from anomaly_synth_aug.generators.diffusion.model import NORMAL_TOKEN, DefectDenoiser
from anomaly_synth_aug.generators.diffusion.patches import check_window_settings
from anomaly_synth_aug.generators.diffusion.quality import QualityFilter
from anomaly_synth_aug.generators.context_placement import ContextPlacement
from anomaly_synth_aug.generators.diffusion.realism import ShotRealism
from anomaly_synth_aug.generators.diffusion.visibility import FeatureContrast
from anomaly_synth_aug.generators.diffusion.sampling import (
    SamplingMode,
    check_guidance_scale,
)
from anomaly_synth_aug.generators.diffusion.storage import StorageMixin
from anomaly_synth_aug.generators.diffusion.synthesis import SynthesisMixin
from anomaly_synth_aug.generators.diffusion.training import (
    LossSwitches,
    TrainingReport,
    make_noise_scheduler,
)
from anomaly_synth_aug.utils.choices import parse_choice
from anomaly_synth_aug.utils.random import as_torch_generator, derive_seed

logger = logging.getLogger(__name__)


def _image_streams(generator: SeedSource, count: int) -> list[torch.Generator]:
    """One seeded stream per image, as ``generate`` makes them: from one seed source, or one per image
    (image ``i`` then comes out as it would alone with ``generator[i]``)."""
    if isinstance(generator, Sequence) and not isinstance(generator, str | bytes):
        sources = per_image_seed_sources(generator, count)
    else:
        source = as_torch_generator(generator)
        sources = [source] * count
    return [torch.Generator().manual_seed(derive_seed(source)) for source in sources]


class DiffusionAnomalyGenerator(FittingMixin, SynthesisMixin, StorageMixin, AnomalyGenerator):
    """Learns one category's defects from a few shots; synthesises them into normal images at native resolution.

    Args:
        category: name of the category (recorded; a checkpoint of another category will not load).
        patch_size: side of the square patch the defect is generated in (multiple of 4).
        fill: fraction of the patch side the mask's bounding box spans; the rest is context.
        max_aspect: largest aspect ratio of the crop box (long thin defects keep their width).
        window_scale: patch scale follows the defect. None: each defect is generated in one patch over
            its context box, however large (a large box is generated coarse and upscaled). A number:
            a defect whose box is larger than ``patch_size * window_scale`` native pixels is generated
            in windows of that side, one after another, and training crops such shots to windows of
            the same size (``patches.defect_windows``); e.g. 2.0 keeps a 3 px crack 1.5 px wide in
            the patch. Shapes what is learned, so it is a fitting option.
        max_windows: most windows per defect; a defect that needs more is tiled at a coarser scale.
            Bounds generation cost at ``max_windows`` times the UNet passes of one patch.
        block_out_channels: UNet widths per level.
        layers_per_block: UNet ResNet layers per level.
        attention: self-attention at the UNet's lowest resolution.
        max_steps: training steps, the budget (None: only ``max_minutes`` limits). A step budget makes a fit
            give the same model on a busy machine and on an idle one; the default's time on 2 CPU cores is
            in benchmarks/README.md.
        max_minutes: optional wall-clock guard on top of ``max_steps`` (None: steps alone decide).
        batch_size: training patches per step.
        learning_rate: AdamW learning rate.
        normal_fraction: share of normal patches per batch (normal alignment; 0 disables it).
        masked_loss: defect loss only inside the mask (else the whole patch with the defect token).
        background_disentangle: Cho et al. background term (needs ``masked_loss``).
        adaptive_weighting: strength of the error-driven re-weighting inside the mask (0 disables).
        num_inference_steps: DDIM steps per sample.
        mode: ``"inversion"`` (DDIM-inverted target, Cho et al.; the default: the defect grows out of the
            target's own noise, so its shading fits) or ``"repaint"`` (forward-noised background each step;
            skips the inversion passes, so it is faster; its cost downstream is in benchmarks/README.md).
        inversion_noise: fresh-noise share inside the mask in inversion mode (0 = pure inversion). Pure
            inversion fills a mask the caller fixes the same way for every seed (the seed still draws sampled
            masks); raise it, or use RePaint, for several variants on one mask.
        guidance_scale: normal-token guidance (``sampling.py``): > 1 strengthens what sets the defect apart
            from normal surface; 1 turns it off (one UNet pass per step instead of two). ``"auto"`` (the
            default) picks, at the end of ``fit`` and per defect type, the scale of ``guidance_candidates``
            whose samples on the training normals are as visible as that type's shots, in the same direction
            (signed contrast, ``calibration.py``): a rule that needs no test data and follows how strongly
            each fit draws each type (``calibrated_guidance``).
        guidance_candidates: the scales ``"auto"`` chooses from.
        calibration_samples: defects per type generated per candidate scale to choose it.
        realism_filter: reject (and regenerate) defects that lie farther from every real shot of their type,
            in pretrained feature space, than the loneliest shot lies from the others (``realism.py``). Off by
            default: its retries cost generation speed, and what it buys a detector is measured in
            benchmarks/README.md (``diffusion_realism``).
        visibility_filter: reject (and regenerate) defects that stand out from their surface, in the
            detectors' pretrained feature space, less than the faintest shot of their type does
            (``visibility.py``): a defect the backbone cannot see teaches a segmenter to mark normal-looking
            surface. Off by default until the benchmark shows what it buys (``diffusion_visible``).
        mask_source: ``"bank"`` (augmented shot masks) or ``"prior"`` (learned mask VAE).
        mask_prior_steps: training steps of the mask prior (``mask_source="prior"``).
        restrict_to_foreground: place sampled masks on the object, in categories whose shots show defects on an
            object surrounded by background (decided at fit time from the shots, ``object_category``).
        context_placement: centre each sampled mask where the surface looks like the surface the shots of its
            type sit on, in pretrained features (``generators/context_placement.py``): a screw's head scratch
            on its head (anywhere allowed when no position looks so). Off by default until the benchmark shows
            what it buys.
        refine_masks: shrink/grow the output mask to where the image changed (within the dilated mask).
            Off by default: on textured surfaces the pixel change is speckled, and so were the refined masks.
        refine_dilation: pixels the mask may grow by during refinement.
        quality_filter: reject and regenerate samples whose defect did not appear or whose background drifted.
        match_contrast: with ``guidance_scale="auto"``, draw each type at the lowest candidate scale that is at
            least as visible as its shots, and scale the change down to the shots' contrast (``matched_guidance``,
            ``defect_strength``, from the same calibration: ``calibration.lowest_reaching_scale``,
            ``calibration.attenuation``); never up. Off: the scale closest to the shots, the whole change.
        strength_jitter: each defect's change is scaled by a factor drawn log-uniformly from
            ``[1 / (1 + j), 1 + j]`` on top of its calibrated strength (0: none). A few dozen shots show only
            some of the visibilities a type comes in; a detector trained on a spread of them relies less on
            the shots' own. Off by default; measured as the benchmark variant ``diffusion_strength_jitter``.
        keep_fine_detail: where a defect's box is larger than the patch (generated coarse, then upscaled), add
            back the target surface's texture finer than the patch can hold (``patches.fine_detail``), so a
            large defect changes the surface without smoothing it away.
        min_inside_change: quality filter: least mean change over the placement (and refined) mask.
        max_outside_change: quality filter: largest change allowed outside it (a guard of the pixel-exact contract).
        max_retries: regeneration attempts per rejected sample (then the last attempt is kept and counted).
        generation_batch_size: patches per UNet batch while generating (small batches keep a CPU's caches
            warm; on a GPU larger batches pay).
        checkpoint_dir: folder for resumable training state (None: no checkpoints).
        num_threads: torch intra-op threads during fit/generate (None: leave as is).
        progress: show a tqdm bar while fitting.
    """

    requires_fit: ClassVar[bool] = True
    #: 2: the fit also measures the shots' contrast, calibrates guidance per type on it, and decides
    #: whether the category is an object on a background. 3: it also records each type's strength.
    #: 4: it also records each type's faintest shot in feature space (``visibility_filter``). 5: it also
    #: describes the surface each type's shots sit on (``context_placement``).
    fit_version: ClassVar[int] = 5
    per_sample_generators: ClassVar[bool] = True
    sampling_options: ClassVar[frozenset[str]] = frozenset(
        {
            "num_inference_steps",
            "mode",
            "inversion_noise",
            "guidance_scale",
            "realism_filter",
            "visibility_filter",
            "restrict_to_foreground",
            "context_placement",
            "refine_masks",
            "refine_dilation",
            "quality_filter",
            "keep_fine_detail",
            "match_contrast",
            "strength_jitter",
            "min_inside_change",
            "max_outside_change",
            "max_retries",
            "generation_batch_size",
            "num_threads",
            "progress",
        }
    )
    #: Options that came after fits and caches were stored; at these values they behave exactly as before.
    neutral_defaults: ClassVar[dict[str, Any]] = {
        "strength_jitter": 0.0,
        "window_scale": None,
        "max_windows": 4,
        "context_placement": False,
    }

    @captures_config
    def __init__(
        self,
        category: str = "category",
        patch_size: int = 32,
        fill: float = 0.5,
        max_aspect: float = 3.0,
        window_scale: float | None = None,
        max_windows: int = 4,
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
        mode: SamplingMode | str = SamplingMode.inversion,
        inversion_noise: float = 0.0,
        guidance_scale: float | str = AUTO,
        guidance_candidates: Sequence[float] = (1.0, 2.0, 3.0, 5.0),
        calibration_samples: int = 8,
        realism_filter: bool = False,
        visibility_filter: bool = False,
        mask_source: MaskSource | str = MaskSource.bank,
        mask_prior_steps: int = 400,
        restrict_to_foreground: bool = True,
        context_placement: bool = False,
        refine_masks: bool = False,
        refine_dilation: int = 3,
        quality_filter: bool = True,
        keep_fine_detail: bool = True,
        match_contrast: bool = True,
        strength_jitter: float = 0.0,
        min_inside_change: float = 0.03,
        max_outside_change: float = 2.0 / 255.0,
        max_retries: int = 2,
        generation_batch_size: int = 16,
        checkpoint_dir: str | Path | None = None,
        num_threads: int | None = None,
        progress: bool = True,
    ) -> None:
        super().__init__()  # every argument is already an attribute of the same name (captures_config)
        self.mode = parse_choice(SamplingMode, mode, "mode")
        self.mask_source = parse_choice(MaskSource, mask_source, "mask_source")
        if guidance_scale != AUTO:
            check_guidance_scale(float(guidance_scale))  # at construction, not first at generate()
            self.guidance_scale = float(guidance_scale)
        for candidate in guidance_candidates:
            check_guidance_scale(float(candidate))
        if calibration_samples < 1:
            raise InvalidInputError(
                f"calibration_samples must be >= 1, got {calibration_samples}", fix="use e.g. 8 defects per type"
            )
        if strength_jitter < 0:
            raise InvalidInputError(
                f"strength_jitter must be >= 0, got {strength_jitter}", fix="use 0 (off) or e.g. 1.0 (x0.5 to x2)"
            )
        if max_retries < 0:
            raise InvalidInputError(f"max_retries must be >= 0, got {max_retries}", fix="use e.g. 2")
        counts = {
            "batch_size": (batch_size, 32),
            "generation_batch_size": (generation_batch_size, 16),
            "num_inference_steps": (num_inference_steps, 10),
            "num_threads": (num_threads, 2),
        }
        for name, (value, example) in counts.items():  # each failed late, without its name, in fit or generate
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise InvalidInputError(f"{name} must be a whole number >= 1, got {value!r}", fix=f"use e.g. {example}")
        check_window_settings(window_scale, max_windows)  # at construction, not first at fit()
        self.block_out_channels = tuple(block_out_channels)
        self.guidance_candidates = tuple(float(c) for c in guidance_candidates)
        self.checkpoint_dir = str(checkpoint_dir) if checkpoint_dir is not None else None
        self._switches = LossSwitches(masked_loss, background_disentangle, adaptive_weighting)  # validates
        self._defect_types: list[str] = []
        self._denoiser: DefectDenoiser | None = None
        self._noise_scheduler = make_noise_scheduler()
        self._mask_bank: ShotMaskBank | None = None
        self._mask_prior: MaskPrior | None = None
        self._image_channels = 3
        QualityFilter(min_inside_change=min_inside_change, max_outside_change=max_outside_change)  # validates them
        self._realism: ShotRealism | None = None
        self._visibility: FeatureContrast | None = None
        self._placement: ContextPlacement | None = None
        self.training_report: TrainingReport | None = None
        #: whether the shots showed an object on a background (``masks.defects_lie_on_objects``): then
        #: sampled placements stay on the object (``restrict_to_foreground``)
        self.object_category = False
        #: ``guidance_scale="auto"``: the scale chosen per defect type at fit time, the shots' signed
        #: contrast per type it matches, and each candidate's distance to it (``FittingMixin.calibrate_guidance``).
        self.calibrated_guidance: dict[str, float] = {}
        self.shot_contrast: dict[str, float] = {}
        #: ``visibility_filter``: per defect type, the feature contrast of its faintest shot
        self.shot_visibility: dict[str, float] = {}
        self.guidance_calibration: dict[str, dict[float, float]] = {}
        #: ``match_contrast``: per defect type, the lowest candidate scale at least as visible as the shots,
        #: and the share of that scale's change that brings it down to the shots' contrast
        self.matched_guidance: dict[str, float] = {}
        self.defect_strength: dict[str, float] = {}

    # ------------------------------------------------------------------ types
    @property
    def defect_types(self) -> list[str]:
        return list(self._defect_types)

    @property
    def denoiser(self) -> DefectDenoiser:
        if self._denoiser is None:
            raise NotFittedError(f"{type(self).__name__} has no model yet: call fit() or load() first")
        return self._denoiser

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
        generator: SeedSource = None,
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
        guidance = weight * self.guidance_for(first) + (1.0 - weight) * self.guidance_for(second)
        images, mask_list = self._normalise_inputs(normal_images, masks)
        jobs = []
        for image, mask, rng in zip(images, mask_list, _image_streams(generator, len(images)), strict=True):
            mask_type = first  # only drawn when a mask must be sampled, so given masks leave the stream alone
            if mask is None and float(torch.rand((), generator=rng)) >= weight:
                mask_type = second
            jobs.append(
                self._job(image, mask, mask_type, token, f"{first}+{second}", rng, self.quality_filter, guidance)
            )
        return self._synthesise(jobs)

    def generate_normal(
        self,
        normal_images: ImagesLike,
        masks: Sequence[torch.Tensor | None] | None = None,
        generator: SeedSource = None,
    ) -> GeneratedBatch:
        """Normal variation (SeaS normal alignment): re-synthesise a masked region with the NORMAL token.

        Masks default to random shot-like shapes. The result is a *normal* image (label 0 when
        used for training; ``defect_types`` reads ``"good"``); the quality filter is skipped because
        a good normal inpainting is expected to change little.
        """
        images, mask_list = self._normalise_inputs(normal_images, masks)
        token = self.denoiser.token(NORMAL_TOKEN)[0].detach()
        jobs = []
        for image, mask, rng in zip(images, mask_list, _image_streams(generator, len(images)), strict=True):
            jobs.append(self._job(image, mask, self._random_type(rng), token, NORMAL_TYPE, rng, check_quality=False))
        return self._synthesise(jobs)

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


__all__ = ["DiffusionAnomalyGenerator"]

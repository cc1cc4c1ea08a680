"""Defect synthesis with a pretrained Stable Diffusion inpainting model (the full-size, GPU path).

The from-scratch diffusion generator is sized for CPUs; users who have a GPU
and local Stable Diffusion inpainting weights get far richer textures by
adapting that model instead: a few learned tokens plus a UNet LoRA, fitted on
the same few shots, then inpainting inside a mask.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import ClassVar

import torch
from diffusers import StableDiffusionInpaintPipeline
from safetensors.torch import load_file, save_file

from anomaly_synth_aug.data.sample import AnomalySample, to_rgb_float
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators.base import AnomalyGenerator, GeneratedBatch
from anomaly_synth_aug.generators.diffusion.masks import (
    ShotMaskBank,
    foreground_region,
    place_mask,
)
from anomaly_synth_aug.generators.diffusion.patches import (
    CropBox,
    context_box,
    crop_image_patch,
    crop_mask_patch,
    mask_bbox,
    paste_patch,
    uncrop_patch,
)
from anomaly_synth_aug.generators.diffusion.pretrained_loading import (
    add_tokens,
    attach_unet_lora,
    check_local_model_dir,
    load_inpaint_pipeline,
    load_learned_parts,
    resolve_device,
    resolve_dtype,
    save_learned_parts,
    token_embeddings,
    unet_lora_state,
    word_embedding,
)
from anomaly_synth_aug.generators.diffusion.pretrained_training import (
    DefectCrops,
    TrainSettings,
    train_tokens_and_lora,
)
from anomaly_synth_aug.utils.fingerprint import update_with_tensors
from anomaly_synth_aug.utils.random import derive_seed

NORMAL_TOKEN = "<normal>"
NORMAL_KEY = "good"  # key of the normal token in the name -> token map
SHOT_MASKS_FILE = "shot_masks.safetensors"


def defect_token(defect_type: str) -> str:
    """The learned token of a defect type, e.g. ``<defect_crack>``."""
    return f"<defect_{defect_type}>"


class StableDiffusionInpaintGenerator(AnomalyGenerator):
    """Few-shot defects from a local Stable Diffusion inpainting checkpoint (the full-size path; GPU recommended).

    Use this when a GPU and Stable Diffusion inpainting weights are at hand
    (the from-scratch diffusion generator is the CPU-sized model). ``fit``
    learns one token per defect type (``<defect_TYPE>``, initialised from the
    type's own name), one ``<normal>`` token (initialised from
    ``normal_initializer``) and a LoRA on the UNet attention projections; the
    base weights never change. ``generate`` inpaints a local crop around each
    mask at ``resolution`` with ``prompt_template`` and pastes the result back
    only inside the mask, so every pixel outside it is bit-exact. Without a
    given placement, masks are real shot shapes (augmented) at random places.

    Weights are only ever read from ``local_dir``: a diffusers pipeline folder
    (``model_index.json`` plus ``unet/``, ``vae/``, ``text_encoder/``,
    ``tokenizer/``, ``scheduler/``) of an *inpainting* checkpoint (9-channel
    UNet). Make one once, on a machine with internet::

        huggingface-cli download stable-diffusion-v1-5/stable-diffusion-inpainting --local-dir /models/sd-inpaint

    then pass ``local_dir="/models/sd-inpaint"`` (YAML: ``init_args.local_dir``).
    Loading uses ``local_files_only=True``, so a missing or incomplete folder
    raises ``InvalidInputError`` instead of downloading. ``save`` writes only
    the learned parts (token embeddings + LoRA as safetensors, in the formats
    of diffusers' ``load_textual_inversion``/``load_lora_weights``) and the
    config, which names ``local_dir``; ``load`` re-attaches them to that base.

    Args:
        local_dir: diffusers folder of a Stable Diffusion inpainting checkpoint.
        resolution: side of the square crop the model sees (512 for SD 1.x/2.x inpainting).
        device: torch device; None picks CUDA when available, else CPU.
        dtype: ``"float16"``, ``"bfloat16"`` or ``"float32"``; None is fp16 on CUDA, fp32 on CPU.
        max_steps: optimisation steps in ``fit``.
        batch_size: defect crops per step.
        token_learning_rate: AdamW learning rate of the new token embeddings.
        lora_learning_rate: AdamW learning rate of the LoRA weights.
        lora_rank: LoRA rank (alpha equals rank).
        background_disentangle: add the term that makes ``<normal>`` explain the
            background of defect crops, so defect tokens learn only the defect.
        normal_weight: weight of the normal-alignment term (0 disables it).
        adaptive_weighting: up-weights the parts of the mask with the largest error (0 = uniform).
        normal_initializer: words whose embedding starts the ``<normal>`` token.
        fill: fraction of the crop side the mask's bounding box spans (smaller = more context).
        min_crop_size: smallest crop side in source pixels (keeps tiny defects in context).
        restrict_to_foreground: place generated masks on the estimated object only (see ``foreground_region``).
        num_inference_steps: denoising steps per generated image.
        guidance_scale: classifier-free guidance scale (1 disables guidance).
        prompt_template: prompt with a ``{token}`` placeholder.
        generation_batch_size: crops per pipeline call in ``generate`` (GPU throughput vs memory).
        progress: show a tqdm bar during ``fit``.
    """

    requires_fit = True
    #: Options that change only how samples are drawn (and where): a saved fit loads with other values
    #: (``AnomalyGenerator.load(folder, device="cpu", num_inference_steps=50)``).
    sampling_options: ClassVar[frozenset[str]] = frozenset(
        {
            "device",
            "num_inference_steps",
            "guidance_scale",
            "generation_batch_size",
            "progress",
            "restrict_to_foreground",
        }
    )

    def __init__(
        self,
        local_dir: str | Path,
        resolution: int = 512,
        device: str | None = None,
        dtype: str | None = None,
        max_steps: int = 500,
        batch_size: int = 2,
        token_learning_rate: float = 5e-3,
        lora_learning_rate: float = 1e-4,
        lora_rank: int = 8,
        background_disentangle: bool = True,
        normal_weight: float = 0.5,
        adaptive_weighting: float = 1.0,
        normal_initializer: str = "surface",
        fill: float = 0.5,
        min_crop_size: int = 64,
        restrict_to_foreground: bool = True,
        num_inference_steps: int = 30,
        guidance_scale: float = 7.5,
        prompt_template: str = "a photo of {token}",
        generation_batch_size: int = 8,
        progress: bool = True,
    ) -> None:
        super().__init__()
        positive = {
            "resolution": resolution,
            "max_steps": max_steps,
            "batch_size": batch_size,
            "lora_rank": lora_rank,
            "min_crop_size": min_crop_size,
            "num_inference_steps": num_inference_steps,
            "generation_batch_size": generation_batch_size,
        }
        for name, value in positive.items():
            if value < 1:
                raise InvalidInputError(f"{name} must be >= 1, got {value}", fix=f"pass a positive {name}")
        if resolution % 8:
            raise InvalidInputError(
                f"resolution must be a multiple of 8 (the VAE's downsampling), got {resolution}",
                fix="use e.g. 512 for Stable Diffusion 1.x/2.x inpainting",
            )
        if not 0.0 < fill <= 1.0:
            raise InvalidInputError(f"fill must be in (0, 1], got {fill}", fix="use e.g. 0.5")
        if "{token}" not in prompt_template:
            raise InvalidInputError(
                f"prompt_template {prompt_template!r} has no {{token}} placeholder", fix='use e.g. "a photo of {token}"'
            )
        resolve_dtype(dtype, resolve_device(device))  # a bad name fails here, not at the first fit
        self.local_dir = str(check_local_model_dir(local_dir))
        self.resolution = resolution
        self.device = device
        self.dtype = dtype
        self.max_steps = max_steps
        self.batch_size = batch_size
        self.token_learning_rate = token_learning_rate
        self.lora_learning_rate = lora_learning_rate
        self.lora_rank = lora_rank
        self.background_disentangle = background_disentangle
        self.normal_weight = normal_weight
        self.adaptive_weighting = adaptive_weighting
        self.normal_initializer = normal_initializer
        self.fill = fill
        self.min_crop_size = min_crop_size
        self.restrict_to_foreground = restrict_to_foreground
        self.num_inference_steps = num_inference_steps
        self.guidance_scale = guidance_scale
        self.prompt_template = prompt_template
        self.generation_batch_size = generation_batch_size
        self.progress = progress
        self._pipeline: StableDiffusionInpaintPipeline | None = None
        self._tokens: dict[str, str] = {}  # defect type (and NORMAL_KEY) -> learned token
        self._mask_bank = ShotMaskBank({})
        self.fit_losses: list[float] = []

    # ------------------------------------------------------------- pipeline
    def _load_base(self) -> StableDiffusionInpaintPipeline:
        device = resolve_device(self.device)
        return load_inpaint_pipeline(self.local_dir, device, resolve_dtype(self.dtype, device))

    @property
    def pipeline(self) -> StableDiffusionInpaintPipeline:
        """The diffusers pipeline: base weights plus, once fitted or loaded, the learned tokens and LoRA."""
        if self._pipeline is None:
            self._pipeline = self._load_base()
        return self._pipeline

    @property
    def defect_types(self) -> list[str]:
        return sorted(name for name in self._tokens if name != NORMAL_KEY)

    @property
    def is_fitted(self) -> bool:
        """Fitted means learned tokens are attached (a folder saved before ``fit`` loads as unfitted)."""
        return super().is_fitted and bool(self._tokens)

    def prompt(self, name: str) -> str:
        """The prompt of a defect type (or of ``NORMAL_KEY``)."""
        return self.prompt_template.format(token=self._tokens[name])

    def _crop_box(self, mask: torch.Tensor) -> CropBox:
        return context_box(mask_bbox(mask), tuple(mask.shape), patch_size=self.min_crop_size, fill=self.fill)

    # ------------------------------------------------------------------ fit
    def _fit(
        self,
        normal_images: list[torch.Tensor],
        shots: list[AnomalySample],
        generator: torch.Generator | None,
    ) -> None:
        if not shots:
            raise InvalidInputError("fit() needs at least one defect shot", fix="pass the few-shot defect samples")
        normals = [to_rgb_float(image) for image in normal_images]
        if self.normal_weight > 0 and not normals:
            raise InvalidInputError(
                "normal alignment needs normal images but none were given",
                fix="pass normal_images, or set normal_weight=0",
            )
        pipe = self._load_base()  # always from the base weights, so a re-fit does not stack tokens
        types = sorted({shot.defect_type for shot in shots})
        tokens = {name: defect_token(name) for name in types} | {NORMAL_KEY: NORMAL_TOKEN}
        initial = {tokens[name]: word_embedding(pipe, name.replace("_", " ")) for name in types}
        initial[NORMAL_TOKEN] = word_embedding(pipe, self.normal_initializer)
        new_ids = add_tokens(pipe, initial)
        attach_unet_lora(pipe, self.lora_rank)

        boxes = [self._crop_box(shot.mask) for shot in shots]
        crops = DefectCrops(
            images=torch.stack([crop_image_patch(s.image, box, self.resolution) for s, box in zip(shots, boxes)]),
            masks=torch.cat([crop_mask_patch(s.mask, box, self.resolution) for s, box in zip(shots, boxes)]),
            prompt_index=torch.tensor([types.index(shot.defect_type) for shot in shots]),
        )
        settings = TrainSettings(
            max_steps=self.max_steps,
            batch_size=self.batch_size,
            token_learning_rate=self.token_learning_rate,
            lora_learning_rate=self.lora_learning_rate,
            background_disentangle=self.background_disentangle,
            normal_weight=self.normal_weight,
            adaptive_weighting=self.adaptive_weighting,
            # normal crops show the surface at the scale of the defect crops
            normal_crop_size=int(torch.tensor([max(box.height, box.width) for box in boxes]).median()),
            progress=self.progress,
        )
        self.fit_losses = train_tokens_and_lora(
            pipe,
            crops,
            normals,
            [self.prompt_template.format(token=tokens[name]) for name in types],
            self.prompt_template.format(token=NORMAL_TOKEN),
            new_ids,
            settings,
            torch.Generator().manual_seed(derive_seed(generator)),
        )
        self._pipeline, self._tokens = pipe, tokens
        self._mask_bank = ShotMaskBank.from_shots(shots)

    # ------------------------------------------------------------- generate
    def _generate(
        self,
        images: list[torch.Tensor],
        masks: list[torch.Tensor | None],
        defect_types: list[str | None],
        generator: torch.Generator | None,
    ) -> GeneratedBatch:
        known = self.defect_types
        jobs: list[tuple[str, torch.Tensor, int]] = []  # every random draw of image i happens before image i + 1
        for image, mask, chosen in zip(images, masks, defect_types, strict=True):
            defect = chosen if chosen is not None else known[int(torch.randint(len(known), (1,), generator=generator))]
            if mask is None:
                region = foreground_region(image) if self.restrict_to_foreground else None
                crop = self._mask_bank.sample(defect, generator)
                mask = place_mask(crop, tuple(image.shape[-2:]), region, generator)
            jobs.append((defect, mask, derive_seed(generator)))
        out_images: list[torch.Tensor] = []
        for start in range(0, len(jobs), self.generation_batch_size):
            chunk = slice(start, start + self.generation_batch_size)
            out_images += self._inpaint(images[chunk], jobs[chunk])
        return GeneratedBatch(
            images=out_images, masks=[mask for _, mask, _ in jobs], defect_types=[defect for defect, _, _ in jobs]
        )

    def _inpaint(self, images: list[torch.Tensor], jobs: list[tuple[str, torch.Tensor, int]]) -> list[torch.Tensor]:
        """One pipeline call for a chunk: inpaint the crop around each mask, paste back only inside the mask.

        Each image gets its own seeded ``torch.Generator`` (diffusers draws per-sample noise
        from a generator list), so its result does not depend on what else is in the batch.
        """
        boxes = [self._crop_box(mask) for _, mask, _ in jobs]
        crops = [crop_image_patch(image, box, self.resolution) for image, box in zip(images, boxes)]
        crop_masks = [crop_mask_patch(mask, box, self.resolution) for (_, mask, _), box in zip(jobs, boxes)]
        generated = self.pipeline(
            prompt=[self.prompt(defect) for defect, _, _ in jobs],
            image=torch.stack(crops),
            mask_image=torch.stack(crop_masks).float(),
            height=self.resolution,
            width=self.resolution,
            strength=1.0,
            num_inference_steps=self.num_inference_steps,
            guidance_scale=self.guidance_scale,
            generator=[torch.Generator().manual_seed(seed) for _, _, seed in jobs],
            output_type="pt",
        ).images.float().cpu()
        return [
            paste_patch(image, uncrop_patch(patch, box), box, mask)
            for image, patch, box, (_, mask, _) in zip(images, generated, boxes, jobs, strict=True)
        ]

    # ---------------------------------------------------------- persistence
    def _save_state(self, directory: Path) -> None:
        if not self._tokens:
            return
        save_learned_parts(self.pipeline, self._tokens, directory)
        crops = {
            f"{name}/{index}": crop.to(torch.uint8)
            for name in self._mask_bank.defect_types
            for index, crop in enumerate(self._mask_bank.masks(name))
        }
        save_file(crops, directory / SHOT_MASKS_FILE)

    def _load_state(self, directory: Path) -> None:
        masks_path = directory / SHOT_MASKS_FILE
        if not masks_path.is_file():  # saved before fit: nothing learned to restore
            return
        stored = load_file(masks_path)
        pipe = self._load_base()
        self._tokens = load_learned_parts(pipe, directory)
        self._pipeline = pipe
        by_type: dict[str, list[torch.Tensor]] = {name: [] for name in self.defect_types}
        for key in sorted(stored, key=lambda k: (k.rsplit("/", 1)[0], int(k.rsplit("/", 1)[1]))):
            by_type[key.rsplit("/", 1)[0]].append(stored[key].bool())
        self._mask_bank = ShotMaskBank(by_type)

    def state_fingerprint(self) -> str:
        if not self._tokens:
            return ""
        digest = hashlib.sha256(f"fit_version={self.fit_version}".encode())  # a pool of an older fit is stale
        tensors = token_embeddings(self.pipeline, sorted(self._tokens.values())) | unet_lora_state(self.pipeline)
        for name in self._mask_bank.defect_types:
            tensors |= {f"{name}/{i}": crop for i, crop in enumerate(self._mask_bank.masks(name))}
        update_with_tensors(digest, tensors, as_float=True)
        return digest.hexdigest()


__all__ = ["NORMAL_TOKEN", "StableDiffusionInpaintGenerator", "defect_token"]

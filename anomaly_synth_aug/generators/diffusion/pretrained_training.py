"""Fit the new tokens and the UNet LoRA of a pretrained inpainting pipeline on a few defect crops.

Three terms, all on the inpainting UNet (noisy latents + mask + masked-image
latents), with the pure loss functions of ``losses`` applied to latents:

* defect: denoising loss inside the defect mask, prompted with the defect token;
* background disentanglement (switchable): the same noisy crop with the defect
  region replaced by fresh noise must be explained, outside the mask, by the
  *normal* token, so the defect token cannot absorb background appearance;
* normal alignment: normal crops inpainted under a shot-shaped mask with the
  normal token, so ``<normal>`` means "this product's intact surface".

Only the new token rows of the embedding table and the LoRA weights train
(the textual-inversion idiom: every other row is restored after each step).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from diffusers import DDPMScheduler, StableDiffusionInpaintPipeline
from diffusers.training_utils import cast_training_params
from diffusers.utils.torch_utils import randn_tensor
from tqdm.auto import tqdm

from anomaly_synth_aug.generators.diffusion.losses import (
    adaptive_mask_weights,
    background_disentangled_loss,
    denoising_loss,
    mask_out_defect,
    masked_denoising_loss,
)
from anomaly_synth_aug.generators.diffusion.patches import CropBox, crop_image_patch


@dataclass
class DefectCrops:
    """Shot crops at model resolution: images ``[N, 3, R, R]`` in [0, 1], masks ``[N, R, R]`` bool.

    ``prompt_index[N]`` says which defect prompt (type) each crop belongs to.
    """

    images: torch.Tensor
    masks: torch.Tensor
    prompt_index: torch.Tensor


@dataclass
class TrainSettings:
    """Optimisation knobs of ``train_tokens_and_lora`` (mirrors the generator's constructor arguments)."""

    max_steps: int
    batch_size: int
    token_learning_rate: float
    lora_learning_rate: float
    background_disentangle: bool
    normal_weight: float
    adaptive_weighting: float
    normal_crop_size: int
    progress: bool


class _InpaintDenoiser:
    """The inpainting UNet's training forward, with inputs built like the pipeline's own sampling loop."""

    def __init__(self, pipe: StableDiffusionInpaintPipeline, generator: torch.Generator) -> None:
        self.pipe = pipe
        self.scheduler = DDPMScheduler.from_config(pipe.scheduler.config)
        self.generator = generator

    def encode(self, images: torch.Tensor) -> torch.Tensor:
        """Scaled VAE latents of ``[B, 3, R, R]`` images in [0, 1]."""
        pixels = self.pipe.image_processor.normalize(images).to(self.pipe.device, self.pipe.vae.dtype)
        with torch.no_grad():
            dist = self.pipe.vae.encode(pixels).latent_dist
        return dist.sample(generator=self.generator) * self.pipe.vae.config.scaling_factor

    def condition(self, images: torch.Tensor, masks: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Latent-size mask and masked-image latents, as ``prepare_mask_latents`` builds them at inference."""
        masks = masks[:, None].float()
        masked_latents = self.encode(images * (masks < 0.5))
        latent_mask = F.interpolate(masks, size=masked_latents.shape[-2:]).to(masked_latents)
        return latent_mask, masked_latents

    def loss_region(self, masks: torch.Tensor) -> torch.Tensor:
        """Mask ``[B, 1, h, w]`` at latent size marking every latent cell the defect touches (thin defects survive)."""
        return F.max_pool2d(masks[:, None].float(), self.pipe.vae_scale_factor).to(self.pipe.device)

    def noise_like(self, latents: torch.Tensor) -> torch.Tensor:
        return randn_tensor(latents.shape, generator=self.generator, device=latents.device, dtype=latents.dtype)

    def timesteps(self, count: int) -> torch.Tensor:
        steps = torch.randint(0, self.scheduler.config.num_train_timesteps, (count,), generator=self.generator)
        return steps.to(self.pipe.device)

    def target(self, latents: torch.Tensor, noise: torch.Tensor, steps: torch.Tensor) -> torch.Tensor:
        """What the UNet regresses: the noise, or the velocity for v-prediction checkpoints."""
        if self.scheduler.config.prediction_type == "v_prediction":
            return self.scheduler.get_velocity(latents, noise, steps)
        return noise

    def predict(
        self,
        noisy: torch.Tensor,
        latent_mask: torch.Tensor,
        masked_latents: torch.Tensor,
        steps: torch.Tensor,
        prompt_embeds: torch.Tensor,
    ) -> torch.Tensor:
        model_input = torch.cat([noisy, latent_mask, masked_latents], dim=1)
        return self.pipe.unet(model_input, steps, encoder_hidden_states=prompt_embeds).sample


def _flip(images: torch.Tensor, masks: torch.Tensor, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
    """Random horizontal/vertical flips shared by each image and its mask (cheap few-shot augmentation)."""
    for dim in (-1, -2):
        flip = torch.rand(images.shape[0], generator=generator) < 0.5
        images = torch.where(flip[:, None, None, None], images.flip(dim), images)
        masks = torch.where(flip[:, None, None], masks.flip(dim), masks)
    return images, masks


def _normal_crops(
    normal_images: Sequence[torch.Tensor], count: int, crop_size: int, resolution: int, generator: torch.Generator
) -> torch.Tensor:
    """``count`` random (up to) ``crop_size`` crops of normal images at model resolution ``[count, 3, R, R]``."""
    crops = []
    for _ in range(count):
        image = normal_images[int(torch.randint(len(normal_images), (1,), generator=generator))]
        height, width = image.shape[-2:]
        box_h, box_w = min(crop_size, height), min(crop_size, width)
        top = int(torch.randint(height - box_h + 1, (1,), generator=generator))
        left = int(torch.randint(width - box_w + 1, (1,), generator=generator))
        crops.append(crop_image_patch(image, CropBox(top, left, box_h, box_w), resolution))
    return torch.stack(crops)


def _defect_loss(
    denoiser: _InpaintDenoiser,
    images: torch.Tensor,
    masks: torch.Tensor,
    defect_embeds: torch.Tensor,
    normal_embeds: torch.Tensor,
    settings: TrainSettings,
) -> torch.Tensor:
    """Masked denoising loss of the defect token, plus the background term with the normal token when enabled."""
    latents = denoiser.encode(images)
    latent_mask, masked_latents = denoiser.condition(images, masks)
    region = denoiser.loss_region(masks)
    noise, steps = denoiser.noise_like(latents), denoiser.timesteps(latents.shape[0])
    noisy = denoiser.scheduler.add_noise(latents, noise, steps)
    target = denoiser.target(latents, noise, steps).float()
    if settings.background_disentangle:  # one UNet call for the defect and the defect-free background pass
        defect_free = mask_out_defect(noisy, region, denoiser.noise_like(latents))
        both = denoiser.predict(
            torch.cat([noisy, defect_free]),
            latent_mask.repeat(2, 1, 1, 1),
            masked_latents.repeat(2, 1, 1, 1),
            steps.repeat(2),
            torch.cat([defect_embeds, normal_embeds]),
        ).float()
        defect_prediction, background_prediction = both.chunk(2)
    else:
        defect_prediction = denoiser.predict(noisy, latent_mask, masked_latents, steps, defect_embeds).float()
    weights = None
    if settings.adaptive_weighting > 0:
        weights = adaptive_mask_weights(defect_prediction, target, region, settings.adaptive_weighting)
    if settings.background_disentangle:
        return background_disentangled_loss(target, defect_prediction, background_prediction, region, weights)
    return masked_denoising_loss(defect_prediction, target, region, weights)


def _normal_loss(
    denoiser: _InpaintDenoiser, normals: torch.Tensor, masks: torch.Tensor, normal_embeds: torch.Tensor
) -> torch.Tensor:
    """Whole-crop denoising loss of normal crops inpainted under shot-shaped masks with the normal token."""
    latents = denoiser.encode(normals)
    latent_mask, masked_latents = denoiser.condition(normals, masks)
    noise, steps = denoiser.noise_like(latents), denoiser.timesteps(latents.shape[0])
    noisy = denoiser.scheduler.add_noise(latents, noise, steps)
    prediction = denoiser.predict(noisy, latent_mask, masked_latents, steps, normal_embeds).float()
    return denoising_loss(prediction, denoiser.target(latents, noise, steps).float())


def train_tokens_and_lora(
    pipe: StableDiffusionInpaintPipeline,
    crops: DefectCrops,
    normal_images: Sequence[torch.Tensor],
    defect_prompts: list[str],
    normal_prompt: str,
    new_token_ids: list[int],
    settings: TrainSettings,
    generator: torch.Generator,
) -> list[float]:
    """Train the new token embeddings and the UNet LoRA in place; returns the loss of every step.

    The text encoder and the LoRA weights train in fp32 and the forward runs
    under autocast when the pipeline is fp16/bf16 (the diffusers training-script
    recipe); both are cast back to the pipeline dtype at the end.
    """
    device, dtype = pipe.device, pipe.unet.dtype
    for model in (pipe.vae, pipe.text_encoder, pipe.unet):
        model.requires_grad_(False)
    lora_params = [param for name, param in pipe.unet.named_parameters() if "lora_" in name]
    for param in lora_params:
        param.requires_grad_(True)
    pipe.text_encoder.to(dtype=torch.float32)  # small; trains through its input embeddings (diffusers' TI recipe)
    cast_training_params(pipe.unet, torch.float32)
    embedding = pipe.text_encoder.get_input_embeddings().weight
    embedding.requires_grad_(True)
    frozen_rows = torch.ones(embedding.shape[0], dtype=torch.bool, device=device)
    frozen_rows[new_token_ids] = False
    original_rows = embedding.detach().clone()

    optimizer = torch.optim.AdamW(
        [
            {"params": [embedding], "lr": settings.token_learning_rate, "weight_decay": 0.0},
            {"params": lora_params, "lr": settings.lora_learning_rate},
        ]
    )
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    denoiser = _InpaintDenoiser(pipe, generator)
    prompts = [*defect_prompts, normal_prompt]
    use_normals = settings.normal_weight > 0 and len(normal_images) > 0
    batch, resolution = settings.batch_size, crops.images.shape[-1]

    pipe.unet.train()
    pipe.text_encoder.train()
    losses: list[float] = []
    for _ in tqdm(range(settings.max_steps), desc="fit tokens + LoRA", disable=not settings.progress):
        pick = torch.randint(crops.images.shape[0], (batch,), generator=generator)
        images, masks = _flip(crops.images[pick], crops.masks[pick], generator)
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            prompt_table = pipe.encode_prompt(prompts, device, 1, do_classifier_free_guidance=False)[0]
            defect_embeds = prompt_table[crops.prompt_index[pick].to(device)]
            normal_embeds = prompt_table[-1].expand(batch, -1, -1)
            loss = _defect_loss(denoiser, images, masks, defect_embeds, normal_embeds, settings)
            if use_normals:
                normals = _normal_crops(normal_images, batch, settings.normal_crop_size, resolution, generator)
                loss = loss + settings.normal_weight * _normal_loss(denoiser, normals, masks, normal_embeds)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        with torch.no_grad():  # only the new tokens may move (textual-inversion idiom)
            embedding[frozen_rows] = original_rows[frozen_rows]
        losses.append(float(loss.detach()))

    cast_training_params(pipe.unet, dtype)  # back to the pipeline's inference dtype
    pipe.text_encoder.to(dtype=dtype)
    for model in (pipe.unet, pipe.text_encoder):
        model.eval()
        model.requires_grad_(False)
    return losses

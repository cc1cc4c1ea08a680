"""Sampling defect patches into known backgrounds with DDIM (few steps, deterministic given the start noise).

Two ways to keep the known region (outside the mask) consistent while the
defect is drawn inside it:

* ``"repaint"`` — start from noise; after every DDIM step replace the known
  region with the clean patch forward-noised to the same level (RePaint without
  resampling; the model also sees the clean context as a channel).
* ``"inversion"`` — Cho et al. 2024: DDIM-invert the target patch with the NORMAL
  token (``DDIMInverseScheduler``), start from the inverted latent, denoise with
  the defect token, and at every step take the background from the inverted
  trajectory. The defect then grows out of *this* image's own noise, so its
  shading fits the target. Costs two passes (invert + generate).

Normal-token guidance (``guidance_scale > 1``): classifier-free guidance with the
NORMAL token as the "unconditional" branch, ``eps_normal + s * (eps_defect -
eps_normal)``. It pushes each step along what tells this defect type from normal
surface, so a briefly trained model draws defects as strong as the real ones
instead of a faint average. Costs a second UNet pass per generation step.

Randomness is drawn per sample from its own ``torch.Generator``, so a patch's
result does not depend on which other patches share its batch.

The UNet runs in ``channels_last`` memory format while sampling: on CPU its
small-image convolutions are faster that way in inference (not in training,
so the model goes back to the contiguous format afterwards).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from enum import StrEnum

import torch
from diffusers import DDIMInverseScheduler, DDIMScheduler, DDPMScheduler

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators.diffusion.model import NORMAL_TOKEN, DefectDenoiser
from anomaly_synth_aug.generators.diffusion.training import (
    masked_context,
    to_model_space,
)
from anomaly_synth_aug.utils.choices import parse_choice


class SamplingMode(StrEnum):
    """How the known background is kept while the defect is drawn (module docstring)."""

    repaint = "repaint"
    inversion = "inversion"


#: The modes' values, in order (for messages and loops).
SAMPLING_MODES: tuple[str, ...] = tuple(mode.value for mode in SamplingMode)


def check_guidance_scale(guidance_scale: float) -> None:
    """Raise ``InvalidInputError`` unless ``guidance_scale >= 1`` (1 = no guidance)."""
    if guidance_scale < 1.0:
        raise InvalidInputError(
            f"guidance_scale must be >= 1 (1 = no guidance), got {guidance_scale}", fix="use e.g. 1.0 or 3.0"
        )


def per_sample_noise(shape: Sequence[int], generators: Sequence[torch.Generator | None]) -> torch.Tensor:
    """``[B, *shape]`` standard normal noise, row ``i`` drawn from ``generators[i]``."""
    return torch.stack([torch.randn(tuple(shape), generator=g) for g in generators])


@contextmanager
def channels_last(model: torch.nn.Module) -> Iterator[None]:
    """Run ``model`` in ``channels_last`` memory format inside the block, contiguous again after it.

    Parameters keep their identity (``Module.to`` swaps their data), so an optimiser that holds
    them is unaffected.
    """
    model.to(memory_format=torch.channels_last)
    try:
        yield
    finally:
        model.to(memory_format=torch.contiguous_format)


class PatchSampler:
    """Generates patches with a trained ``DefectDenoiser``.

    Args:
        model: the denoiser (EMA weights, eval mode).
        noise_scheduler: the training schedule; DDIM and inverse DDIM are derived from its config.
        num_inference_steps: DDIM steps (also the number of inversion steps).
        mode: ``"repaint"`` or ``"inversion"`` (see module docstring).
        inversion_noise: fraction of fresh noise variance mixed into the inverted latent inside the
            mask (0 = pure inversion; > 0 gives more varied defects at the cost of fidelity to the image).
        guidance_scale: normal-token guidance strength (1 = plain conditional sampling, no extra pass);
            ``sample(..., guidance=...)`` may give each patch its own.
    """

    def __init__(
        self,
        model: DefectDenoiser,
        noise_scheduler: DDPMScheduler,
        *,
        num_inference_steps: int = 20,
        mode: SamplingMode | str = SamplingMode.repaint,
        inversion_noise: float = 0.0,
        guidance_scale: float = 1.0,
    ) -> None:
        mode = parse_choice(SamplingMode, mode, "sampling mode")
        if num_inference_steps < 1:
            raise InvalidInputError(f"num_inference_steps must be >= 1, got {num_inference_steps}", fix="use e.g. 20")
        if not 0.0 <= inversion_noise <= 1.0:
            raise InvalidInputError(f"inversion_noise must be in [0, 1], got {inversion_noise}", fix="use e.g. 0.0")
        check_guidance_scale(guidance_scale)
        self.guidance_scale = guidance_scale
        self.model = model
        self.mode = mode
        self.inversion_noise = inversion_noise
        # "trailing" spacing starts at the last training step: the right choice for few DDIM steps
        self.scheduler = DDIMScheduler.from_config(noise_scheduler.config, timestep_spacing="trailing")
        self.inverse_scheduler = DDIMInverseScheduler.from_config(noise_scheduler.config, timestep_spacing="trailing")
        self.scheduler.set_timesteps(num_inference_steps)
        self.inverse_scheduler.set_timesteps(num_inference_steps)

    @torch.no_grad()
    def sample(
        self,
        known: torch.Tensor,
        masks: torch.Tensor,
        tokens: torch.Tensor,
        generators: Sequence[torch.Generator | None],
        guidance: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Generate inside ``masks`` of ``known`` patches.

        Args:
            known: ``[B, C, p, p]`` target patches in [0, 1].
            masks: ``[B, 1, p, p]`` bool, where to draw.
            tokens: ``[B, D]`` token vectors (type, mixed or normal).
            generators: one per sample (or None entries for unseeded draws).
            guidance: ``[B]`` guidance scale per patch (default: ``guidance_scale`` for all).

        Returns:
            The model's final clean patch ``[B, C, p, p]`` in [0, 1] over the *whole* patch
            (not blended): inside the mask it is the defect, outside it shows how well the model
            agreed with the background (what the quality filter checks).
        """
        scales = torch.full((known.shape[0],), float(self.guidance_scale)) if guidance is None else guidance.float()
        if scales.shape != (known.shape[0],) or bool((scales < 1.0).any()):
            raise InvalidInputError(
                f"guidance must hold one scale >= 1 per patch, got {tuple(scales.shape)} for {known.shape[0]} patches",
                fix="pass e.g. torch.full((batch,), 3.0)",
            )
        with channels_last(self.model):
            return self._sample(to_model_space(known), masks, tokens, generators, scales).contiguous()

    def _sample(
        self,
        x0: torch.Tensor,
        masks: torch.Tensor,
        tokens: torch.Tensor,
        generators: Sequence[torch.Generator | None],
        scales: torch.Tensor,
    ) -> torch.Tensor:
        x0 = x0.contiguous(memory_format=torch.channels_last)
        mask = masks.to(x0.dtype).contiguous(memory_format=torch.channels_last)
        context = masked_context(x0, mask)
        if self.mode == "inversion":
            trajectory = self.invert(x0, context, mask)
            start = trajectory[-1]
            if self.inversion_noise > 0:
                fresh = per_sample_noise(x0.shape[1:], generators)
                mixed = (1.0 - self.inversion_noise) ** 0.5 * start + self.inversion_noise**0.5 * fresh
                start = mask * mixed + (1.0 - mask) * start
            known_at = list(reversed(trajectory[:-1]))  # background latent after each generation step
        else:
            start = per_sample_noise(x0.shape[1:], generators)
            known_at = None
        return self._denoise(start, x0, context, mask, tokens, generators, known_at, scales)

    def _denoise(
        self,
        latents: torch.Tensor,
        x0: torch.Tensor,
        context: torch.Tensor,
        mask: torch.Tensor,
        tokens: torch.Tensor,
        generators: Sequence[torch.Generator | None],
        known_at: list[torch.Tensor] | None,
        scales: torch.Tensor,
    ) -> torch.Tensor:
        timesteps = self.scheduler.timesteps
        for index, timestep in enumerate(timesteps):
            noise_pred = self._predict_noise(latents, context, mask, timestep, tokens, scales)
            latents = self.scheduler.step(noise_pred, int(timestep), latents).prev_sample
            if index == len(timesteps) - 1:
                break  # the final clean estimate is returned unblended
            if known_at is not None:
                background = known_at[index]
            else:
                background = self.scheduler.add_noise(
                    x0, per_sample_noise(x0.shape[1:], generators), timesteps[index + 1].reshape(1)
                )
            latents = mask * latents + (1.0 - mask) * background
        return ((latents.clamp(-1.0, 1.0) + 1.0) / 2.0).clamp(0.0, 1.0)

    def _predict_noise(
        self,
        latents: torch.Tensor,
        context: torch.Tensor,
        mask: torch.Tensor,
        timestep: torch.Tensor,
        tokens: torch.Tensor,
        scales: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """The token's noise prediction, guided away from the normal token by ``scales`` (one per patch, > 1)."""
        if scales is None:
            scales = torch.full((latents.shape[0],), float(self.guidance_scale))
        if bool((scales == 1.0).all()):
            return self.model(latents, context, mask, timestep, tokens)
        normal = self.model.token(torch.full((latents.shape[0],), NORMAL_TOKEN, dtype=torch.long))
        both = self.model(
            torch.cat([latents, latents]),
            torch.cat([context, context]),
            torch.cat([mask, mask]),
            timestep,
            torch.cat([tokens, normal]),
        )
        conditional, unconditional = both.chunk(2)
        return unconditional + scales.to(both.dtype).view(-1, 1, 1, 1) * (conditional - unconditional)

    def invert(self, x0: torch.Tensor, context: torch.Tensor, mask: torch.Tensor) -> list[torch.Tensor]:
        """DDIM inversion of ``x0`` with the normal token: latents at each inverse timestep (last = most noisy)."""
        normal = self.model.token(torch.full((x0.shape[0],), NORMAL_TOKEN, dtype=torch.long))
        latents = x0
        trajectory: list[torch.Tensor] = []
        for timestep in self.inverse_scheduler.timesteps:
            noise_pred = self.model(latents, context, mask, timestep, normal)
            latents = self.inverse_scheduler.step(noise_pred, int(timestep), latents).prev_sample
            trajectory.append(latents)
        return trajectory

"""Denoising losses for few-shot defect learning. Pure functions: tensors in, tensors out, no model calls.

Shapes: predictions/targets ``[B, C, H, W]``; masks ``[B, 1, H, W]`` in {0, 1}
(float or bool). Every loss is normalised by the number of pixels it covers, so
small and large defects weigh the same per sample (a per-sample mean, then the
batch mean). Other backends (e.g. the pretrained Stable Diffusion one) reuse
these on latents.

* ``masked_denoising_loss`` — the noise error inside the mask only
  (AnomalyDiffusion's masked textual inversion: the defect token binds to what
  is inside the mask, not to the background around it).
* ``adaptive_mask_weights`` — per-pixel weights inside the mask that grow with
  the current error (AnomalyDiffusion's adaptive attention re-weighting
  analogue: regions of the mask the model under-generates get more weight).
* ``mask_out_defect`` + ``background_disentangled_loss`` — Cho et al. 2024:
  the defect term sees the whole noisy patch, the background term is computed
  on a noisy input whose defect region has been replaced, so learning the
  background never depends on the defect pixels.
"""

from __future__ import annotations

import torch

_EPS = 1e-6


def _as_float_mask(mask: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    return mask.to(like.dtype).expand(like.shape[0], 1, *like.shape[-2:])


def masked_denoising_loss(
    prediction: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean squared error over the pixels where ``mask`` is set (optionally weighted), averaged per sample.

    Samples whose mask is empty contribute zero (not NaN). Gradients reach only
    ``prediction`` values inside the mask.
    """
    region = _as_float_mask(mask, prediction)
    if weights is not None:
        region = region * weights
    squared = (prediction - target).pow(2) * region
    per_sample = squared.flatten(1).sum(1) / (region.flatten(1).sum(1) * prediction.shape[1] + _EPS)
    return per_sample.mean()


def denoising_loss(prediction: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Plain whole-patch MSE (normal alignment: the normal token learns the full normal patch)."""
    return torch.nn.functional.mse_loss(prediction, target)


@torch.no_grad()
def adaptive_mask_weights(
    prediction: torch.Tensor,
    target: torch.Tensor,
    mask: torch.Tensor,
    strength: float = 1.0,
) -> torch.Tensor:
    """Per-pixel weights ``[B, 1, H, W]`` that up-weight the parts of the mask the model gets most wrong.

    ``w = 1 + strength * e / mean_mask(e)`` inside the mask (``e`` = squared error averaged
    over channels), then renormalised to mean 1 over each sample's mask so the loss scale
    does not drift; 0 outside the mask. Computed without gradient (a stop-grad weight, not
    a term to minimise). ``strength=0`` gives uniform weights.
    """
    region = _as_float_mask(mask, prediction)
    error = (prediction - target).pow(2).mean(dim=1, keepdim=True) * region
    area = region.flatten(1).sum(1).clamp_min(_EPS).view(-1, 1, 1, 1)
    mean_error = error.flatten(1).sum(1).view(-1, 1, 1, 1) / area
    weights = (1.0 + strength * error / (mean_error + _EPS)) * region
    mean_weight = weights.flatten(1).sum(1).view(-1, 1, 1, 1) / area
    return weights / mean_weight.clamp_min(_EPS)


def mask_out_defect(noisy: torch.Tensor, mask: torch.Tensor, replacement: torch.Tensor) -> torch.Tensor:
    """``z_t^m``: the noisy input with the defect region replaced (e.g. by fresh noise).

    The result carries no information about the pixels inside ``mask``, which is
    what makes the background term of ``background_disentangled_loss`` defect-blind.
    """
    region = _as_float_mask(mask, noisy)
    return noisy * (1.0 - region) + replacement * region


def background_disentangled_loss(
    target: torch.Tensor,
    defect_prediction: torch.Tensor,
    background_prediction: torch.Tensor,
    mask: torch.Tensor,
    defect_weights: torch.Tensor | None = None,
) -> torch.Tensor:
    """Cho et al. 2024: ``|m (eps - eps(z_t, c_defect))|^2 + |(1 - m) (eps - eps(z_t^m, c_normal))|^2``.

    Args:
        target: the true noise ``eps``.
        defect_prediction: the model's noise on the full noisy patch with the defect token.
        background_prediction: the model's noise on ``mask_out_defect(z_t, ...)`` with the normal token.
        mask: the defect mask.
        defect_weights: optional ``adaptive_mask_weights`` for the defect term.
    """
    defect_term = masked_denoising_loss(defect_prediction, target, mask, defect_weights)
    background = 1.0 - _as_float_mask(mask, target)
    background_term = masked_denoising_loss(background_prediction, target, background)
    return defect_term + background_term

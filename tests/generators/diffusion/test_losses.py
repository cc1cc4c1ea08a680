"""The loss functions each do the one thing their mechanism needs (and would fail these tests without it)."""

from __future__ import annotations

import torch

from anomaly_synth_aug.generators.diffusion.losses import (
    adaptive_mask_weights,
    background_disentangled_loss,
    denoising_loss,
    mask_out_defect,
    masked_denoising_loss,
)


def _mask() -> torch.Tensor:
    mask = torch.zeros(2, 1, 8, 8)
    mask[:, :, 2:5, 3:6] = 1
    return mask


def test_masked_loss_ignores_prediction_outside_mask() -> None:
    target, prediction, mask = torch.randn(2, 3, 8, 8), torch.randn(2, 3, 8, 8), _mask()
    changed = prediction + 5.0 * (1 - mask)
    assert torch.allclose(masked_denoising_loss(prediction, target, mask), masked_denoising_loss(changed, target, mask))
    changed_inside = prediction + 5.0 * mask
    assert masked_denoising_loss(changed_inside, target, mask) > masked_denoising_loss(prediction, target, mask)


def test_masked_loss_is_a_mean_over_the_mask() -> None:
    mask = _mask()
    prediction = torch.zeros(2, 3, 8, 8)
    target = torch.full((2, 3, 8, 8), 2.0)
    assert torch.isclose(masked_denoising_loss(prediction, target, mask), torch.tensor(4.0))


def test_masked_loss_of_empty_mask_is_zero_not_nan() -> None:
    loss = masked_denoising_loss(torch.randn(1, 3, 4, 4), torch.randn(1, 3, 4, 4), torch.zeros(1, 1, 4, 4))
    assert loss.item() == 0.0


def test_whole_patch_loss_sees_everything() -> None:
    target = torch.zeros(1, 3, 4, 4)
    prediction = target.clone()
    prediction[..., 0, 0] = 1.0
    assert denoising_loss(prediction, target) > 0


def test_adaptive_weights_favour_high_error_pixels_and_average_one() -> None:
    mask = _mask()
    target = torch.zeros(2, 3, 8, 8)
    prediction = torch.zeros(2, 3, 8, 8)
    prediction[:, :, 2, 3] = 3.0  # the model is badly off at one mask pixel
    prediction[:, :, 3, 4] = 0.5
    weights = adaptive_mask_weights(prediction, target, mask, strength=1.0)
    assert weights[0, 0, 2, 3] > weights[0, 0, 3, 4] > weights[0, 0, 4, 5]
    assert torch.allclose((weights * mask).flatten(1).sum(1) / mask.flatten(1).sum(1), torch.ones(2))
    assert torch.all(weights[mask == 0] == 0)


def test_adaptive_weights_are_uniform_at_zero_strength_and_carry_no_gradient() -> None:
    mask = _mask()
    prediction = torch.randn(2, 3, 8, 8, requires_grad=True)
    weights = adaptive_mask_weights(prediction, torch.randn(2, 3, 8, 8), mask, strength=0.0)
    assert torch.allclose(weights, mask)
    assert not weights.requires_grad


def test_mask_out_defect_removes_all_information_inside_mask() -> None:
    mask = _mask()
    noisy = torch.randn(2, 3, 8, 8, requires_grad=True)
    blind = mask_out_defect(noisy, mask, torch.zeros(2, 3, 8, 8))
    (grad,) = torch.autograd.grad(blind.sum(), noisy)
    assert torch.all(grad[mask.expand_as(grad) == 1] == 0)
    assert torch.all(grad[mask.expand_as(grad) == 0] == 1)


def test_disentangled_loss_splits_defect_and_background_predictions() -> None:
    mask = _mask()
    target = torch.randn(2, 3, 8, 8)
    defect_pred = torch.randn(2, 3, 8, 8, requires_grad=True)
    background_pred = torch.randn(2, 3, 8, 8, requires_grad=True)
    loss = background_disentangled_loss(target, defect_pred, background_pred, mask)
    grad_defect, grad_background = torch.autograd.grad(loss, [defect_pred, background_pred])
    inside = mask.expand_as(target) == 1
    assert torch.all(grad_defect[~inside] == 0) and torch.any(grad_defect[inside] != 0)
    assert torch.all(grad_background[inside] == 0) and torch.any(grad_background[~inside] != 0)
    expected = masked_denoising_loss(defect_pred, target, mask) + masked_denoising_loss(background_pred, target, 1 - mask)
    assert torch.isclose(loss, expected)

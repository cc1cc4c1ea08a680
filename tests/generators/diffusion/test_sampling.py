"""DDIM sampling: seeded and batch-independent, RePaint keeps the known region, inversion follows the target."""

from __future__ import annotations

import contextlib

import pytest
import torch
from diffusion_helpers import TINY

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators.diffusion.model import DefectDenoiser
from anomaly_synth_aug.generators.diffusion.sampling import PatchSampler, channels_last
from anomaly_synth_aug.generators.diffusion.training import make_noise_scheduler, to_model_space

STEPS = 4


def _model() -> DefectDenoiser:
    torch.manual_seed(0)
    model = DefectDenoiser(2, patch_size=TINY["patch_size"], block_out_channels=TINY["block_out_channels"])
    return model.eval()


def _inputs(batch: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    known = torch.rand(batch, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    masks = torch.zeros(batch, 1, 16, 16, dtype=torch.bool)
    masks[:, :, 5:11, 4:12] = True
    return known, masks


def _gens(*seeds: int) -> list[torch.Generator]:
    return [torch.Generator().manual_seed(s) for s in seeds]


def _sampler(model: DefectDenoiser, mode: str) -> PatchSampler:
    return PatchSampler(model, make_noise_scheduler(), num_inference_steps=STEPS, mode=mode)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["repaint", "inversion"])
def test_output_is_a_valid_patch_and_seeded(mode: str) -> None:
    model = _model()
    known, masks = _inputs()
    tokens = model.token(torch.tensor([1, 2, 1])).detach()
    first = _sampler(model, mode).sample(known, masks, tokens, _gens(1, 2, 3))
    again = _sampler(model, mode).sample(known, masks, tokens, _gens(1, 2, 3))
    assert first.shape == known.shape and first.min() >= 0 and first.max() <= 1
    assert torch.equal(first, again)


def test_a_sample_does_not_depend_on_its_batch_mates() -> None:
    model = _model()
    known, masks = _inputs()
    tokens = model.token(torch.tensor([1, 2, 1])).detach()
    batch = _sampler(model, "repaint").sample(known, masks, tokens, _gens(1, 2, 3))
    alone = _sampler(model, "repaint").sample(known[1:2], masks[1:2], tokens[1:2], _gens(2))
    assert torch.allclose(batch[1], alone[0], atol=1e-5)


@pytest.mark.parametrize("mode", ["repaint", "inversion"])
def test_channels_last_sampling_matches_contiguous_sampling_and_leaves_the_model_contiguous(
    mode: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The faster memory format is a layout change only: same patches, and training afterwards is untouched."""
    model = _model()
    parameters = list(model.parameters())
    known, masks = _inputs()
    tokens = model.token(torch.tensor([1, 2, 1])).detach()
    fast = _sampler(model, mode).sample(known, masks, tokens, _gens(1, 2, 3))
    assert fast.is_contiguous()
    assert all(p.is_contiguous() for p in model.parameters())
    assert all(a is b for a, b in zip(parameters, model.parameters(), strict=True))  # an optimiser keeps them
    monkeypatch.setattr(
        "anomaly_synth_aug.generators.diffusion.sampling.channels_last", lambda module: contextlib.nullcontext()
    )
    plain = _sampler(model, mode).sample(known, masks, tokens, _gens(1, 2, 3))
    assert torch.allclose(fast, plain, atol=1e-5)


def test_channels_last_restores_the_model_when_sampling_fails() -> None:
    model = _model()
    with pytest.raises(RuntimeError), channels_last(model):
        assert model.unet.conv_in.weight.is_contiguous(memory_format=torch.channels_last)
        raise RuntimeError("interrupted")
    assert model.unet.conv_in.weight.is_contiguous()


def test_repaint_depends_on_the_seed_but_pure_inversion_does_not() -> None:
    """Inversion starts from the target's own inverted latent: no random start noise at all."""
    model = _model()
    known, masks = _inputs(1)
    tokens = model.token(torch.tensor([1])).detach()
    repaint = [_sampler(model, "repaint").sample(known, masks, tokens, _gens(s)) for s in (1, 2)]
    inverted = [_sampler(model, "inversion").sample(known, masks, tokens, _gens(s)) for s in (1, 2)]
    assert not torch.equal(repaint[0], repaint[1])
    assert torch.equal(inverted[0], inverted[1])


class _Spy(torch.nn.Module):
    """Wraps the denoiser and records the latents it is called with."""

    def __init__(self, model: DefectDenoiser) -> None:
        super().__init__()
        self.model = model
        self.latents: list[torch.Tensor] = []

    def token(self, index: torch.Tensor | int) -> torch.Tensor:
        return self.model.token(index)

    def forward(self, noisy: torch.Tensor, *args: torch.Tensor) -> torch.Tensor:
        self.latents.append(noisy.clone())
        return self.model(noisy, *args)


def test_inversion_takes_the_background_from_the_inverted_trajectory() -> None:
    spy = _Spy(_model())
    known, masks = _inputs(1)
    sampler = _sampler(spy, "inversion")  # type: ignore[arg-type]
    sampler.sample(known, masks, spy.token(torch.tensor([1])).detach(), _gens(0))
    inversion_calls, generation_calls = spy.latents[:STEPS], spy.latents[STEPS:]
    # generation starts from the last inverted latent and, after every step, its background is the
    # inverted latent of the same noise level (inversion call k + 1 received the latent of level k)
    trajectory = [*inversion_calls[1:], None]
    background = ~masks.expand_as(known)
    assert len(generation_calls) == STEPS
    for step, latent in enumerate(generation_calls[1:], start=1):
        expected = trajectory[STEPS - 1 - step]
        assert torch.allclose(latent[background], expected[background])


def test_repaint_background_is_the_known_patch_forward_noised() -> None:
    spy = _Spy(_model())
    known, masks = _inputs(1)
    _sampler(spy, "repaint").sample(known, masks, spy.token(torch.tensor([1])).detach(), _gens(0))  # type: ignore[arg-type]
    last = spy.latents[-1]  # the least noisy step: background is close to the clean known patch
    scheduler = make_noise_scheduler()
    alpha = scheduler.alphas_cumprod[PatchSampler(_model(), scheduler, num_inference_steps=STEPS).scheduler.timesteps[-1]]
    background = ~masks.expand_as(known)
    residual = last[background] - alpha.sqrt() * to_model_space(known)[background]
    assert residual.std() == pytest.approx(float((1 - alpha).sqrt()), rel=0.35)


def test_guidance_extrapolates_from_the_normal_token_prediction() -> None:
    """eps = eps(normal) + s * (eps(defect) - eps(normal)), both predicted in one batched pass."""
    model = _model()
    known, masks = _inputs(2)
    latents = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    context, mask = to_model_space(known) * (1 - masks.float()), masks.float()
    tokens = model.token(torch.tensor([1, 2])).detach()
    timestep = torch.tensor(500)
    with torch.no_grad():
        defect = model(latents, context, mask, timestep, tokens)
        normal = model(latents, context, mask, timestep, model.token(torch.tensor([0, 0])))
        sampler = PatchSampler(model, make_noise_scheduler(), num_inference_steps=STEPS, guidance_scale=3.0)
        guided = sampler._predict_noise(latents, context, mask, timestep, tokens)
        plain = _sampler(model, "repaint")._predict_noise(latents, context, mask, timestep, tokens)
    assert torch.allclose(guided, normal + 3.0 * (defect - normal), atol=1e-5)
    assert torch.equal(plain, defect)


@pytest.mark.parametrize("mode", ["repaint", "inversion"])
def test_guided_sampling_is_seeded_and_differs_from_unguided(mode: str) -> None:
    model = _model()
    known, masks = _inputs(2)
    tokens = model.token(torch.tensor([1, 2])).detach()

    def guided(scale: float) -> torch.Tensor:
        sampler = PatchSampler(
            model, make_noise_scheduler(), num_inference_steps=STEPS, mode=mode, guidance_scale=scale  # type: ignore[arg-type]
        )
        return sampler.sample(known, masks, tokens, _gens(1, 2))

    strong = guided(4.0)
    assert torch.equal(strong, guided(4.0))
    assert strong.min() >= 0 and strong.max() <= 1
    assert not torch.allclose(strong, guided(1.0))


def test_invalid_settings_are_explained() -> None:
    with pytest.raises(InvalidInputError, match="guidance_scale"):
        PatchSampler(_model(), make_noise_scheduler(), guidance_scale=0.5)
    with pytest.raises(InvalidInputError, match="mode"):
        PatchSampler(_model(), make_noise_scheduler(), mode="dreaming")  # type: ignore[arg-type]
    with pytest.raises(InvalidInputError, match="num_inference_steps"):
        PatchSampler(_model(), make_noise_scheduler(), num_inference_steps=0)

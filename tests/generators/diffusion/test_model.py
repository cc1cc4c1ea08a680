"""The denoiser: conditioning channels, learned tokens (mixable), diffusers save/load."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators.diffusion.model import NORMAL_TOKEN, DefectDenoiser


def _tiny(num_types: int = 2) -> DefectDenoiser:
    torch.manual_seed(0)
    return DefectDenoiser(num_types, patch_size=16, block_out_channels=(8, 16)).eval()


def _inputs(batch: int = 2) -> tuple[torch.Tensor, ...]:
    mask = torch.zeros(batch, 1, 16, 16)
    mask[:, :, 4:9, 4:9] = 1
    return torch.randn(batch, 3, 16, 16), torch.randn(batch, 3, 16, 16) * (1 - mask), mask, torch.tensor([10, 500])


def test_forward_predicts_noise_of_patch_shape() -> None:
    model = _tiny()
    noisy, context, mask, steps = _inputs()
    out = model(noisy, context, mask, steps, model.token(torch.tensor([0, 1])))
    assert out.shape == (2, 3, 16, 16)


def test_token_table_has_normal_plus_one_per_type_and_conditions_output() -> None:
    model = _tiny(num_types=3)
    assert model.tokens.num_embeddings == 4 and model.token_dim == model.tokens.embedding_dim
    noisy, context, mask, steps = _inputs()
    with torch.no_grad():
        normal = model(noisy, context, mask, steps, model.token(torch.tensor([NORMAL_TOKEN] * 2)))
        defect = model(noisy, context, mask, steps, model.token(torch.tensor([2, 2])))
    assert not torch.allclose(normal, defect)


def test_mixed_token_is_convex_combination() -> None:
    model = _tiny()
    mixed = model.mixed_token(1, 2, 0.25)
    assert torch.allclose(mixed, 0.25 * model.token(1) + 0.75 * model.token(2))
    assert torch.allclose(model.mixed_token(1, 2, 1.0), model.token(1))
    with pytest.raises(InvalidInputError, match="weight"):
        model.mixed_token(1, 2, 1.5)


def test_context_and_mask_channels_condition_the_prediction() -> None:
    model = _tiny()
    noisy, context, mask, steps = _inputs()
    tokens = model.token(torch.tensor([1, 1]))
    with torch.no_grad():
        base = model(noisy, context, mask, steps, tokens)
        other_context = model(noisy, context + 1.0, mask, steps, tokens)
        other_mask = model(noisy, context, torch.zeros_like(mask), steps, tokens)
    assert not torch.allclose(base, other_context) and not torch.allclose(base, other_mask)


def test_save_and_load_round_trip_with_safetensors(tmp_path: Path) -> None:
    model = _tiny()
    model.save_pretrained(tmp_path)
    assert (tmp_path / "diffusion_pytorch_model.safetensors").is_file()
    loaded = DefectDenoiser.from_pretrained(tmp_path).eval()
    noisy, context, mask, steps = _inputs()
    with torch.no_grad():
        expected = model(noisy, context, mask, steps, model.token(torch.tensor([0, 2])))
        actual = loaded(noisy, context, mask, steps, loaded.token(torch.tensor([0, 2])))
    assert torch.equal(expected, actual)
    assert loaded.config.num_defect_types == 2


def test_bad_configuration_is_explained() -> None:
    with pytest.raises(InvalidInputError, match="divisible"):
        DefectDenoiser(2, patch_size=18, block_out_channels=(8, 16, 16))
    with pytest.raises(InvalidInputError, match="defect type"):
        DefectDenoiser(0)

"""StableDiffusionInpaintGenerator on a tiny, randomly initialised inpainting pipeline saved to disk (offline)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch
from diffusers import AutoencoderKL, DDIMScheduler, StableDiffusionInpaintPipeline, UNet2DConditionModel
from transformers import CLIPTextConfig, CLIPTextModel, CLIPTokenizer

from anomaly_synth_aug.data.sample import AnomalySample
from anomaly_synth_aug.errors import InvalidInputError, NotFittedError
from anomaly_synth_aug.generators.base import AnomalyGenerator
from anomaly_synth_aug.generators.diffusion.pretrained import (
    NORMAL_TOKEN,
    StableDiffusionInpaintGenerator,
    defect_token,
)

RESOLUTION = 32
IMAGE_SIZE = (40, 56)


def _byte_symbols() -> list[str]:
    """The 256 printable stand-ins byte-level BPE uses for raw bytes (GPT-2/CLIP ``bytes_to_unicode``)."""
    printable = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]
    extra = [b for b in range(256) if b not in printable]
    return [chr(b) for b in printable] + [chr(256 + i) for i in range(len(extra))]


def _write_tiny_tokenizer(directory: Path) -> CLIPTokenizer:
    """A CLIP BPE tokenizer over single bytes plus two merges, written as vocab.json + merges.txt."""
    directory.mkdir(parents=True)
    symbols = _byte_symbols()
    vocab = ["<|startoftext|>", "<|endoftext|>", *symbols, *(s + "</w>" for s in symbols), "of</w>", "ph"]
    (directory / "vocab.json").write_text(json.dumps({token: i for i, token in enumerate(vocab)}))
    (directory / "merges.txt").write_text("#version: 0.2\no f</w>\np h\n")
    return CLIPTokenizer.from_pretrained(directory, model_max_length=16)


def _tiny_inpaint_pipeline(directory: Path) -> Path:
    torch.manual_seed(0)
    tokenizer = _write_tiny_tokenizer(directory.parent / "tokenizer_files")
    unet = UNet2DConditionModel(
        sample_size=RESOLUTION // 2,
        in_channels=9,
        out_channels=4,
        block_out_channels=(16, 32),
        layers_per_block=1,
        norm_num_groups=8,
        attention_head_dim=4,
        cross_attention_dim=32,
        down_block_types=("DownBlock2D", "CrossAttnDownBlock2D"),
        up_block_types=("CrossAttnUpBlock2D", "UpBlock2D"),
    )
    vae = AutoencoderKL(
        in_channels=3,
        out_channels=3,
        latent_channels=4,
        block_out_channels=(16, 32),
        norm_num_groups=8,
        down_block_types=("DownEncoderBlock2D",) * 2,
        up_block_types=("UpDecoderBlock2D",) * 2,
        sample_size=RESOLUTION,
    )
    text_encoder = CLIPTextModel(
        CLIPTextConfig(
            vocab_size=len(tokenizer),
            hidden_size=32,
            intermediate_size=37,
            num_attention_heads=4,
            num_hidden_layers=2,
            max_position_embeddings=16,
            projection_dim=32,
            bos_token_id=0,
            eos_token_id=1,
            pad_token_id=1,
        )
    )
    pipe = StableDiffusionInpaintPipeline(
        vae=vae,
        text_encoder=text_encoder,
        tokenizer=tokenizer,
        unet=unet,
        scheduler=DDIMScheduler(steps_offset=1),
        safety_checker=None,
        feature_extractor=None,
        image_encoder=None,
        requires_safety_checker=False,
    )
    pipe.save_pretrained(directory)
    return directory


@pytest.fixture(scope="module", autouse=True)
def single_thread() -> Iterator[None]:
    """Tiny models gain nothing from intra-op threads, and on a busy shared CPU a second thread stalls them."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="module")
def tiny_sd_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _tiny_inpaint_pipeline(tmp_path_factory.mktemp("sd") / "tiny-sd-inpaint")


def _shots() -> list[AnomalySample]:
    generator = torch.Generator().manual_seed(1)
    shots = []
    for index, defect in enumerate(["blob", "blob", "scratch"]):
        image = 0.5 + 0.1 * torch.rand(1, *IMAGE_SIZE, generator=generator)
        mask = torch.zeros(IMAGE_SIZE, dtype=torch.bool)
        if defect == "blob":
            mask[10 + index * 5 : 18 + index * 5, 12:20] = True
        else:
            mask[20:23, 8:40] = True
        image[:, mask] *= 0.3
        shots.append(AnomalySample(image=image, mask=mask, defect_type=defect))
    return shots


def _normals(count: int = 3) -> list[torch.Tensor]:
    generator = torch.Generator().manual_seed(2)
    return [0.5 + 0.1 * torch.rand(3, *IMAGE_SIZE, generator=generator) for _ in range(count)]


def _generator(local_dir: Path, **overrides: object) -> StableDiffusionInpaintGenerator:
    settings = dict(
        local_dir=local_dir,
        resolution=RESOLUTION,
        device="cpu",
        max_steps=3,
        batch_size=2,
        token_learning_rate=0.05,
        lora_learning_rate=0.01,
        lora_rank=2,
        min_crop_size=16,
        num_inference_steps=2,
        guidance_scale=2.0,
        progress=False,
    )
    return StableDiffusionInpaintGenerator(**(settings | overrides))


@pytest.fixture(scope="module")
def fitted(tiny_sd_dir: Path) -> StableDiffusionInpaintGenerator:
    generator = _generator(tiny_sd_dir)
    return generator.fit(_normals(), _shots(), generator=torch.Generator().manual_seed(0))


def _placement() -> torch.Tensor:
    mask = torch.zeros(IMAGE_SIZE, dtype=torch.bool)
    mask[14:24, 20:34] = True
    return mask


def _seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def test_missing_local_dir_names_the_folder_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-weights"
    with pytest.raises(InvalidInputError, match="never downloads") as info:
        _generator(missing)
    assert str(missing) in str(info.value)
    assert "local_dir" in str(info.value)


def test_incomplete_local_dir_names_the_missing_component(tmp_path: Path, tiny_sd_dir: Path) -> None:
    partial = tmp_path / "partial"
    partial.mkdir()
    (partial / "model_index.json").write_text((tiny_sd_dir / "model_index.json").read_text())
    with pytest.raises(InvalidInputError, match="unet"):
        _generator(partial)


def test_text_to_image_checkpoint_is_rejected(tmp_path: Path, tiny_sd_dir: Path) -> None:
    text_to_image = tmp_path / "sd-txt2img"
    shutil.copytree(tiny_sd_dir, text_to_image)
    unet = UNet2DConditionModel.from_pretrained(tiny_sd_dir / "unet")
    UNet2DConditionModel.from_config({**unet.config, "in_channels": 4}).save_pretrained(text_to_image / "unet")
    with pytest.raises(InvalidInputError, match="not an inpainting one"):
        _generator(text_to_image).fit(_normals(), _shots())


def test_bad_dtype_fails_at_construction(tiny_sd_dir: Path) -> None:
    with pytest.raises(InvalidInputError, match="dtype"):
        _generator(tiny_sd_dir, dtype="float8")


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks a machine without CUDA")
def test_a_cuda_device_on_a_machine_without_one_is_refused_at_construction(tiny_sd_dir: Path) -> None:
    """Accepted, it failed at the first fit with a raw "Found no NVIDIA driver"."""
    with pytest.raises(InvalidInputError, match="no usable CUDA device.*device='cpu'"):
        _generator(tiny_sd_dir, device="cuda")
    with pytest.raises(InvalidInputError, match="unknown device 'gpu0'"):
        _generator(tiny_sd_dir, device="gpu0")


def test_unfitted_generator_round_trips_as_unfitted(tiny_sd_dir: Path, tmp_path: Path) -> None:
    _generator(tiny_sd_dir).save(tmp_path / "unfitted")
    loaded = AnomalyGenerator.load(tmp_path / "unfitted")
    assert not loaded.is_fitted
    with pytest.raises(NotFittedError):
        loaded.generate(_normals(1)[0])


def test_fit_trains_only_new_tokens_and_lora(fitted: StableDiffusionInpaintGenerator, tiny_sd_dir: Path) -> None:
    base = StableDiffusionInpaintPipeline.from_pretrained(tiny_sd_dir, local_files_only=True)
    pipe = fitted.pipeline
    assert fitted.defect_types == ["blob", "scratch"]
    assert len(fitted.fit_losses) == 3 and all(torch.isfinite(torch.tensor(fitted.fit_losses)))

    table = pipe.text_encoder.get_input_embeddings().weight
    base_table = base.text_encoder.get_input_embeddings().weight
    assert torch.equal(table[: len(base_table)], base_table)  # every pre-existing token row is untouched
    initializers = {defect_token("blob"): "blob", defect_token("scratch"): "scratch", NORMAL_TOKEN: "surface"}
    for token, words in initializers.items():
        start = base_table[base.tokenizer(words, add_special_tokens=False).input_ids].mean(0)
        learned = table[pipe.tokenizer.convert_tokens_to_ids(token)]
        assert not torch.allclose(learned, start), f"{token} did not train"

    lora = {name: p for name, p in pipe.unet.named_parameters() if "lora_B" in name}
    assert lora and any(bool(p.abs().sum() > 0) for p in lora.values())  # lora_B starts at zero
    base_unet = dict(base.unet.named_parameters())
    for name, param in pipe.unet.named_parameters():
        if "lora_" not in name:
            assert torch.equal(param, base_unet[name.replace(".base_layer", "")]), name
    for (name, param), base_param in zip(pipe.vae.named_parameters(), base.vae.parameters(), strict=True):
        assert torch.equal(param, base_param), name


def test_generate_changes_only_inside_the_mask(fitted: StableDiffusionInpaintGenerator) -> None:
    images = torch.stack(_normals(2))
    masks = torch.stack([_placement(), _placement().roll(10, dims=1)])
    batch = fitted.generate(images, masks=masks, defect_types=["blob", "scratch"], generator=_seeded(3))

    assert len(batch) == 2 and batch.defect_types == ["blob", "scratch"]
    for out, mask, source in zip(batch.images, batch.masks, images, strict=True):
        assert out.shape == source.shape and out.dtype == torch.float32
        assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
        assert torch.equal(out[:, ~mask], source[:, ~mask])  # background is bit-exact
        assert bool((out != source).any(0)[mask].any())


def test_batch_equals_per_image_calls(
    fitted: StableDiffusionInpaintGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    images = _normals(2)
    batch = fitted.generate(images, generator=_seeded(10))
    alone = fitted.generate(images[:1], generator=_seeded(10))
    assert batch.defect_types[0] == alone.defect_types[0]
    assert torch.equal(batch.masks[0], alone.masks[0])
    torch.testing.assert_close(batch.images[0], alone.images[0], rtol=0, atol=1e-5)
    monkeypatch.setattr(fitted, "generation_batch_size", 1)  # one pipeline call per image
    for chunked, whole in zip(fitted.generate(images, generator=_seeded(10)).images, batch.images, strict=True):
        torch.testing.assert_close(chunked, whole, rtol=0, atol=1e-5)


def test_generate_is_seeded(fitted: StableDiffusionInpaintGenerator) -> None:
    image = _normals(1)[0]
    first = fitted.generate(image, masks=[_placement()], generator=_seeded(4))
    again = fitted.generate(image, masks=[_placement()], generator=_seeded(4))
    other = fitted.generate(image, masks=[_placement()], generator=_seeded(5))
    assert torch.equal(first.images[0], again.images[0])
    assert first.defect_types == again.defect_types
    assert not torch.equal(first.images[0], other.images[0])


def test_generate_without_mask_places_a_shot_shape(fitted: StableDiffusionInpaintGenerator) -> None:
    image = _normals(1)[0]
    batch = fitted.generate([image], defect_types=["scratch"], generator=_seeded(6))
    mask = batch.masks[0]
    assert mask.shape == IMAGE_SIZE and bool(mask.any())
    assert torch.equal(batch.images[0][:, ~mask], image[:, ~mask])
    again = fitted.generate([image], defect_types=["scratch"], generator=_seeded(6))
    assert torch.equal(again.masks[0], mask) and torch.equal(again.images[0], batch.images[0])


def test_save_load_round_trip_reproduces_output(
    fitted: StableDiffusionInpaintGenerator, tmp_path: Path
) -> None:
    fitted.save(tmp_path / "gen")
    saved = {path.name for path in (tmp_path / "gen").iterdir()}
    assert {"generator.json", "learned_embeds.safetensors", "pytorch_lora_weights.safetensors"} <= saved
    assert sum(path.stat().st_size for path in (tmp_path / "gen").iterdir()) < 200_000  # no base weights copied

    loaded = AnomalyGenerator.load(tmp_path / "gen")
    assert isinstance(loaded, StableDiffusionInpaintGenerator)
    assert loaded.defect_types == fitted.defect_types
    assert loaded.fingerprint() == fitted.fingerprint()
    image = _normals(1)[0]
    expected = fitted.generate(image, masks=[_placement()], defect_types=["blob"], generator=_seeded(7))
    actual = loaded.generate(image, masks=[_placement()], defect_types=["blob"], generator=_seeded(7))
    torch.testing.assert_close(actual.images[0], expected.images[0], rtol=0, atol=1e-5)
    placed = loaded.generate(image, defect_types=["blob"], generator=_seeded(8)).masks[0]
    assert torch.equal(placed, fitted.generate(image, defect_types=["blob"], generator=_seeded(8)).masks[0])


def test_sampling_options_change_on_load_without_refitting(
    fitted: StableDiffusionInpaintGenerator, tmp_path: Path
) -> None:
    """Every option was refused on load as one that "shapes what fit() learned": a fit saved with device='cuda'
    could not be loaded on a CPU machine, nor sampled with more steps."""
    folder = fitted.save(tmp_path / "gen")
    loaded = AnomalyGenerator.load(folder, device="cpu", num_inference_steps=3, guidance_scale=1.0)
    assert loaded.num_inference_steps == 3 and loaded.guidance_scale == 1.0 and loaded.device == "cpu"
    with pytest.raises(InvalidInputError, match="cannot change \\['lora_rank'\\] on load"):
        AnomalyGenerator.load(folder, lora_rank=2)


def test_fit_without_optional_loss_terms(tiny_sd_dir: Path) -> None:
    generator = _generator(
        tiny_sd_dir, max_steps=1, background_disentangle=False, normal_weight=0.0, adaptive_weighting=0.0
    )
    generator.fit([], _shots()[:1], generator=_seeded(9))
    assert generator.defect_types == ["blob"] and len(generator.fit_losses) == 1

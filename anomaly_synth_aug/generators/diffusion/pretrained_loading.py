"""Local Stable Diffusion inpainting weights in, learned tokens + LoRA out.

Only the learned parts ever leave the process: the new token embeddings
(textual inversion) and the UNet LoRA weights, both as safetensors in the
formats diffusers itself reads (``load_textual_inversion``/``load_lora_weights``),
so a fitted generator folder stays a few megabytes and always re-reads
the base weights from the user's local directory; nothing is ever downloaded.
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
from diffusers import StableDiffusionInpaintPipeline
from diffusers.training_utils import _collate_lora_metadata
from diffusers.utils import convert_state_dict_to_diffusers
from peft import LoraConfig
from peft.utils import get_peft_model_state_dict
from safetensors import safe_open
from safetensors.torch import load_file, save_file

from anomaly_synth_aug.errors import CheckpointMismatchError, InvalidInputError

INPAINT_UNET_CHANNELS = 9  # noisy latents (4) + mask (1) + masked-image latents (4)
LORA_TARGET_MODULES = ["to_q", "to_k", "to_v", "to_out.0"]
EMBEDDINGS_FILE = "learned_embeds.safetensors"
LORA_FILE = "pytorch_lora_weights.safetensors"  # diffusers' default LoRA file name
_TOKENS_METADATA_KEY = "tokens"
_DTYPES = {"float32": torch.float32, "float16": torch.float16, "bfloat16": torch.bfloat16}
_MISSING_WEIGHTS_FIX = (
    "download an inpainting checkpoint once on a machine with internet, e.g. "
    "`huggingface-cli download stable-diffusion-v1-5/stable-diffusion-inpainting --local-dir DIR` "
    "(or `StableDiffusionInpaintPipeline.from_pretrained(...).save_pretrained(DIR)`), then pass local_dir=DIR"
)


def resolve_device(device: str | None) -> torch.device:
    """The requested device, or CUDA when available and CPU otherwise."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(device)
    except RuntimeError as exc:
        raise InvalidInputError(f"unknown device {device!r}", fix="use e.g. 'cuda', 'cuda:1', 'cpu' or None") from exc
    if resolved.type == "cuda" and not torch.cuda.is_available():  # else a raw "no NVIDIA driver" at the first fit
        raise InvalidInputError(
            f"device {device!r} was asked for, but this machine has no usable CUDA device",
            fix="pass device='cpu' or None (automatic); a saved generator loads with device='cpu' as an override",
        )
    return resolved


def resolve_dtype(dtype: str | None, device: torch.device) -> torch.dtype:
    """The requested dtype, or fp16 on CUDA (SD's usual inference precision) and fp32 elsewhere."""
    if dtype is None:
        return torch.float16 if device.type == "cuda" else torch.float32
    if dtype not in _DTYPES:
        raise InvalidInputError(f"unknown dtype {dtype!r}", fix=f"use one of {sorted(_DTYPES)} or None (automatic)")
    return _DTYPES[dtype]


def check_local_model_dir(local_dir: str | Path) -> Path:
    """Fail early, naming the folder and the fix, when ``local_dir`` is not a complete diffusers pipeline folder."""
    path = Path(local_dir).expanduser()
    if not path.is_dir():
        raise InvalidInputError(
            "Stable Diffusion weights folder not found (this generator never downloads weights)",
            path=path,
            fix=_MISSING_WEIGHTS_FIX,
        )
    index_file = path / "model_index.json"
    if not index_file.is_file():
        raise InvalidInputError(
            "not a diffusers pipeline folder: model_index.json is missing", path=path, fix=_MISSING_WEIGHTS_FIX
        )
    try:
        index = json.loads(index_file.read_text())
    except json.JSONDecodeError as exc:
        raise InvalidInputError(
            f"unreadable model_index.json ({exc})", path=index_file, fix=_MISSING_WEIGHTS_FIX
        ) from exc
    required = ("unet", "vae", "text_encoder", "tokenizer", "scheduler")
    missing = [name for name in required if not (path / name).is_dir() or index.get(name, [None])[0] is None]
    if missing:
        raise InvalidInputError(
            f"incomplete pipeline folder: missing component(s) {missing}", path=path, fix=_MISSING_WEIGHTS_FIX
        )
    return path


def load_inpaint_pipeline(
    local_dir: str | Path, device: torch.device, dtype: torch.dtype
) -> StableDiffusionInpaintPipeline:
    """Load the base inpainting pipeline from a local folder only (``local_files_only``: no network)."""
    path = check_local_model_dir(local_dir)
    try:
        pipe = StableDiffusionInpaintPipeline.from_pretrained(
            path,
            local_files_only=True,
            dtype=dtype,
            safety_checker=None,
            feature_extractor=None,
            requires_safety_checker=False,
        )
    except (OSError, ValueError) as exc:
        raise InvalidInputError(
            f"could not load the Stable Diffusion pipeline ({exc})", path=path, fix=_MISSING_WEIGHTS_FIX
        ) from exc
    if pipe.unet.config.in_channels != INPAINT_UNET_CHANNELS:
        raise InvalidInputError(
            f"the UNet takes {pipe.unet.config.in_channels} input channels, not {INPAINT_UNET_CHANNELS}: "
            "this is a text-to-image checkpoint, not an inpainting one",
            path=path,
            fix="point local_dir at an inpainting checkpoint (e.g. stable-diffusion-inpainting)",
        )
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device)


def word_embedding(pipe: StableDiffusionInpaintPipeline, words: str) -> torch.Tensor:
    """Mean input embedding of ``words``: the textual-inversion starting point for a new token."""
    ids = pipe.tokenizer(words, add_special_tokens=False).input_ids
    if not ids:
        raise InvalidInputError(f"initializer words {words!r} tokenise to nothing", fix="use a plain English word")
    table = pipe.text_encoder.get_input_embeddings().weight
    return table[torch.tensor(ids, device=table.device)].float().mean(0).detach().cpu()


def add_tokens(pipe: StableDiffusionInpaintPipeline, embeddings: dict[str, torch.Tensor]) -> list[int]:
    """Add new tokens with their embeddings to tokenizer + text encoder (diffusers' textual-inversion loader)."""
    tokens = list(embeddings)
    pipe.load_textual_inversion([{token: embeddings[token]} for token in tokens], token=tokens)
    return pipe.tokenizer.convert_tokens_to_ids(tokens)


def token_embeddings(pipe: StableDiffusionInpaintPipeline, tokens: list[str]) -> dict[str, torch.Tensor]:
    """Current (learned) embedding of each token, float32 on CPU."""
    table = pipe.text_encoder.get_input_embeddings().weight.detach()
    ids = pipe.tokenizer.convert_tokens_to_ids(tokens)
    return {token: table[index].float().cpu().clone() for token, index in zip(tokens, ids, strict=True)}


def attach_unet_lora(pipe: StableDiffusionInpaintPipeline, rank: int) -> None:
    """LoRA on the UNet attention projections (diffusers' ``unet.add_adapter`` idiom; B starts at zero)."""
    config = LoraConfig(
        r=rank, lora_alpha=rank, init_lora_weights="gaussian", target_modules=LORA_TARGET_MODULES
    )
    pipe.unet.add_adapter(config)


def unet_lora_state(pipe: StableDiffusionInpaintPipeline) -> dict[str, torch.Tensor]:
    """LoRA weights in diffusers' key format (what ``save_lora_weights`` writes)."""
    return convert_state_dict_to_diffusers(get_peft_model_state_dict(pipe.unet))


def save_learned_parts(pipe: StableDiffusionInpaintPipeline, tokens: dict[str, str], directory: Path) -> None:
    """Write the token embeddings and the UNet LoRA; ``tokens`` maps a name (defect type) to its token."""
    embeddings = token_embeddings(pipe, list(tokens.values()))
    save_file(embeddings, directory / EMBEDDINGS_FILE, metadata={_TOKENS_METADATA_KEY: json.dumps(tokens)})
    StableDiffusionInpaintPipeline.save_lora_weights(
        directory,
        unet_lora_layers=unet_lora_state(pipe),
        weight_name=LORA_FILE,
        **_collate_lora_metadata({"unet": pipe.unet}),
    )


def load_learned_parts(pipe: StableDiffusionInpaintPipeline, directory: Path) -> dict[str, str]:
    """Re-attach what ``save_learned_parts`` wrote to a fresh base pipeline; returns the name -> token map."""
    embeddings_path, lora_path = directory / EMBEDDINGS_FILE, directory / LORA_FILE
    for path in (embeddings_path, lora_path):
        if not path.is_file():
            raise CheckpointMismatchError(
                f"{path}: learned weights missing; re-save the generator after fit() (folder written by save())"
            )
    embeddings = load_file(embeddings_path)
    with safe_open(embeddings_path, framework="pt") as handle:
        tokens: dict[str, str] = json.loads(handle.metadata()[_TOKENS_METADATA_KEY])
    width = pipe.text_encoder.get_input_embeddings().weight.shape[-1]
    if any(emb.shape[-1] != width for emb in embeddings.values()):
        raise CheckpointMismatchError(
            f"{embeddings_path}: token embeddings do not match the text encoder width {width}; "
            "load with the same base model folder that was used for fit()"
        )
    add_tokens(pipe, {token: embeddings[token] for token in tokens.values()})
    pipe.unet.load_lora_adapter(
        directory, prefix="unet", weight_name=LORA_FILE, adapter_name="default", local_files_only=True
    )
    return tokens

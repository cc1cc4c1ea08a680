"""Persist lists of differently sized tensors (image pools, defect crops) in one safetensors file.

Classic generators that keep data from ``fit`` (the Poisson source pool, the
real defect shots) store it as named lists — ``images.0``, ``images.1``, ... —
plus string metadata, so a saved generator works without the dataset.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from anomaly_synth_aug.errors import CorruptFileError, InvalidInputError


def save_tensor_lists(path: Path, lists: dict[str, list[torch.Tensor]], metadata: dict[str, str]) -> None:
    """Write each list as ``<name>.<index>`` tensors, with ``metadata`` and the list lengths."""
    tensors = {
        f"{name}.{index}": tensor.detach().cpu().contiguous()
        for name, items in lists.items()
        for index, tensor in enumerate(items)
    }
    counts = {name: len(items) for name, items in lists.items()}
    save_file(tensors, str(path), metadata={**metadata, "counts": json.dumps(counts)})


def load_tensor_lists(path: Path) -> tuple[dict[str, list[torch.Tensor]], dict[str, str]]:
    """Read what ``save_tensor_lists`` wrote: the lists (in order) and the metadata."""
    if not path.is_file():
        raise InvalidInputError(
            "generator state file not found", path=path, fix="load a folder written by the generator's save()"
        )
    try:
        with safe_open(str(path), framework="pt") as handle:
            metadata = dict(handle.metadata() or {})
            counts: dict[str, int] = json.loads(metadata.pop("counts"))
            lists = {name: [handle.get_tensor(f"{name}.{i}") for i in range(count)] for name, count in counts.items()}
    except (SafetensorError, KeyError, json.JSONDecodeError) as exc:
        raise CorruptFileError(
            f"unreadable generator state ({exc})", path=path, fix="re-save the generator"
        ) from exc
    return lists, metadata


def digest_tensor_lists(lists: dict[str, list[torch.Tensor]], metadata: dict[str, str]) -> str:
    """sha256 of the lists' bytes, shapes and dtypes plus the metadata (the learned-state fingerprint)."""
    digest = hashlib.sha256(json.dumps(metadata, sort_keys=True).encode())
    for name in sorted(lists):
        for tensor in lists[name]:
            tensor = tensor.detach().cpu().contiguous()
            digest.update(f"{name}{tuple(tensor.shape)}{tensor.dtype}".encode())
            digest.update(tensor.flatten().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()

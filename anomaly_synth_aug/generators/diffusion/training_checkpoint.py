"""``TrainingCheckpoint``: the resumable state of a denoiser fit, so an interrupted fit continues where it stopped.

``train_denoiser`` saves it every few minutes, on Ctrl-C and at the end; a new ``fit`` with the same
``checkpoint_dir`` resumes from it, and refuses a checkpoint that belongs to another category or
model configuration.

Example:
    >>> checkpoint = TrainingCheckpoint(Path("runs/tile-fit"), identity={"category": "tile"})
    >>> state = checkpoint.load() if checkpoint.exists() else None
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from anomaly_synth_aug.data.sample import AnomalySample
from anomaly_synth_aug.errors import CheckpointMismatchError

TRAINING_STATE_FILE = "training_state.pt"
TRAINING_IDENTITY_FILE = "training_identity.json"

#: Identity entries that checkpoints written before them lack; such a checkpoint still resumes.
_RECORDED_LATER = frozenset({"training_data", "training"})
#: Identity entries left out while they hold their neutral value (so that older checkpoints resume):
#: one missing from this fit's identity but set in the checkpoint is a difference all the same.
_ABSENT_MEANS: dict[str, Any] = {"window_scale": None}


def training_data_digest(normal_images: Sequence[torch.Tensor], shots: Sequence[AnomalySample]) -> str:
    """A digest of what the denoiser learns from (pixels, masks, types), so a checkpoint of other data is refused."""
    digest = hashlib.sha256()
    for tensor in [*normal_images, *(t for shot in shots for t in (shot.image, shot.mask))]:
        digest.update(str((tuple(tensor.shape), str(tensor.dtype))).encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    digest.update(json.dumps([shot.defect_type for shot in shots]).encode())
    return digest.hexdigest()[:16]


class TrainingCheckpoint:
    """The resumable state in ``checkpoint_dir``: weights, EMA, optimiser, RNG, counters, and whom they belong to.

    ``identity`` (category, defect types, patch size, model config, a digest of the training data)
    is written beside the state; resuming with a different identity raises ``CheckpointMismatchError``
    instead of silently continuing (or, when it had finished, returning) someone else's training.
    """

    def __init__(self, directory: Path, identity: dict[str, Any]) -> None:
        self.directory = Path(directory)
        self.identity = json.loads(json.dumps(identity))  # normalise tuples -> lists for comparison

    @property
    def state_path(self) -> Path:
        return self.directory / TRAINING_STATE_FILE

    def exists(self) -> bool:
        return self.state_path.is_file()

    def check_identity(self) -> None:
        identity_path = self.directory / TRAINING_IDENTITY_FILE
        if not identity_path.is_file():
            return
        saved = json.loads(identity_path.read_text())
        different = {
            k: (saved.get(k), v)
            for k, v in self.identity.items()
            if saved.get(k) != v and not (k in _RECORDED_LATER and k not in saved)
        }
        different |= {
            k: (saved[k], neutral)
            for k, neutral in _ABSENT_MEANS.items()
            if k in saved and k not in self.identity and saved[k] != neutral
        }
        if different:
            details = "; ".join(f"{k}: checkpoint has {a!r}, this fit has {b!r}" for k, (a, b) in different.items())
            raise CheckpointMismatchError(
                f"{self.directory}: training checkpoint belongs to another setup ({details}). "
                "Fix: point checkpoint_dir to a fresh folder for this category/config, or delete the old checkpoint."
            )

    def save(self, state: dict[str, Any]) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / TRAINING_IDENTITY_FILE).write_text(json.dumps(self.identity, indent=2, sort_keys=True))
        tmp = self.state_path.with_suffix(".tmp")
        torch.save(state, tmp)
        tmp.replace(self.state_path)  # atomic: an interrupt never leaves a half-written checkpoint

    def load(self) -> dict[str, Any]:
        self.check_identity()
        return torch.load(self.state_path, map_location="cpu", weights_only=True)


__all__ = ["TRAINING_IDENTITY_FILE", "TRAINING_STATE_FILE", "TrainingCheckpoint", "training_data_digest"]

"""``NormalMemoryStore``: a segmenter's normal memory, built once per set of training normals and seed.

``DefectSegmenter`` builds its normal memory (``NormalPatchMemory``) from every training normal
before its first step, and the greedy coreset search over a category's patches is a large part of a
benchmark row on 2 cores. The memory depends only on the normal images, the frozen encoder, the
segmenter's settings and the seed (its random draws come from its own seeded generator, so building
it leaves the global RNG untouched), and every source of defects of one dataset and seed trains on
the same normals. So the store keeps each built memory in a safetensors file named by a fingerprint
of all of that, and a later run with the same fingerprint loads it instead of building it: the run
then draws exactly the numbers it would have drawn after building it. ``FitStore`` does the same for
the generators.

Example:
    >>> engine = Engine(callbacks=[NormalMemoryStore("runs/benchmark/mvtec_screw/full/normal_memory")])
    >>> engine.fit(DefectSegmenter(), datamodule=datamodule)  # builds and stores, or loads
"""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import torch
from lightning.pytorch import Callback, LightningModule, Trainer
from safetensors import SafetensorError
from safetensors.torch import load_file, save

from anomaly_synth_aug.cache.atomic import atomic_write_bytes
from anomaly_synth_aug.models import normal_memory, patchcore, segmenter_network
from anomaly_synth_aug.models.normal_memory import NormalPatchMemory
from anomaly_synth_aug.utils.fingerprint import config_fingerprint, files_fingerprint

logger = logging.getLogger(__name__)

#: Raise when what a stored memory holds, or how it is built, changes in a way the fingerprint's constants
#: below do not show: older files are then ignored.
STORE_FORMAT = 1
#: The segmenter's settings the memory depends on (the encoder's weights are hashed as well).
MEMORY_HPARAMS = ("encoder", "pretrained", "normal_memory", "memory_source", "memory_images", "memory_size")


def _memory(pl_module: LightningModule) -> NormalPatchMemory | None:
    memory = getattr(getattr(pl_module, "model", None), "memory", None)
    return memory if isinstance(memory, NormalPatchMemory) else None


class NormalMemoryStore(Callback):
    """Loads a stored normal memory before the segmenter would build it; stores the one it built.

    Only memories built from whole training normals (``memory_source="normals"`` with a datamodule
    that offers ``normal_dataloader()``) are stored: a memory of training crops depends on the crops
    drawn, and is built every time.

    Args:
        folder: where the memories are kept, one ``<fingerprint>.safetensors`` file each.
    """

    def __init__(self, folder: str | Path) -> None:
        self.folder = Path(folder)
        self._path: Path | None = None
        self.loaded = False  # whether this run's memory came from the store

    def fingerprint(self, trainer: Trainer, pl_module: LightningModule) -> str | None:
        """A digest of everything the memory depends on; None when it is not built from whole normals."""
        memory = _memory(pl_module)
        offer = getattr(getattr(trainer, "datamodule", None), "normal_dataloader", None)
        if memory is None or getattr(pl_module, "memory_source", None) != "normals" or not callable(offer):
            return None
        paths = list(offer().dataset.samples.image_path)
        digest = hashlib.sha256()  # the weights the memory reads, before any step: the encoder and its frozen copies
        for part in (pl_module.model.network.encoder, getattr(pl_module.model, "_memory_stages", None)):
            for name, tensor in sorted(part.state_dict().items()) if part is not None else ():
                digest.update(name.encode())
                digest.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
        transform = pl_module.pre_processor.transform if getattr(pl_module, "pre_processor", None) else None
        described = {
            "format": STORE_FORMAT,
            "normals": files_fingerprint(paths, ordered=True),  # names and contents, in the order collected
            "hparams": {name: pl_module.hparams.get(name) for name in MEMORY_HPARAMS},
            "seed": memory.seed if memory.seed is not None else torch.initial_seed(),
            "max_patches": memory.max_patches,
            "pool_size": memory.pooler.kernel_size,
            "constants": [
                patchcore.PROJECTION_DIM,
                normal_memory.SCALE_SAMPLE,
                segmenter_network.SIZE_MULTIPLE,
                segmenter_network.MEMORY_FEATURES,
            ],
            "pre_processing": repr(transform),
            "encoder": digest.hexdigest(),
        }
        return config_fingerprint(described)[:20]

    def on_train_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        memory = _memory(pl_module)
        self._path, self.loaded = None, False
        if memory is None or memory.is_built:
            return
        key = self.fingerprint(trainer, pl_module)
        if key is None:
            return
        self._path = self.folder / f"{key}.safetensors"
        if not self._path.exists():
            return
        try:
            tensors = load_file(self._path)
        except (OSError, SafetensorError) as exc:  # a damaged file: build the memory again, and store it anew
            logger.warning("Normal memory %s is unreadable (%s); building it again.", self._path, exc)
            self._path.unlink(missing_ok=True)
            return
        device = pl_module.device
        memory.memory_bank = tensors["memory_bank"].to(device)
        memory.scale = tensors["scale"].to(device)
        self.loaded = True
        logger.info("Normal memory loaded from %s (%d patches).", self._path, len(memory.memory_bank))

    def on_train_epoch_start(self, trainer: Trainer, pl_module: LightningModule) -> None:
        memory = _memory(pl_module)
        if self._path is None or self._path.exists() or memory is None or not memory.is_built:
            return
        if not trainer.is_global_zero:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        data = save({"memory_bank": memory.memory_bank.cpu(), "scale": memory.scale.cpu()})
        atomic_write_bytes(self._path, data)  # never a half-written memory under the final name
        logger.info("Normal memory stored in %s.", self._path)


__all__ = ["STORE_FORMAT", "NormalMemoryStore"]

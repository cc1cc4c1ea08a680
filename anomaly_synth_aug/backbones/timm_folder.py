"""Pretrained backbones for anomalib and timm by *name*, offline: a timm ``local-dir:`` model folder.

anomalib's ``Padim``, ``Patchcore`` and ``Supersimplenet`` build their ``TimmFeatureExtractor`` from a
timm name and ``pre_trained=True``, which would download. timm also reads a model from a local
folder (``config.json`` plus ``model.safetensors``) when the name is ``local-dir:<folder>``. This
module writes such a folder once, with timm's own ``save_for_hf``, from the offline ImageNet weights
(``imagenet_weights.py``), and returns its name. The name is a plain string, so it fits anomalib's
hyperparameters, checkpoints, CLI and YAML unchanged.

Example:
    >>> from anomalib.models import Padim
    >>> from anomaly_synth_aug.backbones import offline_backbone
    >>> model = Padim(backbone=offline_backbone("efficientnet_lite0"), layers=["blocks.2", "blocks.4"],
    ...               pre_trained=True, n_features=100)

Layer names of ``efficientnet_lite0`` (stride, channels): ``blocks.1`` (4, 24), ``blocks.2`` (8, 40),
``blocks.4`` (16, 112), ``blocks.6`` (32, 320).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path

from anomaly_synth_aug.backbones.imagenet_weights import pretrained_timm_model, weight_source
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.utils.fingerprint import file_digest

logger = logging.getLogger(__name__)

#: Prefix of timm model names that load from a local folder.
LOCAL_DIR_PREFIX = "local-dir:"
#: Environment variable that moves the folder cache (default: ``$XDG_CACHE_HOME/anomaly_synth_aug``).
CACHE_ENV = "ANOMALY_SYNTH_AUG_CACHE"
#: Written beside timm's files: which package the weights came from.
PROVENANCE_FILE = "source.json"


def default_cache_dir() -> Path:
    """``$ANOMALY_SYNTH_AUG_CACHE``, else ``$XDG_CACHE_HOME/anomaly_synth_aug``, else ``~/.cache/anomaly_synth_aug``."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "anomaly_synth_aug"


def offline_backbone_dir(name: str = "efficientnet_lite0", cache_dir: str | Path | None = None) -> Path:
    """The timm model folder of ``name`` with ImageNet weights, written on first use.

    The folder name carries the source file's digest, so a reinstalled or upgraded weights
    package gets a new folder instead of a stale one.
    """
    source_file = weight_source(name).file()
    root = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder = (root / "timm" / f"{name}-{file_digest(source_file)[:16]}").resolve()
    if "vit" in str(folder).lower():
        # anomalib's TimmFeatureExtractor treats any name containing "vit" as a vision transformer
        raise InvalidInputError(
            "the backbone folder's path contains 'vit', which anomalib takes for a vision transformer",
            path=folder,
            fix=f"point {CACHE_ENV} (or cache_dir) at a folder whose path does not contain 'vit'",
        )
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    from timm.models import save_for_hf  # heavy: only on first use

    model = pretrained_timm_model(name)
    partial = folder.with_name(f"{folder.name}.partial-{os.getpid()}")  # one per writer
    save_for_hf(model, str(partial), safe_serialization=True)
    provenance = {"architecture": name, "package": weight_source(name).package, "file": source_file.name}
    (partial / PROVENANCE_FILE).write_text(json.dumps(provenance, indent=2) + "\n")  # timm ignores it
    try:
        partial.replace(folder)  # atomic: a reader never sees half a folder
    except OSError:  # another process finished first: keep its folder
        shutil.rmtree(partial, ignore_errors=True)
        logger.info("%s was written meanwhile; using it", folder)
    logger.info("wrote the offline %s backbone to %s", name, folder)
    return folder


def offline_backbone(name: str = "efficientnet_lite0", cache_dir: str | Path | None = None) -> str:
    """A timm model name (``local-dir:<folder>``) that loads ``name`` with ImageNet weights, offline.

    Pass it wherever anomalib or timm take a backbone name, with ``pre_trained=True``.
    """
    return f"{LOCAL_DIR_PREFIX}{offline_backbone_dir(name, cache_dir)}"

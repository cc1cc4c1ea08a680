"""Fine-tune a learned generator once per category, and reuse the result on every later run.

Fitting the diffusion generator is the slow step of a run, and its result depends only
on three things: the category, the data it learns from (training normals and shots)
and the generator's configuration. ``GeneratorFineTuneCallback`` fingerprints all three,
keeps one checkpoint folder per category (``checkpoint_dir/<category>/``) and, at fit
start, loads the matching checkpoint or fits and saves one. A checkpoint that belongs to
another category, configuration or data set is never used silently: by default it is an
error; with ``on_mismatch="retrain"`` it is replaced and the reason is logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import shutil
import tempfile
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import lightning.pytorch as pl
from lightning.pytorch.callbacks import Callback

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
from anomaly_synth_aug.errors import CheckpointMismatchError, InvalidInputError
from anomaly_synth_aug.generators.base import CONFIG_FILE, AnomalyGenerator, read_generator_meta, verify_state_files

logger = logging.getLogger(__name__)

CHECKPOINT_META_FILE = "finetune.json"
OnMismatch = Literal["error", "retrain"]
Action = Literal["loaded", "trained", "not_needed"]


@dataclass(frozen=True)
class CheckpointKey:
    """What a fitted generator depends on; a checkpoint is reused only when all of it matches."""

    category: str
    generator_class: str
    config_fingerprint: str
    data_fingerprint: str

    def mismatch(self, other: CheckpointKey) -> str | None:
        """A human-readable reason why ``other`` (a saved checkpoint) cannot stand in for ``self``, or None."""
        if other.category != self.category:
            return f"it was fitted on category {other.category!r}, this run is {self.category!r}"
        if other.generator_class != self.generator_class:
            return f"it holds a {other.generator_class}, this run uses a {self.generator_class}"
        if other.config_fingerprint != self.config_fingerprint:
            return "the generator configuration differs (constructor arguments changed)"
        if other.data_fingerprint != self.data_fingerprint:
            return "the training data differs (training normals, shots, seed or fit settings changed)"
        return None


def category_of(datamodule: SyntheticAnomalyDataModule) -> str:
    """The category name used for the checkpoint folder: the datamodule's category, else its name."""
    category = datamodule.category or datamodule.name
    if not category or Path(category).name != category or category.startswith("."):
        raise InvalidInputError(
            f"cannot use {category!r} as a checkpoint folder name",
            fix="give the wrapped datamodule a plain category or name (e.g. Folder(name='magnetic_tile'))",
        )
    return category


def config_fingerprint(generator: AnomalyGenerator) -> str:
    """Hash of the generator's class and the constructor config that shapes fitting (not of its learned state).

    ``sampling_options`` are left out: changing, say, the diffusion guidance scale reuses the
    fitted checkpoint instead of training again.
    """
    config = {k: v for k, v in generator.get_config().items() if k not in generator.sampling_options}
    payload = json.dumps({"class": type(generator).__name__, "config": config}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


def _update_with_file(digest: Any, path: Path) -> None:
    digest.update(path.name.encode())
    digest.update(hashlib.sha256(path.read_bytes()).digest())


def data_fingerprint(
    normal_paths: Iterable[Path], shots: Iterable[tuple[str, Path, Path | None]], settings: dict[str, Any]
) -> str:
    """Hash of the file *contents* (and names) of the training normals and the shots, plus fit settings.

    Contents rather than paths, so moving a dataset keeps its checkpoints valid and
    editing one mask invalidates them.
    """
    digest = hashlib.sha256()
    digest.update(json.dumps(settings, sort_keys=True).encode())
    for path in sorted(Path(p) for p in normal_paths):
        _update_with_file(digest, path)
    for defect_type, image_path, mask_path in sorted(shots, key=lambda s: (s[0], Path(s[1]).name)):
        digest.update(defect_type.encode())
        _update_with_file(digest, Path(image_path))
        if mask_path is not None:
            _update_with_file(digest, Path(mask_path))
    return digest.hexdigest()


def checkpoint_key(datamodule: SyntheticAnomalyDataModule) -> CheckpointKey:
    """The ``CheckpointKey`` of a datamodule's generator on its current data."""
    generator = datamodule.generator
    normal_paths = datamodule.train_normal_paths()  # first: sets the datamodule up, which makes the shots
    shots = [(r.defect_type, r.image_path, r.mask_path) for r in datamodule.shot_records]
    settings = {
        "seed": datamodule.seed,
        "max_fit_normals": datamodule.max_fit_normals,
        "mask_threshold": datamodule.mask_threshold,
    }
    return CheckpointKey(
        category=category_of(datamodule),
        generator_class=type(generator).__name__,
        config_fingerprint=config_fingerprint(generator),
        data_fingerprint=data_fingerprint(normal_paths, shots, settings),
    )


def read_checkpoint_key(directory: Path) -> CheckpointKey | None:
    """The key saved with a checkpoint folder, or None when the folder holds no complete checkpoint."""
    meta_path = directory / CHECKPOINT_META_FILE
    if not (meta_path.is_file() and (directory / CONFIG_FILE).is_file()):
        return None
    try:
        meta = json.loads(meta_path.read_text())
        return CheckpointKey(**{name: str(meta[name]) for name in CheckpointKey.__dataclass_fields__})
    except (json.JSONDecodeError, UnicodeDecodeError, KeyError, TypeError) as exc:
        raise CheckpointMismatchError(
            f"{meta_path}: unreadable fine-tuning metadata ({exc}). "
            "Fix: delete this folder so the generator is fitted again."
        ) from exc


def save_checkpoint(generator: AnomalyGenerator, key: CheckpointKey, directory: Path, **extra: Any) -> Path:
    """Save ``generator`` and its key into ``directory`` atomically.

    Everything is written into a temporary sibling folder that is then renamed into
    place, so an interrupted run never leaves a half-written checkpoint that a later
    run would load.
    """
    directory.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{directory.name}.tmp-", dir=directory.parent))
    try:
        generator.save(staging)
        (staging / CHECKPOINT_META_FILE).write_text(json.dumps({**asdict(key), **extra}, indent=2, sort_keys=True))
        if directory.exists():
            retired = Path(tempfile.mkdtemp(prefix=f".{directory.name}.old-", dir=directory.parent))
            directory.replace(retired / directory.name)
            staging.replace(directory)
            shutil.rmtree(retired, ignore_errors=True)
        else:
            staging.replace(directory)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return directory


def restore_into(generator: AnomalyGenerator, directory: Path) -> None:
    """Load a saved state into the *existing* generator object.

    In place (rather than ``AnomalyGenerator.load``, which builds a new object) because the
    datamodule's datasets already hold a reference to this generator.
    """
    verify_state_files(directory, read_generator_meta(directory))  # version and checksums, as load() checks
    generator._load_state(directory)  # noqa: SLF001 -- the in-place half of AnomalyGenerator.load
    generator._fitted = True  # noqa: SLF001


class GeneratorFineTuneCallback(Callback):
    """Load or fine-tune the category's generator at fit start, one checkpoint folder per category.

    Use with a ``SyntheticAnomalyDataModule``. For a multi-category run pass the same
    ``checkpoint_dir`` for every category: each gets ``checkpoint_dir/<category>/``, and a
    second run on the same data loads instead of training. Classic generators need no
    fitting and are left alone.

    Args:
        checkpoint_dir: parent folder of the per-category checkpoint folders.
        on_mismatch: what to do when ``checkpoint_dir/<category>/`` holds a checkpoint for another
            category, generator configuration or data: ``"error"`` raises ``CheckpointMismatchError``;
            ``"retrain"`` logs the reason, fits again and replaces it.
    """

    def __init__(self, checkpoint_dir: str | Path, on_mismatch: OnMismatch = "error") -> None:
        super().__init__()
        if on_mismatch not in ("error", "retrain"):
            raise InvalidInputError(f"unknown on_mismatch {on_mismatch!r}", fix="use 'error' or 'retrain'")
        self.checkpoint_dir = Path(checkpoint_dir)
        self.on_mismatch = on_mismatch
        #: What happened per category in this process ("loaded", "trained" or "not_needed").
        self.actions: dict[str, Action] = {}

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        datamodule = trainer.datamodule
        if not isinstance(datamodule, SyntheticAnomalyDataModule):
            raise InvalidInputError(
                f"GeneratorFineTuneCallback needs a SyntheticAnomalyDataModule, got {type(datamodule).__name__}",
                fix="pass datamodule=SyntheticAnomalyDataModule(your_datamodule, generator=...) to Trainer.fit",
            )
        self.prepare(datamodule, trainer)

    def checkpoint_path(self, category: str) -> Path:
        return self.checkpoint_dir / category

    def prepare(self, datamodule: SyntheticAnomalyDataModule, trainer: pl.Trainer | None = None) -> Action:
        """Make ``datamodule.generator`` fitted for its current category and data; usable without a Trainer.

        With a distributed ``trainer`` only global rank zero fits and saves; the other ranks
        wait at a barrier and then load the saved checkpoint.
        """
        generator = datamodule.generator
        if not generator.requires_fit:
            self.actions[category_of(datamodule)] = "not_needed"
            return "not_needed"
        key = checkpoint_key(datamodule)
        directory = self.checkpoint_path(key.category)
        if self.has_matching_checkpoint(key, directory):
            restore_into(generator, directory)
            logger.info("Loaded the %s generator for %r from %s.", key.generator_class, key.category, directory)
            action: Action = "loaded"
        elif trainer is None or trainer.is_global_zero:
            self._fit_and_save(datamodule, key, directory)
            action = "trained"
        else:
            action = "loaded"  # after the barrier below, from what rank zero saved
        if trainer is not None and trainer.world_size > 1:
            trainer.strategy.barrier("generator_finetune")
            if not generator.is_fitted:
                restore_into(generator, directory)
        self.actions[key.category] = action
        return action

    def has_matching_checkpoint(self, key: CheckpointKey, directory: Path) -> bool:
        """Whether ``directory`` holds a checkpoint for ``key``; a mismatching one raises or is logged (``on_mismatch``)."""
        saved = read_checkpoint_key(directory)
        if saved is None:
            return False
        reason = key.mismatch(saved)
        if reason is None:
            return True
        message = f"The generator checkpoint in {directory} does not fit this run: {reason}."
        if self.on_mismatch == "error":
            raise CheckpointMismatchError(
                f"{message} Fix: point checkpoint_dir elsewhere, delete that folder, "
                "or pass on_mismatch='retrain' to replace it."
            )
        logger.warning("%s Fitting again and replacing it (on_mismatch='retrain').", message)
        return False

    def _fit_and_save(self, datamodule: SyntheticAnomalyDataModule, key: CheckpointKey, directory: Path) -> None:
        generator = datamodule.generator
        if generator.is_fitted:
            raise InvalidInputError(
                f"the {key.generator_class} for {key.category!r} arrived already fitted, on data this callback "
                "cannot identify, and no matching checkpoint exists",
                path=directory,
                fix="pass an unfitted generator (one per category) so its checkpoint records what it learned from",
            )
        logger.info("Fine-tuning the %s generator for %r.", key.generator_class, key.category)
        start = time.perf_counter()
        datamodule.prepare_generator()
        seconds = time.perf_counter() - start
        save_checkpoint(
            generator,
            key,
            directory,
            fit_seconds=round(seconds, 2),
            n_train_normals=len(datamodule.train_normal_paths()),
            n_shots=len(datamodule.shot_records),
        )
        logger.info("Fitted %r in %.1f s; saved to %s.", key.category, seconds, directory)

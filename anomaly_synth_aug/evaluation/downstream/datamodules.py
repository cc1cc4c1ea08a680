"""The benchmark's data path: an MVTec-layout folder, the few-shot protocol, and the fitted generator.

``synthetic_datamodule`` builds what a user would: anomalib's ``Folder`` wrapped in
``SyntheticAnomalyDataModule`` (the first ``preset.shot_fraction`` of each defect type, a third,
become the generator's shots and leave evaluation; held-back train normals with fixed synthetic
defects form the validation set). ``fit_generator`` fits the generator once per seed and keeps
the fit in a ``FitStore`` for the other detectors and sampling variants.

Example:
    >>> datamodule = synthetic_datamodule(root, generator, preset, seed=0, inject=True)
    >>> seconds, loaded = fit_generator(datamodule, FitStore("runs/generators"))
"""

from __future__ import annotations

import math
import statistics
import time
from functools import lru_cache
from pathlib import Path

from anomalib.data import Folder
from PIL import Image
from torchvision.transforms.v2 import Transform

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
from anomaly_synth_aug.data.mvtec_folder import MvtecLayout, mvtec_folder, scan_mvtec_folder
from anomaly_synth_aug.data.transforms import shot_augmentations
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.evaluation.downstream.presets import Preset
from anomaly_synth_aug.generators.base import AnomalyGenerator
from anomaly_synth_aug.generators.fit_store import FitStore

@lru_cache(maxsize=8)
def _scanned(root: Path) -> MvtecLayout:
    """The validated layout of ``root``, scanned once per process (every run of a benchmark reads it)."""
    return scan_mvtec_folder(root)


def native_side(data_root: str | Path, multiple: int = 32, most: int = 1024) -> int:
    """The square side that keeps a category's typical pixel count: median ``sqrt(h * w)`` of its train normals.

    Rounded to ``multiple`` (at least one, at most ``most``). Fixed-input detectors resized to it see
    thin defects at about their native scale instead of at a fixed 256 px.
    """
    normals = _scanned(Path(data_root).resolve()).train_normals
    if not normals:
        raise InvalidInputError("no training normals to measure the native size on", path=data_root)
    sides = []
    for path in normals:
        with Image.open(path) as image:  # the header only
            sides.append(math.sqrt(image.width * image.height))
    side = round(statistics.median(sides) / multiple) * multiple
    return min(max(side, multiple), most)


def folder_datamodule(data_root: str | Path, preset: Preset, *, train_augmentations: Transform | None = None) -> Folder:
    """anomalib ``Folder`` over an MVTec-layout category (scanned and validated up front, once per process)."""
    return mvtec_folder(
        _scanned(Path(data_root).resolve()),
        train_batch_size=preset.train_batch_size,
        eval_batch_size=preset.eval_batch_size,
        num_workers=preset.num_workers,
        train_augmentations=train_augmentations,
    )


def synthetic_datamodule(
    data_root: str | Path,
    generator: AnomalyGenerator | None,
    preset: Preset,
    seed: int,
    *,
    inject: bool,
    cache_dir: str | Path | None = None,
    train_mode: str | None = None,
    shot_share: float = 0.0,
    anomaly_ratio: float | None = None,
    train_augmentations: Transform | None = None,
) -> SyntheticAnomalyDataModule:
    """The wrapped datamodule; ``inject`` puts defects into the training batches.

    Args:
        train_mode: the datamodule's mode; default the preset's (``"cached"`` draws injected
            defects from a pool in ``cache_dir``). ``"shots"`` trains on the real shots.
        shot_share: share of the injected defects that are augmented real shots (``_with_shots`` sources).
        anomaly_ratio: share of training items given a defect; default the preset's (``shots_plus_`` sources
            raise it, so that the shots keep their share and the source's defects come on top).
        train_augmentations: applied to every training image (crops, resizes).
    """
    injecting = inject and generator is not None
    mode = train_mode or preset.train_mode
    if not injecting:
        mode = "online"  # nothing is injected: no pool to fill
    if mode == "cached" and cache_dir is None:
        raise InvalidInputError(
            f"preset {preset.name!r} trains from a cached pool but no cache_dir was given",
            fix="pass cache_dir (run_experiment uses a temporary one when work_dir is None)",
        )
    return SyntheticAnomalyDataModule(
        folder_datamodule(data_root, preset, train_augmentations=train_augmentations),
        generator=generator,
        anomaly_ratio=(preset.anomaly_ratio if anomaly_ratio is None else anomaly_ratio) if injecting else 0.0,
        mode=mode,
        shot_share=shot_share if injecting else 0.0,
        cache_dir=cache_dir if mode == "cached" else None,
        samples_per_type=preset.samples_per_type,
        val_split="synthetic" if generator is not None else "none",
        val_split_ratio=preset.val_split_ratio,
        shot_fraction=preset.shot_fraction,
        max_fit_normals=preset.max_fit_normals,
        seed=seed,
        max_shots_per_type=preset.max_shots_per_type,
        # every shot gets quarter turns, as in the committed rows: every detector crops or resizes to a fixed
        # size after the turn, so a turned non-square shot is never stretched to its batch's shape (the
        # product's default keeps the shape instead, for datamodules with no such step)
        shot_transform=shot_augmentations(keep_shape=False),
    )


def fit_generator(datamodule: SyntheticAnomalyDataModule, store: FitStore | None = None) -> tuple[float, bool]:
    """Fit the datamodule's generator, or load its fit from ``store``; returns (seconds, loaded).

    A fit depends only on the generator's training settings, the data and the seed, so the store
    hands it to every detector of the same generator and seed, and to every variant that differs in
    sampling options alone (each with its own options).
    """
    start = time.perf_counter()
    datamodule.setup()
    action = store.fit_or_load(datamodule.generator, datamodule.fit_data()) if store is not None else "fitted"
    datamodule.prepare_generator()  # without a store (or for a generator that needs no fit)
    seconds = time.perf_counter() - start
    if datamodule.mode == "cached" and datamodule.generator is not None:
        datamodule.prepare_train_data()  # the pool: generated once per generator and seed, then reused
    return (0.0, True) if action == "loaded" else (seconds, False)

"""``anomaly-synth-aug generate``: fill a sample cache from a saved generator, with Lightning doing the sharding."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from anomaly_synth_aug.cache import generate_cache
from anomaly_synth_aug.data.mvtec_datamodule import mvtec_datamodule
from anomaly_synth_aug.errors import CheckpointMismatchError
from anomaly_synth_aug.generators.base import AnomalyGenerator
from anomaly_synth_aug.generators.fit_store import find_fit, read_fit_record


def load_generator(directory: Path, **overrides: Any) -> AnomalyGenerator:
    """Load a saved generator of any class shipped with the package (``overrides``: its sampling options)."""
    return AnomalyGenerator.load(directory, **overrides)


def check_category(generator_dir: Path, category: str) -> None:
    """Refuse a generator fitted on another category (the fit store's ``fit.json`` says which)."""
    saved = read_fit_record(generator_dir)
    if saved is not None and saved.get("category") != category:
        raise CheckpointMismatchError(
            f"{generator_dir} holds a generator fitted on category {saved.get('category')!r}, but --data is "
            f"{category!r}. Fix: pass a generator folder of {category!r} (fit-generator prints it)."
        )


def generate(
    generator_dir: Path,
    data: Path,
    cache_dir: Path,
    samples_per_type: int = 100,
    seed: int = 0,
    batch_size: int = 4,
    num_workers: int = 0,
    accelerator: str = "auto",
    devices: int | str = 1,
    strategy: str = "auto",
    sampling: dict[str, Any] | None = None,
    val_split: str = "synthetic",
    val_split_ratio: float = 0.2,
) -> int:
    """Generate SAMPLES_PER_TYPE defects per type on the category's training normals into a sample cache.

    A complete cache from the same generator and data is reused, an interrupted one resumed.
    Work is spread over processes/GPUs by Lightning (``--devices 2 --strategy ddp``).

    Args:
        generator_dir: a folder written by ``fit-generator`` (the one it prints, or its ``--output`` when
            that holds one fit of the category) or by ``AnomalyGenerator.save``.
        data: the MVTec-layout category folder whose training normals receive the defects.
        cache_dir: the cache folder to create or complete.
        samples_per_type: how many samples per defect type.
        seed: fixes which normal each sample uses and every generated defect.
        batch_size: jobs per prediction batch (per process).
        num_workers: DataLoader workers reading the source images.
        accelerator: Lightning accelerator ("auto", "cpu", "gpu", ...).
        devices: Lightning devices (a count, or "auto").
        strategy: Lightning strategy ("auto", "ddp", ...).
        sampling: sampling options to change on the saved generator without refitting,
            e.g. ``--sampling '{"guidance_scale": 3}'``.
        val_split: the training datamodule's ``val_split``, and
        val_split_ratio: its ``val_split_ratio``: with the seed they decide which normals are training
            normals, and a cache is made for exactly those; training with other values would find the
            cache made from other inputs, move it aside and generate it all again.
    """
    # the data first: it names the category
    datamodule = mvtec_datamodule(data, None, seed=seed, val_split=val_split, val_split_ratio=val_split_ratio)
    category = datamodule.category or datamodule.name
    generator_dir = find_fit(generator_dir, category)  # the folder fit-generator printed, or its --output
    check_category(generator_dir, category)
    generator = load_generator(generator_dir, **(sampling or {}))
    entries = generate_cache(
        cache_dir,
        generator,
        datamodule.train_normal_paths(),
        samples_per_type=samples_per_type,
        seed=seed,
        batch_size=batch_size,
        num_workers=num_workers,
        trainer_kwargs={"accelerator": accelerator, "devices": devices, "strategy": strategy},
    )
    print(f"{len(entries)} samples in {cache_dir}")
    return 0

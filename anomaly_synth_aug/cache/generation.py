"""Generate a sample cache with Lightning, so one call scales from a CPU to many GPUs.

``Trainer.predict`` drives the work: ``CacheJobsDataModule.prepare_data`` readies the folder in
one process (Lightning runs it on global rank 0, then barriers), every rank reads the same
pending job list, Lightning's ``UnrepeatedDistributedSampler`` gives each job to exactly one
rank, ``CacheGenerationModule.predict_step`` generates, and ``CacheWriter`` writes each batch's
files atomically with records in a per-rank shard. When all ranks are done, rank 0 merges the
shards into ``manifest.jsonl``. ``Trainer(accelerator="cpu", devices=2, strategy="ddp")``
therefore shards the work across two processes with no file written twice.

A file lock beside the cache folder serialises independent processes (e.g. the ranks of a DDP
training run that all ask for the cache): the first generates, the others then find it complete.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, NamedTuple

import torch
from filelock import FileLock
from lightning.pytorch import LightningDataModule, LightningModule, Trainer
from lightning.pytorch.callbacks import BasePredictionWriter
from torch.utils.data import DataLoader, Dataset

from anomaly_synth_aug.cache.atomic import check_writable
from anomaly_synth_aug.cache.integrity import verify
from anomaly_synth_aug.cache.jobs import GenerationJob, plan_jobs
from anomaly_synth_aug.cache.manifest import CacheHeader, ManifestEntry
from anomaly_synth_aug.cache.store import SampleCache
from anomaly_synth_aug.data.io import load_image
from anomaly_synth_aug.errors import InvalidInputError, NotFittedError
from anomaly_synth_aug.generators.base import AnomalyGenerator
from anomaly_synth_aug.utils.fingerprint import config_fingerprint, files_fingerprint
from anomaly_synth_aug.utils.random import make_generator

logger = logging.getLogger(__name__)

#: Set while this process holds a cache's lock; DDP children started by Lightning inherit it.
LOCK_HELD_ENV = "ANOMALY_SYNTH_AUG_CACHE_LOCK_HELD"

DEFAULT_TRAINER_KWARGS: dict[str, Any] = {
    "accelerator": "auto",
    "devices": 1,  # more devices re-launch the calling script per rank (Lightning "ddp"): opt in explicitly
    "logger": False,
    "enable_checkpointing": False,
    "enable_model_summary": False,
}


class GeneratedSample(NamedTuple):
    job: GenerationJob
    image: torch.Tensor
    mask: torch.Tensor


class JobsDataset(Dataset[tuple[GenerationJob, torch.Tensor]]):
    """Each job with its source normal image, read in the DataLoader workers."""

    def __init__(self, jobs: Sequence[GenerationJob]) -> None:
        self.jobs = list(jobs)

    def __len__(self) -> int:
        return len(self.jobs)

    def __getitem__(self, index: int) -> tuple[GenerationJob, torch.Tensor]:
        job = self.jobs[index]
        return job, load_image(job.source)


def collate_jobs(items: list[tuple[GenerationJob, torch.Tensor]]) -> list[tuple[GenerationJob, torch.Tensor]]:
    """Keep a batch as a list: source images may differ in size."""
    return items


class CacheJobsDataModule(LightningDataModule):
    """Readies the cache once (``prepare_data``) and serves the jobs still to do."""

    def __init__(
        self, cache: SampleCache, header: CacheHeader, jobs: Sequence[GenerationJob], batch_size: int, num_workers: int
    ) -> None:
        super().__init__()
        self.prepare_data_per_node = False  # one cache folder, shared by every node
        self.cache = cache
        self.header = header
        self.jobs = list(jobs)
        self.batch_size = batch_size
        self.num_workers = num_workers
        self.pending: list[GenerationJob] = []

    def prepare_data(self) -> None:
        self.cache.prepare(self.header)

    def setup(self, stage: str) -> None:
        self.pending = self.cache.pending(self.jobs)
        logger.info("%d of %d cache samples to generate in %s.", len(self.pending), len(self.jobs), self.cache.root)

    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        return batch  # generators place their own work on their device; jobs are not tensors

    def predict_dataloader(self) -> DataLoader:
        return DataLoader(
            JobsDataset(self.pending),
            batch_size=self.batch_size,
            shuffle=False,
            num_workers=self.num_workers,
            collate_fn=collate_jobs,
        )


class CacheGenerationModule(LightningModule):
    """Runs the generator on one job at a time, each with its own seed.

    Per-job seeding makes every sample a function of its job alone, so a resumed or re-sharded
    run reproduces it exactly; the generator places its own work on the device it was built for.
    """

    def __init__(self, generator: AnomalyGenerator) -> None:
        super().__init__()
        self.generator = generator

    def predict_step(self, batch: list[tuple[GenerationJob, torch.Tensor]], batch_idx: int) -> list[GeneratedSample]:
        # one call per batch (a learned generator runs its network once for all), each job on its own seed
        jobs = [job for job, _ in batch]
        generated = self.generator.generate(
            [image for _, image in batch],
            defect_types=[job.defect_type for job in jobs],
            generator=[make_generator(job.seed) for job in jobs],
        )
        samples = []
        for job, image, mask, defect_type in zip(
            jobs, generated.images, generated.masks, generated.defect_types, strict=True
        ):
            if defect_type != job.defect_type:
                raise RuntimeError(
                    f"{type(self.generator).__name__} returned a {defect_type!r} defect "
                    f"when asked for {job.defect_type!r}"
                )
            samples.append(GeneratedSample(job, image, mask))
        return samples


class CacheWriter(BasePredictionWriter):
    """Writes each predicted batch into the cache; rank 0 commits all shards at the end."""

    def __init__(self, cache: SampleCache, generator_fingerprint: str) -> None:
        super().__init__(write_interval="batch")
        self.cache = cache
        self.generator_fingerprint = generator_fingerprint
        self.written = 0

    def write_on_batch_end(
        self,
        trainer: Trainer,
        pl_module: LightningModule,
        prediction: list[GeneratedSample],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        for sample in prediction:
            self.cache.write_sample(
                sample.job, sample.image, sample.mask, self.generator_fingerprint, rank=trainer.global_rank
            )
        self.written += len(prediction)

    def on_predict_end(self, trainer: Trainer, pl_module: LightningModule) -> None:
        logger.info("Rank %d wrote %d cache samples.", trainer.global_rank, self.written)
        trainer.strategy.barrier("sample-cache-written")
        if trainer.is_global_zero:
            self.cache.commit()
        trainer.strategy.barrier("sample-cache-committed")


def make_header(
    generator: AnomalyGenerator,
    source_paths: Sequence[str | Path],
    *,
    samples_per_type: int,
    seed: int,
    defect_types: Sequence[str],
    config: Mapping[str, Any] | None = None,
) -> CacheHeader:
    """The header a cache made with these inputs must carry."""
    config = dict(config or {})
    return CacheHeader(
        generator_class=type(generator).__name__,
        generator_fingerprint=generator.fingerprint(),
        config_fingerprint=config_fingerprint(config),
        data_fingerprint=files_fingerprint(source_paths),
        samples_per_type=samples_per_type,
        defect_types=tuple(sorted(set(defect_types))),
        seed=seed,
        num_sources=len(source_paths),
        config=config,
    )


@contextmanager
def generation_lock(root: Path) -> Iterator[None]:
    """Hold ``.<name>.lock`` beside ``root``; re-entrant for DDP children of the holder (env marker)."""
    key = str(root.resolve())
    if os.environ.get(LOCK_HELD_ENV) == key:
        yield
        return
    with FileLock(root.parent / f".{root.name}.lock"):
        os.environ[LOCK_HELD_ENV] = key
        try:
            yield
        finally:
            os.environ.pop(LOCK_HELD_ENV, None)


def _reusable(cache: SampleCache, header: CacheHeader) -> list[ManifestEntry] | None:
    """The samples of ``cache`` when it is complete, intact (every file hashed) and made from ``header``."""
    report = verify(cache.root)
    if not cache.matches(header, report):
        return None
    logger.info("Reusing the complete sample cache %s (%d samples).", cache.root, len(report.entries))
    return report.entries


def generate_cache(
    cache_dir: str | Path,
    generator: AnomalyGenerator,
    source_paths: Sequence[str | Path],
    *,
    samples_per_type: int,
    seed: int = 0,
    defect_types: Sequence[str] | None = None,
    config: Mapping[str, Any] | None = None,
    batch_size: int = 4,
    num_workers: int = 0,
    trainer_kwargs: Mapping[str, Any] | None = None,
) -> list[ManifestEntry]:
    """Make sure ``cache_dir`` holds ``samples_per_type`` samples per defect type, and return them.

    A complete matching cache is reused as is; an interrupted one is resumed; one made from another
    generator, ``config`` or data is moved aside and regenerated (the changes are logged).

    Args:
        cache_dir: the cache folder (created if needed).
        generator: a fitted generator; it must pickle when ``trainer_kwargs`` asks for spawned processes.
        source_paths: the normal images to put defects on.
        samples_per_type: samples per defect type.
        seed: fixes the job plan and every sample.
        defect_types: default: all of ``generator.defect_types``.
        config: anything else that shaped the samples (recorded, and compared on reuse).
        batch_size: jobs per predict batch (per rank).
        num_workers: DataLoader workers that read the source images.
        trainer_kwargs: override ``DEFAULT_TRAINER_KWARGS``, e.g. ``{"accelerator": "cpu", "devices": 2,
            "strategy": "ddp"}``; extra ``callbacks`` are kept.
    """
    if not generator.is_fitted:
        raise NotFittedError(
            f"{type(generator).__name__} must be fitted (or loaded) before it can fill a sample cache"
        )
    types = list(generator.defect_types if defect_types is None else defect_types)
    unknown = sorted(set(types) - set(generator.defect_types))
    if unknown:
        raise InvalidInputError(
            f"defect types {unknown} are not produced by {type(generator).__name__} ({generator.defect_types})",
            fix="pass defect_types=None to cache all of the generator's types",
        )
    root = Path(cache_dir).resolve()  # one lock per real folder, however it is reached (symlinks)
    cache = SampleCache(root)
    jobs = plan_jobs(source_paths, types, samples_per_type, seed)
    header = make_header(
        generator, source_paths, samples_per_type=samples_per_type, seed=seed, defect_types=types, config=config
    )
    if root.is_dir():  # a complete cache is only read: it may sit on read-only or shared storage
        try:  # files' existence first, so only a cache that looks complete is hashed outside the lock too
            looks_complete = cache.matches(header, verify(root, check_hashes=False))
            if looks_complete and (entries := _reusable(cache, header)) is not None:
                return entries
        except OSError:  # a writer holding the lock moved a file away mid-read: decide under the lock
            pass
    check_writable(root)
    with generation_lock(root):
        if (entries := _reusable(cache, header)) is not None:  # another process may have filled or changed it
            return entries
        kwargs = DEFAULT_TRAINER_KWARGS | dict(trainer_kwargs or {})
        writer = CacheWriter(cache, header.generator_fingerprint)
        kwargs["callbacks"] = [*(kwargs.get("callbacks") or []), writer]
        trainer = Trainer(**kwargs)
        trainer.predict(
            CacheGenerationModule(generator),
            datamodule=CacheJobsDataModule(cache, header, jobs, batch_size, num_workers),
            return_predictions=False,
        )
        return cache.load(header)

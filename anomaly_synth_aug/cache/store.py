"""``SampleCache``: the one object that changes a cache folder, and the rules that keep it consistent.

* A sample is committed when its manifest line exists, and its line is written only after both
  of its files are durably in place; until then it lives in a per-rank shard.
* ``prepare`` (one process, before generation) never mixes runs: a cache made from a different
  generator, configuration or data is moved aside whole and regenerated, with the changes logged;
  a folder that is not a cache is refused; damage that a crash cannot explain is an error.
* What a killed run can leave (a torn manifest line, uncommitted shards, temp files, files with
  no manifest line) is repaired by ``recover``, so resuming never duplicates or loses a sample.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import torch

from anomaly_synth_aug.cache.atomic import (
    append_lines_durably,
    atomic_write_bytes,
    check_writable,
    is_temp_file,
    raise_storage_error,
    sha256_bytes,
    sha256_file,
)
from anomaly_synth_aug.cache.encoding import encode_image_png, encode_mask_png
from anomaly_synth_aug.cache.integrity import VerifyReport, verify
from anomaly_synth_aug.cache.jobs import GenerationJob
from anomaly_synth_aug.cache.layout import (
    IMAGES_DIR,
    MASKS_DIR,
    SHARDS_DIR,
    CacheLayout,
)
from anomaly_synth_aug.cache.manifest import (
    CacheHeader,
    ManifestEntry,
    drop_torn_tail,
    read_manifest,
)
from anomaly_synth_aug.errors import CheckpointMismatchError, InvalidInputError

logger = logging.getLogger(__name__)

#: Top-level folders whose unlisted files are generation leftovers that ``recover`` may delete.
_OWNED_DIRS = (IMAGES_DIR, MASKS_DIR, SHARDS_DIR)


class SampleCache:
    """A sample cache folder (see ``anomaly_synth_aug.cache.layout`` for its files)."""

    def __init__(self, root: str | Path) -> None:
        self.layout = CacheLayout(Path(root))

    @property
    def root(self) -> Path:
        return self.layout.root

    # ---------------------------------------------------------------- preparing
    def prepare(self, header: CacheHeader) -> None:
        """Make the folder a valid cache for ``header``: create, invalidate, or repair it for resuming."""
        check_writable(self.root)
        if self.layout.header.is_file():
            existing = CacheHeader.read(self.layout.header)
            if existing.identity() != header.identity():
                stale = self._move_aside()
                logger.warning(
                    "Sample cache %s was generated from different inputs (%s); moved it to %s and "
                    "regenerating from scratch.",
                    self.root,
                    "; ".join(existing.differences(header)),
                    stale,
                )
                check_writable(self.root)
        else:
            foreign = [p.name for p in self.root.iterdir() if not is_temp_file(p)]
            if foreign:
                raise InvalidInputError(
                    f"the folder is not empty ({', '.join(sorted(foreign)[:5])}) and is not a sample cache "
                    f"(no {self.layout.header.name})",
                    path=self.root,
                    fix="set cache_dir to a new or empty folder; nothing in this one was changed",
                )
        if not self.layout.header.is_file():
            header.write(self.layout.header)
        self.recover()

    def _move_aside(self) -> Path:
        """Rename the invalidated cache to ``<name>.stale-<time>``, deleting older stale copies (logged)."""
        for old in self.root.parent.glob(f"{self.root.name}.stale-*"):
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
                logger.info("Deleted the older invalidated copy %s (one is kept).", old)
        stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
        stale = self.root.with_name(f"{self.root.name}.stale-{stamp}")
        suffix = 1
        while stale.exists():
            suffix += 1
            stale = self.root.with_name(f"{self.root.name}.stale-{stamp}-{suffix}")
        try:
            self.root.rename(stale)
        except OSError as exc:
            raise_storage_error(exc, self.root.parent)
            raise
        return stale

    def recover(self) -> VerifyReport:
        """Repair what an interrupted run left, then require the committed samples to be intact.

        Raises ``CorruptFileError`` (with the full report) for damage a crash cannot explain:
        malformed lines, escaping names, missing or changed files, samples of another generator.
        """
        if drop_torn_tail(self.layout.manifest):
            logger.info("Dropped a torn last line from %s (interrupted write).", self.layout.manifest)
        self.commit()
        report = verify(self.root, check_hashes=False)
        damage = {kind for kind in report.problems if kind not in ("leftover temp files", "unlisted files")}
        if damage:
            # a malformed or escaping manifest line hides the files it should list: deleting "unlisted" files
            # now would destroy real samples before the error is even raised
            report.raise_if_not_ok()
        leftovers = report.temp_files + [name for name in report.unlisted if name.split("/", 1)[0] in _OWNED_DIRS]
        for name in leftovers:
            (self.root / name).unlink(missing_ok=True)
        if leftovers:
            logger.info("Removed %d unfinished files from %s.", len(leftovers), self.root)
        report = verify(self.root)
        report.raise_if_not_ok()
        return report

    # ------------------------------------------------------------------ writing
    def pending(self, jobs: Sequence[GenerationJob]) -> list[GenerationJob]:
        """The jobs whose samples are not committed yet."""
        done = {entry.id for entry in read_manifest(self.layout).entries}
        return [job for job in jobs if job.id not in done]

    def write_sample(
        self, job: GenerationJob, image: torch.Tensor, mask: torch.Tensor, generator_fingerprint: str, rank: int
    ) -> ManifestEntry:
        """Write a sample's two files atomically, then record it in rank ``rank``'s shard.

        Safe to run concurrently on several ranks: each job is written by one rank only and each
        rank appends to its own shard. On failure neither file of the sample is left behind.
        """
        entry_id = job.id
        image_name, mask_name = self.layout.image_name(entry_id), self.layout.mask_name(entry_id)
        image_bytes, mask_bytes = encode_image_png(image), encode_mask_png(mask)
        image_path, mask_path = self.root / image_name, self.root / mask_name
        try:
            for folder in (image_path.parent, mask_path.parent, self.layout.shards_dir):
                folder.mkdir(parents=True, exist_ok=True)
            atomic_write_bytes(image_path, image_bytes)
            atomic_write_bytes(mask_path, mask_bytes)
        except BaseException as exc:
            image_path.unlink(missing_ok=True)
            mask_path.unlink(missing_ok=True)
            if isinstance(exc, OSError):
                raise_storage_error(exc, image_path.parent)
            raise
        entry = ManifestEntry(
            id=entry_id,
            image=image_name,
            mask=mask_name,
            defect_type=job.defect_type,
            source=job.source,
            seed=job.seed,
            generator=generator_fingerprint,
            image_sha256=sha256_bytes(image_bytes),
            mask_sha256=sha256_bytes(mask_bytes),
        )
        append_lines_durably(self.layout.shard(rank), [entry.to_json()])
        return entry

    def commit(self) -> int:
        """Move intact shard records into the manifest (once each), then delete the shards."""
        if not self.layout.shards_dir.is_dir():
            return 0
        shards = sorted(self.layout.shards_dir.glob("rank-*.jsonl"))
        committed = {entry.id for entry in read_manifest(self.layout).entries}
        new: dict[str, ManifestEntry] = {}
        for shard in shards:
            for entry in read_manifest(self.layout, shard).entries:
                if entry.id in committed or entry.id in new:
                    continue
                if self._files_intact(entry):
                    new[entry.id] = entry
                else:
                    logger.warning("Not committing %s from %s: its files are missing or changed.", entry.id, shard)
        drop_torn_tail(self.layout.manifest)
        append_lines_durably(self.layout.manifest, [new[key].to_json() for key in sorted(new)])
        for shard in shards:
            shard.unlink()
        if not any(self.layout.shards_dir.iterdir()):
            self.layout.shards_dir.rmdir()
        return len(new)

    def _files_intact(self, entry: ManifestEntry) -> bool:
        image, mask = self.layout.resolve(entry.image), self.layout.resolve(entry.mask)
        return (
            image.is_file()
            and mask.is_file()
            and sha256_file(image) == entry.image_sha256
            and sha256_file(mask) == entry.mask_sha256
        )

    # ------------------------------------------------------------------ reading
    def load(self, expected: CacheHeader | None = None, report: VerifyReport | None = None) -> list[ManifestEntry]:
        """The samples of a complete, intact cache made from ``expected`` (when given).

        Pass a fresh ``verify`` ``report`` to skip checking the files a second time.
        """
        report = verify(self.root) if report is None else report
        report.raise_if_not_ok()
        if expected is not None and report.header is not None and report.header.identity() != expected.identity():
            raise CheckpointMismatchError(
                f"{self.root}: the sample cache was generated from different inputs "
                f"({'; '.join(report.header.differences(expected))}). Fix: generate the cache again."
            )
        if not report.complete:
            raise InvalidInputError(
                f"the sample cache is incomplete ({len(report.entries)} of {report.expected} samples)",
                path=self.root,
                fix="run the generation again: it resumes where it stopped",
            )
        return report.entries

    def matches(self, expected: CacheHeader, report: VerifyReport) -> bool:
        """Whether ``report`` shows a complete, intact cache made from ``expected``."""
        return report.complete and report.header is not None and report.header.identity() == expected.identity()

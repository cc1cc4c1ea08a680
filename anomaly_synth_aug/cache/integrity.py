"""Check every file of a sample cache against its manifest, and say clearly what is wrong.

Run as ``python -m anomaly_synth_aug.cache.integrity <cache_dir>`` (exit status 1 on problems) or
call ``verify``. Detected: a missing or unreadable header, malformed manifest lines, names that
escape the cache, samples from another generator, missing files, files whose sha256 differs
from the manifest (hand-edited or corrupted), unlisted files and leftover temp files.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, field
from pathlib import Path

from anomaly_synth_aug.cache.atomic import is_temp_file, sha256_file
from anomaly_synth_aug.cache.layout import HEADER_FILE, MANIFEST_FILE, CacheLayout
from anomaly_synth_aug.cache.manifest import CacheHeader, ManifestEntry, read_manifest
from anomaly_synth_aug.errors import CorruptFileError

_MAX_LISTED = 10


@dataclass
class VerifyReport:
    """What ``verify`` found; ``ok`` means every committed sample is intact, ``complete`` that all are there."""

    cache_dir: Path
    header: CacheHeader | None = None
    header_problem: str | None = None
    entries: list[ManifestEntry] = field(default_factory=list)
    torn_tail: bool = False
    malformed: list[str] = field(default_factory=list)
    unsafe: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    mismatched: list[str] = field(default_factory=list)
    unlisted: list[str] = field(default_factory=list)
    temp_files: list[str] = field(default_factory=list)
    pending_shards: list[str] = field(default_factory=list)
    pending_samples: int = 0

    @property
    def problems(self) -> dict[str, list[str]]:
        """Findings that make the cache untrustworthy, by kind (empty when ``ok``)."""
        found = {
            "header": [self.header_problem] if self.header_problem else [],
            "malformed manifest lines": self.malformed,
            "names escaping the cache": self.unsafe,
            "samples not from this cache's generator or plan": self.foreign,
            "missing files": self.missing,
            "files changed since generation (sha256 mismatch)": self.mismatched,
            "unlisted files": self.unlisted,
            "leftover temp files": self.temp_files,
        }
        return {kind: items for kind, items in found.items() if items}

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def is_cache(self) -> bool:
        """Whether the folder holds this package's cache files at all: a header, or a manifest with our entries.

        ``manifest.jsonl`` is a common name; one in which no line is a sample entry is someone else's.
        """
        if (self.cache_dir / HEADER_FILE).is_file():
            return True
        return (self.cache_dir / MANIFEST_FILE).is_file() and bool(self.entries)

    @property
    def interrupted_only(self) -> bool:
        """Every problem is what an interrupted generation leaves (temp files, unfinished sample files),
        which resuming the generation repairs; nothing committed is damaged."""
        owned = ("images/", "ground_truth/", "shards/")
        return (
            self.is_cache
            and set(self.problems) <= {"leftover temp files", "unlisted files"}
            and all(name.startswith(owned) for name in self.unlisted)
        )

    def fix(self) -> str:
        """What to do about the problems found, depending on what kind they are."""
        if not self.is_cache:
            return "point at a sample cache folder (one holding cache.json and manifest.jsonl); nothing here was changed"
        if self.interrupted_only:
            return "resume the generation (run the same generate command or training again): it removes these files"
        return "delete the cache folder to regenerate it, or restore the listed files"

    @property
    def expected(self) -> int | None:
        return self.header.expected_count if self.header is not None else None

    @property
    def complete(self) -> bool:
        return self.ok and not self.pending_shards and not self.torn_tail and len(self.entries) == self.expected

    def __str__(self) -> str:
        count = f"{len(self.entries)}/{self.expected}" if self.expected is not None else str(len(self.entries))
        state = (
            "complete"
            if self.complete
            else "intact but incomplete"
            if self.ok
            else "interrupted (resumable)"
            if self.interrupted_only
            else "PROBLEMS FOUND"
        )
        lines = [f"Sample cache {self.cache_dir}: {count} samples, {state}"]
        for kind, items in self.problems.items():
            lines.append(f"  {kind} ({len(items)}):")
            lines.extend(f"    {item}" for item in items[:_MAX_LISTED])
            if len(items) > _MAX_LISTED:
                lines.append(f"    ... and {len(items) - _MAX_LISTED} more")
        if self.pending_shards or self.torn_tail:
            lines.append(
                f"  an interrupted generation left {self.pending_samples} uncommitted samples; "
                "generating again resumes it"
            )
        if not self.ok:
            lines.append(f"  Fix: {self.fix()}.")
        return "\n".join(lines)

    def raise_if_not_ok(self) -> None:
        """Raise ``CorruptFileError`` with this report when any problem was found."""
        if not self.ok:
            raise CorruptFileError(f"the sample cache is damaged:\n{self}", path=self.cache_dir, fix=self.fix())


def _check_plan(entry: ManifestEntry, header: CacheHeader) -> str | None:
    if entry.generator != header.generator_fingerprint:
        return f"{entry.id}: made by generator {entry.generator[:12]}, the cache is {header.generator_fingerprint[:12]}"
    index = entry.id.rsplit("/", 1)[-1]
    if entry.defect_type not in header.defect_types or not index.isdigit() or int(index) >= header.samples_per_type:
        return f"{entry.id}: not in this cache's plan ({header.samples_per_type} per type of {header.defect_types})"
    return None


def _pending_records(layout: CacheLayout) -> list[ManifestEntry]:
    """Records in per-rank shards: written samples an interrupted run did not commit yet."""
    if not layout.shards_dir.is_dir():
        return []
    return [entry for shard in layout.shards_dir.glob("*.jsonl") for entry in read_manifest(layout, shard).entries]


#: Files that file browsers and network file systems drop into any folder: never the cache's, never a problem.
OS_METADATA_FILES = frozenset({".DS_Store", "Thumbs.db", "desktop.ini"})
OS_METADATA_PREFIXES = ("._", ".nfs")


def is_os_metadata(name: str) -> bool:
    """Whether ``name`` is an operating system's own file (macOS Finder, Windows Explorer, NFS)."""
    return name in OS_METADATA_FILES or name.startswith(OS_METADATA_PREFIXES)


def _scan_files(layout: CacheLayout, report: VerifyReport, listed: set[str]) -> None:
    """Sort every file under the cache into listed, pending shard, temp or unlisted (OS metadata is skipped)."""
    for dirpath, dirnames, filenames in os.walk(layout.root):
        folder = Path(dirpath)
        for name in dirnames + filenames:
            path = folder / name
            if (name in dirnames and not path.is_symlink()) or (name in filenames and is_os_metadata(name)):
                continue
            relative = path.relative_to(layout.root).as_posix()
            if relative in (HEADER_FILE, MANIFEST_FILE) or relative in listed:
                continue
            if is_temp_file(path):
                report.temp_files.append(relative)
            elif folder == layout.shards_dir and name.endswith(".jsonl"):
                report.pending_shards.append(relative)
            else:
                report.unlisted.append(relative)
    for found in (report.temp_files, report.pending_shards, report.unlisted):
        found.sort()


def verify(cache_dir: str | Path, *, check_hashes: bool = True) -> VerifyReport:
    """Check the cache at ``cache_dir``; never modifies it.

    Args:
        cache_dir: the cache folder (holding ``cache.json``).
        check_hashes: compare each file's sha256 with the manifest (reads every file).
    """
    layout = CacheLayout(Path(cache_dir))
    report = VerifyReport(cache_dir=layout.root)
    if not layout.root.is_dir():
        exists = layout.root.exists()
        report.header_problem = "this is a file, not a cache folder" if exists else "the cache folder does not exist"
        return report
    if not layout.header.is_file():
        report.header_problem = f"no {HEADER_FILE}: this folder is not a sample cache"
    else:
        try:
            report.header = CacheHeader.read(layout.header)
        except CorruptFileError as exc:
            report.header_problem = exc.problem
    manifest = read_manifest(layout)
    report.torn_tail = manifest.torn_tail
    for problem in manifest.problems:
        (report.unsafe if problem.kind == "unsafe" else report.malformed).append(f"{MANIFEST_FILE} {problem}")
    for entry in manifest.entries:
        mismatch = _check_plan(entry, report.header) if report.header is not None else None
        if mismatch:
            report.foreign.append(mismatch)
            continue
        report.entries.append(entry)
        for name, expected_sha in ((entry.image, entry.image_sha256), (entry.mask, entry.mask_sha256)):
            path = layout.resolve(name)
            if not path.is_file():
                report.missing.append(f"{entry.id}: {name}")
            elif check_hashes and sha256_file(path) != expected_sha:
                report.mismatched.append(f"{entry.id}: {name}")
    listed = {name for entry in manifest.entries for name in (entry.image, entry.mask)}
    pending = _pending_records(layout)
    report.pending_samples = len(pending)
    _scan_files(layout, report, listed | {name for entry in pending for name in (entry.image, entry.mask)})
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="Check a sample cache against its manifest.")
    parser.add_argument("cache_dir", type=Path)
    parser.add_argument("--no-hashes", action="store_true", help="skip sha256 checks (existence only)")
    args = parser.parse_args(argv)
    report = verify(args.cache_dir, check_hashes=not args.no_hashes)
    print(report)
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())

"""The cache's two records: the ``cache.json`` header and the ``manifest.jsonl`` sample lines.

``cache.json`` says what the samples were generated from (generator, configuration, data), so
a changed input is noticed instead of silently mixing old and new samples. ``manifest.jsonl``
holds one JSON line per committed sample, written only after both of its files are durably
on disk: a sample is in the cache exactly when its line is. A run killed while appending can
leave a torn (newline-less) last line, which ``read_manifest`` reports and ``drop_torn_tail``
removes; any other unreadable line is corruption.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, fields
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal, Self

from anomaly_synth_aug.cache.atomic import (
    atomic_write_bytes,
    fsync_dir,
    raise_storage_error,
)
from anomaly_synth_aug.cache.layout import CacheLayout, UnsafeCachePathError
from anomaly_synth_aug.errors import CorruptFileError

FORMAT_VERSION = 1


@dataclass(frozen=True)
class ManifestEntry:
    """One committed sample: its files (relative to the cache), provenance and checksums."""

    id: str
    image: str
    mask: str
    defect_type: str
    source: str
    seed: int
    generator: str
    image_sha256: str
    mask_sha256: str

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_dict(cls, data: Any) -> Self:
        """Build from a parsed line; ``ValueError`` names the first missing or mistyped field."""
        if not isinstance(data, dict):
            raise ValueError(f"expected a JSON object, got {type(data).__name__}")
        values: dict[str, Any] = {}
        for spec in fields(cls):
            if spec.name not in data:
                raise ValueError(f"missing field {spec.name!r}")
            value = data[spec.name]
            expected = int if spec.type == "int" else str
            if not isinstance(value, expected) or isinstance(value, bool):
                raise ValueError(f"field {spec.name!r} must be {expected.__name__}, got {value!r}")
            values[spec.name] = value
        return cls(**values)


@dataclass(frozen=True)
class ManifestProblem:
    """A manifest line that cannot be trusted; ``kind`` separates escapes from plain damage."""

    line: int
    kind: Literal["malformed", "unsafe", "duplicate"]
    message: str

    def __str__(self) -> str:
        return f"line {self.line}: {self.message}"


@dataclass
class ManifestRead:
    """Result of reading a manifest (or a shard): good entries, bad lines, and a torn last line."""

    entries: list[ManifestEntry] = field(default_factory=list)
    problems: list[ManifestProblem] = field(default_factory=list)
    torn_tail: bool = False

    def by_id(self) -> dict[str, ManifestEntry]:
        return {entry.id: entry for entry in self.entries}


def _check_names(layout: CacheLayout, entry: ManifestEntry) -> ManifestProblem | None:
    """Names must be the layout's names for the entry's id and type, and stay inside the cache."""
    for name in (entry.image, entry.mask):
        try:
            layout.resolve(name)
        except UnsafeCachePathError as exc:
            return ManifestProblem(0, "unsafe", exc.problem)
    if entry.id.split("/", 1)[0] != entry.defect_type:
        return ManifestProblem(0, "malformed", f"id {entry.id!r} is not under defect type {entry.defect_type!r}")
    if entry.image != layout.image_name(entry.id) or entry.mask != layout.mask_name(entry.id):
        return ManifestProblem(
            0,
            "malformed",
            f"files {entry.image!r}, {entry.mask!r} do not follow the layout for id {entry.id!r} "
            f"({layout.image_name(entry.id)!r}, {layout.mask_name(entry.id)!r})",
        )
    return None


def read_manifest(layout: CacheLayout, path: Path | None = None) -> ManifestRead:
    """Read ``path`` (default: the cache's manifest); a missing file reads as empty."""
    path = layout.manifest if path is None else path
    result = ManifestRead()
    if not path.is_file():
        return result
    text = path.read_text(encoding="utf-8", errors="replace")
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    elif lines:  # no final newline: the last append was cut short by a crash
        lines.pop()
        result.torn_tail = True
    seen: dict[str, ManifestEntry] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            result.problems.append(ManifestProblem(number, "malformed", "empty line"))
            continue
        try:
            entry = ManifestEntry.from_dict(json.loads(line))
        except (json.JSONDecodeError, ValueError) as exc:
            result.problems.append(ManifestProblem(number, "malformed", f"unreadable entry ({exc})"))
            continue
        problem = _check_names(layout, entry)
        if problem is not None:
            result.problems.append(ManifestProblem(number, problem.kind, problem.message))
            continue
        if entry.id in seen:
            same = "the same record" if seen[entry.id] == entry else "a different record"
            result.problems.append(ManifestProblem(number, "duplicate", f"id {entry.id!r} listed again ({same})"))
            continue
        seen[entry.id] = entry
        result.entries.append(entry)
    return result


def drop_torn_tail(path: Path) -> bool:
    """Cut a crash-torn last line (everything after the last newline); True when something was cut."""
    if not path.is_file():
        return False
    data = path.read_bytes()
    if not data or data.endswith(b"\n"):
        return False
    keep = data.rfind(b"\n") + 1
    try:
        with path.open("r+b") as handle:
            handle.truncate(keep)
    except OSError as exc:
        raise_storage_error(exc, path.parent)
        raise
    fsync_dir(path.parent)
    return True


def utc_now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class CacheHeader:
    """What a cache was generated from; two headers with equal ``identity()`` describe the same samples."""

    generator_class: str
    generator_fingerprint: str
    config_fingerprint: str
    data_fingerprint: str
    samples_per_type: int
    defect_types: tuple[str, ...]
    seed: int
    num_sources: int
    config: dict[str, Any] = field(default_factory=dict, compare=False)
    created: str = field(default_factory=utc_now, compare=False)
    format_version: int = FORMAT_VERSION

    @property
    def expected_count(self) -> int:
        return self.samples_per_type * len(self.defect_types)

    def identity(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("config", "created")}

    def differences(self, other: CacheHeader) -> list[str]:
        """Human-readable changes from ``self`` (on disk) to ``other`` (requested), config keys included."""
        changes = [
            f"{key}: {value!r} -> {other.identity()[key]!r}"
            for key, value in self.identity().items()
            if value != other.identity()[key] and key != "config_fingerprint"
        ]
        if self.config_fingerprint != other.config_fingerprint:
            keys = sorted(set(self.config) | set(other.config))
            changed = [k for k in keys if self.config.get(k, "<unset>") != other.config.get(k, "<unset>")]
            detail = ", ".join(
                f"{k}: {self.config.get(k, '<unset>')!r} -> {other.config.get(k, '<unset>')!r}" for k in changed
            )
            changes.append(f"config: {detail or 'fingerprint differs'}")
        return changes

    def write(self, path: Path) -> None:
        data = asdict(self) | {"defect_types": list(self.defect_types)}
        atomic_write_bytes(path, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())

    @classmethod
    def read(cls, path: Path) -> Self:
        """Read ``cache.json``; anything unreadable is ``CorruptFileError`` (it is written atomically)."""
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            if not isinstance(data, dict):
                raise ValueError("not a JSON object")
            names = {spec.name for spec in fields(cls)}
            missing = names - set(data) - {"config", "created"}
            if missing:
                raise ValueError(f"missing fields {sorted(missing)}")
            values = {k: v for k, v in data.items() if k in names}
            values["defect_types"] = tuple(values["defect_types"])
            return cls(**values)
        except (OSError, UnicodeDecodeError, ValueError, TypeError) as exc:
            raise CorruptFileError(
                f"unreadable cache header ({exc})",
                path=path,
                fix="delete the cache folder to regenerate it (cache.json is never written partially, "
                "so this file was edited or damaged)",
            ) from exc

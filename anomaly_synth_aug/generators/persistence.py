"""How a saved generator folder is checked: its ``generator.json``, its format version, its state files.

``AnomalyGenerator.save`` records a sha256 of every state file it writes; loading (``load``, and the
fine-tuning callback's in-place restore) verifies them, so a flipped byte in a ``.safetensors`` file
is an error naming the file rather than a generator that loads silently and draws garbage.

Example:
    >>> meta = read_generator_meta("results/generators/magnetic_tile")
    >>> verify_state_files("results/generators/magnetic_tile", meta)
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

from anomaly_synth_aug.errors import CheckpointMismatchError, CorruptFileError, InvalidInputError

CONFIG_FILE = "generator.json"
FORMAT_VERSION = 1


def read_generator_meta(directory: str | Path) -> dict[str, Any]:
    """``generator.json`` of a saved generator, checked: valid JSON, an object, a format version this code reads."""
    meta_path = Path(directory) / CONFIG_FILE
    if not meta_path.is_file():
        raise InvalidInputError(
            f"no {CONFIG_FILE} here", path=directory, fix="pass a folder written by AnomalyGenerator.save()"
        )
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise CorruptFileError(
            f"not valid JSON ({exc})", path=meta_path, fix="restore the file, or re-fit and save the generator"
        ) from exc
    if not isinstance(meta, dict):
        raise CorruptFileError(
            f"expected a JSON object, found a {type(meta).__name__}",
            path=meta_path,
            fix="restore the file, or re-fit and save the generator",
        )
    version = meta.get("format_version", FORMAT_VERSION)
    if not isinstance(version, int) or isinstance(version, bool) or not 1 <= version <= FORMAT_VERSION:
        raise CheckpointMismatchError(
            f"{meta_path}: format version {version!r}; this anomaly_synth_aug reads versions 1 to {FORMAT_VERSION}. "
            "Fix: upgrade anomaly_synth_aug for a newer folder, or re-fit and save the generator."
        )
    return meta


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def state_checksums(directory: Path) -> dict[str, str]:
    """sha256 of every file a generator's ``_save_state`` wrote into ``directory`` (relative paths)."""
    return {
        path.relative_to(directory).as_posix(): _sha256(path)
        for path in sorted(directory.rglob("*"))
        if path.is_file() and path.name != CONFIG_FILE and not path.name.endswith(".tmp")
    }


def written_checksums(directory: Path, before: dict[str, str]) -> dict[str, str]:
    """``state_checksums`` of the files a save wrote: new or changed since ``before``, or listed by the folder's
    previous ``generator.json`` (a save of the same state rewrites identical files).

    A file that was already in the folder and is none of these (a log, a note) is not the generator's:
    listing it would make loading fail once someone deletes it.
    """
    previous: dict[str, str] = {}
    if (directory / CONFIG_FILE).is_file():
        try:
            previous = read_generator_meta(directory).get("checksums") or {}
        except (InvalidInputError, CheckpointMismatchError):
            previous = {}  # a broken earlier record: the save replaces it
    after = state_checksums(directory)
    return {
        name: digest
        for name, digest in after.items()
        if name not in before or before[name] != digest or name in previous
    }


def verify_state_files(directory: str | Path, meta: dict[str, Any]) -> None:
    """Check the saved state against the checksums in ``generator.json``; a changed or missing file is named.

    Folders saved before checksums were recorded carry none and are not checked.
    """
    directory = Path(directory)
    recorded = meta.get("checksums")
    if recorded is None:
        return
    if not isinstance(recorded, dict):
        raise CorruptFileError(
            "the checksums in generator.json are not a mapping", path=directory / CONFIG_FILE, fix="re-fit and save"
        )
    for name, expected in sorted(recorded.items()):
        path = directory / name
        if not path.is_file():
            raise CorruptFileError(
                "a file of the saved generator is missing",
                path=path,
                fix="restore it, or re-fit and save the generator",
            )
        if _sha256(path) != expected:
            raise CorruptFileError(
                "the file's checksum differs from the one saved in generator.json: it was changed or damaged after saving",
                path=path,
                fix="restore it from a backup, or re-fit and save the generator",
            )

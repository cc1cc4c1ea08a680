"""Crash-safe file writes: a cache file is either absent or complete, never half-written.

Every file goes through ``atomic_write_bytes``: the bytes land in a hidden temp file in the
target folder, are fsynced, then ``os.replace``d over the final name and the folder entry is
fsynced. A run killed at any instant therefore leaves at most a temp file (``is_temp_file``,
removed on resume), never a truncated image. Disk-full and permission errors become
``InvalidInputError`` naming the folder and the fix.
"""

from __future__ import annotations

import errno
import hashlib
import os
import tempfile
from collections.abc import Iterable
from pathlib import Path

from anomaly_synth_aug.errors import InvalidInputError

TEMP_PREFIX = ".tmp-"
TEMP_SUFFIX = ".part"

#: ``mkstemp`` creates owner-only files; cache files get the usual ``0o666 & ~umask`` so other tools can read them.
_UMASK = os.umask(0)
os.umask(_UMASK)
FILE_MODE = 0o666 & ~_UMASK

_DISK_FULL = {errno.ENOSPC, errno.EDQUOT}
_NOT_WRITABLE = {errno.EACCES, errno.EPERM, errno.EROFS}


def storage_error(exc: OSError, folder: Path) -> InvalidInputError | None:
    """A clear error for the storage failures a user can fix (disk full, not writable), else None."""
    if exc.errno in _DISK_FULL:
        return InvalidInputError(
            f"disk full while writing the sample cache ({exc.strerror})",
            path=folder,
            fix="free space on that disk or set cache_dir to a folder on a larger disk; "
            "generation resumes where it stopped",
        )
    if exc.errno in _NOT_WRITABLE:
        return InvalidInputError(
            f"the sample cache folder is not writable ({exc.strerror})",
            path=folder,
            fix="make the folder writable (e.g. chmod u+w) or set cache_dir to a writable folder",
        )
    return None


def raise_storage_error(exc: OSError, folder: Path) -> None:
    """Re-raise ``exc`` as a clear ``InvalidInputError`` when it is a storage failure the user can fix."""
    error = storage_error(exc, folder)
    if error is not None:
        raise error from exc


def is_temp_file(path: Path) -> bool:
    """Whether ``path`` is a leftover temp file of an interrupted ``atomic_write_bytes``."""
    return path.name.startswith(TEMP_PREFIX) and path.name.endswith(TEMP_SUFFIX)


def fsync_dir(folder: Path) -> None:
    """Make renames and new entries in ``folder`` durable (no-op where folders cannot be opened)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # e.g. Windows: directory handles cannot be fsynced
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so that ``path`` is either the old file or the complete new one."""
    tmp: str | None = None
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
        with os.fdopen(fd, "wb") as handle:
            os.chmod(tmp, FILE_MODE)
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        tmp = None
        fsync_dir(path.parent)
    except OSError as exc:
        raise_storage_error(exc, path.parent)
        raise
    finally:
        if tmp is not None:
            Path(tmp).unlink(missing_ok=True)


def check_writable(folder: Path) -> None:
    """Create ``folder`` if needed and prove it accepts files, so a bad ``cache_dir`` fails before any work."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(dir=folder, prefix=TEMP_PREFIX, suffix=TEMP_SUFFIX)
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise_storage_error(exc, folder)
        raise InvalidInputError(
            f"cannot create or write the sample cache folder ({exc.__class__.__name__}: {exc})",
            path=folder,
            fix="set cache_dir to a folder path you can write to (no file may sit where a folder is needed)",
        ) from exc


def append_lines_durably(path: Path, lines: Iterable[str]) -> None:
    """Append text lines and fsync; a crash can at worst leave a torn last line (see ``manifest``)."""
    text = "".join(line.rstrip("\n") + "\n" for line in lines)
    if not text:
        return
    try:
        with path.open("a", encoding="utf-8") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as exc:
        raise_storage_error(exc, path.parent)
        raise


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: Path) -> str:
    with path.open("rb") as handle:
        return hashlib.file_digest(handle, "sha256").hexdigest()

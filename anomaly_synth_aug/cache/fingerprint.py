"""Hashes that say whether a cache still matches what it was generated from.

A cache is reused only when the generator, the run configuration and the source data are
unchanged; each is reduced to a sha256 stored in ``cache.json``.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from anomaly_synth_aug.errors import InvalidInputError


def canonical_json(value: Any) -> str:
    """Stable JSON (sorted keys, no spaces); non-JSON values (paths, enums) are written as ``str``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def config_fingerprint(config: Mapping[str, Any]) -> str:
    """sha256 of the run configuration that shaped the samples."""
    return hashlib.sha256(canonical_json(dict(config)).encode()).hexdigest()


def data_fingerprint(source_paths: Iterable[str | Path]) -> str:
    """sha256 of the sorted source images' resolved paths, sizes and modification times.

    Size and mtime (not content) keep this cheap on large datasets while still noticing a
    replaced or re-exported image.
    """
    digest = hashlib.sha256()
    for path in sorted(str(Path(p).resolve()) for p in source_paths):
        try:
            stat = os.stat(path)
        except FileNotFoundError as exc:
            raise InvalidInputError(
                "source normal image not found", path=path, fix="check the training data folder"
            ) from exc
        digest.update(canonical_json([path, stat.st_size, stat.st_mtime_ns]).encode())
        digest.update(b"\n")
    return digest.hexdigest()

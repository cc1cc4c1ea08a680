"""The one fingerprint scheme: what a fit or a sample cache was made from, reduced to sha256 hashes.

A fitted generator (``FitStore``) and a sample cache are reused only when what made them is
unchanged. Both hash their configuration with ``config_fingerprint`` and their data with
``files_fingerprint``: file *contents* and names, not paths or modification times, so a dataset
moved to another disk keeps its fits and caches, and an edited mask invalidates them. A results file
records its whole dataset with ``tree_fingerprint`` (paths below the dataset's root, and contents).

Example:
    >>> files_fingerprint(["train/good/000.png", "train/good/001.png"])
    >>> config_fingerprint({"seed": 0, "mask_threshold": 127})
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from anomaly_synth_aug.errors import InvalidInputError

if TYPE_CHECKING:
    import torch


def canonical_json(value: Any) -> str:
    """Stable JSON (sorted keys, no spaces); non-JSON values (paths, enums) are written as ``str``."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def config_fingerprint(config: Mapping[str, Any]) -> str:
    """sha256 of a configuration mapping (key order does not matter)."""
    return hashlib.sha256(canonical_json(dict(config)).encode()).hexdigest()


def file_digest(path: str | Path) -> str:
    """sha256 of one file's contents; a missing file is an error that names it."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            return hashlib.file_digest(handle, "sha256").hexdigest()
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise InvalidInputError("a source file is missing", path=path, fix="check the data folder") from exc


def files_fingerprint(paths: Iterable[str | Path], *, ordered: bool = False) -> str:
    """sha256 of the files' names and contents.

    Args:
        paths: the files.
        ordered: the order matters (a fit that uses its normals in this order); otherwise the files
            are taken sorted by name, so a listing in another order gives the same fingerprint.
    """
    items = [Path(p) for p in paths]
    if not ordered:
        items = sorted(items, key=lambda p: (p.name, str(p)))
    return _listing_digest((path.name, path) for path in items)


def tree_fingerprint(root: str | Path, paths: Iterable[str | Path]) -> str:
    """sha256 of the files' paths below ``root`` and their contents: which file lies where in a dataset (a normal
    moved from test to train changes it), but not where the dataset itself lies."""
    root = Path(root)
    return _listing_digest(sorted((Path(p).relative_to(root).as_posix(), Path(p)) for p in paths))


def _listing_digest(listing: Iterable[tuple[str, Path]]) -> str:
    """sha256 of (key, file contents) lines, in the given order: the two file fingerprints differ only in the key."""
    digest = hashlib.sha256()
    for key, path in listing:
        digest.update(canonical_json([key, file_digest(path)]).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def update_with_tensors(digest: Any, tensors: Mapping[str, torch.Tensor], *, as_float: bool = False) -> None:
    """Feed each tensor's name and bytes, in name order, to a ``hashlib`` object: a fitted state's fingerprint.

    ``as_float``: hash float32 copies (half-precision weights then hash as the fp32 copies they were trained as).
    """
    for name in sorted(tensors):
        tensor = tensors[name].detach()
        tensor = tensor.float() if as_float else tensor
        digest.update(name.encode())
        digest.update(tensor.cpu().contiguous().numpy().tobytes())


__all__ = [
    "canonical_json",
    "config_fingerprint",
    "file_digest",
    "files_fingerprint",
    "tree_fingerprint",
    "update_with_tensors",
]

"""Where each file of a sample cache lives, and the guard that keeps manifest names inside it.

The layout is MVTec-style so other tools can read a cache without this package::

    <cache>/cache.json                          header: what the samples were generated from
    <cache>/manifest.jsonl                      one committed sample per line
    <cache>/images/<defect_type>/<n>.png        generated image (RGB, 8 bit)
    <cache>/ground_truth/<defect_type>/<n>_mask.png   its mask (0 / 255, 8 bit)
    <cache>/shards/rank-<r>.jsonl               per-rank records not merged yet (interrupted runs)

Manifest names are data read from disk, so ``CacheLayout.resolve`` refuses any that could
reach outside the cache: absolute paths, ``..`` and symlinks pointing elsewhere.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path, PurePosixPath, PureWindowsPath

from anomaly_synth_aug.errors import InvalidInputError

HEADER_FILE = "cache.json"
MANIFEST_FILE = "manifest.jsonl"
IMAGES_DIR = "images"
MASKS_DIR = "ground_truth"
SHARDS_DIR = "shards"

_SAFE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")


class UnsafeCachePathError(InvalidInputError):
    """A manifest names a file outside the cache folder (absolute path, ``..`` or an outward symlink)."""


def check_defect_type_name(name: str) -> str:
    """Defect types become folder names, so they must be plain names (no separators, no ``..``)."""
    if not _SAFE_NAME.match(name) or name.endswith((".", ".tmp")):
        raise InvalidInputError(
            f"defect type {name!r} cannot be used as a cache folder name",
            fix="name defect types with letters, digits, '.', '_' or '-' (starting with a letter or digit)",
        )
    return name


@dataclass(frozen=True)
class CacheLayout:
    """Paths inside one cache folder."""

    root: Path

    @property
    def header(self) -> Path:
        return self.root / HEADER_FILE

    @property
    def manifest(self) -> Path:
        return self.root / MANIFEST_FILE

    @property
    def shards_dir(self) -> Path:
        return self.root / SHARDS_DIR

    def shard(self, rank: int) -> Path:
        return self.shards_dir / f"rank-{rank}.jsonl"

    @staticmethod
    def sample_id(defect_type: str, index: int) -> str:
        """Globally unique id of the ``index``-th sample of ``defect_type``: ``"<type>/<index:06d>"``."""
        return f"{defect_type}/{index:06d}"

    @staticmethod
    def image_name(sample_id: str) -> str:
        return f"{IMAGES_DIR}/{sample_id}.png"

    @staticmethod
    def mask_name(sample_id: str) -> str:
        return f"{MASKS_DIR}/{sample_id}_mask.png"

    def resolve(self, relative: str) -> Path:
        """The file a manifest name points to, refusing any name that leaves the cache folder."""
        posix, windows = PurePosixPath(relative), PureWindowsPath(relative)
        if not relative or posix.is_absolute() or windows.is_absolute() or windows.drive or "\\" in relative:
            raise UnsafeCachePathError(
                f"manifest names an absolute or empty path {relative!r}",
                path=self.manifest,
                fix="manifest names must be relative to the cache folder; regenerate the cache",
            )
        if ".." in posix.parts:
            raise UnsafeCachePathError(
                f"manifest name {relative!r} climbs out of the cache with '..'",
                path=self.manifest,
                fix="manifest names must stay inside the cache folder; regenerate the cache",
            )
        target = (self.root / posix).resolve()
        if not target.is_relative_to(self.root.resolve()):
            raise UnsafeCachePathError(
                f"manifest name {relative!r} leads outside the cache (to {target}) through a symlink",
                path=self.root,
                fix="replace the symlink by the real file, or regenerate the cache",
            )
        return target

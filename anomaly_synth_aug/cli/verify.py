"""``anomaly-synth-aug verify``: check a sample cache against its manifest."""

from __future__ import annotations

from pathlib import Path

from anomaly_synth_aug.cache import verify


def verify_cache(cache_dir: Path, check_hashes: bool = True) -> int:
    """Check every file of a sample cache against its manifest; exit status 1 when anything is wrong.

    Args:
        cache_dir: the cache folder (holding cache.json and manifest.jsonl).
        check_hashes: compare each file's sha256 with the manifest (reads every file).
    """
    report = verify(cache_dir, check_hashes=check_hashes)
    print(report)
    return 0 if report.ok else 1

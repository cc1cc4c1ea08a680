"""On-disk cache of generated samples: MVTec-style files, a checksummed manifest, crash-safe resume.

``generate_cache`` fills a cache with Lightning (``Trainer.predict``, any number of devices);
``verify`` checks one (also ``python -m anomaly_synth_aug.cache.integrity <dir>``); ``SampleCache``
owns every change to a cache folder. Names are imported lazily (PEP 562) so that checking a
cache does not import Lightning.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    "CacheHeader": "anomaly_synth_aug.cache.manifest",
    "CacheLayout": "anomaly_synth_aug.cache.layout",
    "ManifestEntry": "anomaly_synth_aug.cache.manifest",
    "SampleCache": "anomaly_synth_aug.cache.store",
    "UnsafeCachePathError": "anomaly_synth_aug.cache.layout",
    "VerifyReport": "anomaly_synth_aug.cache.integrity",
    "generate_cache": "anomaly_synth_aug.cache.generation",
    "verify": "anomaly_synth_aug.cache.integrity",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'anomaly_synth_aug.cache' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:
    from anomaly_synth_aug.cache.generation import generate_cache
    from anomaly_synth_aug.cache.integrity import VerifyReport, verify
    from anomaly_synth_aug.cache.layout import CacheLayout, UnsafeCachePathError
    from anomaly_synth_aug.cache.manifest import CacheHeader, ManifestEntry
    from anomaly_synth_aug.cache.store import SampleCache

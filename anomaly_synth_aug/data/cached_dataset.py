"""Training from a sample cache: normals of the wrapped train set, a share swapped for cached anomalies.

``CachedAnomalyDataset`` is the cached twin of ``SyntheticAnomalyDataset``: the same seeded
per-epoch choice of which items become anomalous (so online and cached runs with one seed pick
the same items), the same loading and augmentation path, the same ``ImageItem``s; only the
defect comes from disk instead of the generator. A swapped item takes a cached sample made from
its own normal when the cache has one, else any cached sample, chosen afresh each epoch.
``build_cached_train_dataset`` generates the cache when needed and returns the dataset.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from torchvision.transforms.v2 import Transform

from anomaly_synth_aug.cache.generation import generate_cache
from anomaly_synth_aug.cache.layout import CacheLayout
from anomaly_synth_aug.cache.manifest import ManifestEntry
from anomaly_synth_aug.data.dataset import SyntheticAnomalyDataset
from anomaly_synth_aug.data.io import MASK_THRESHOLD, load_sample
from anomaly_synth_aug.data.sample import ANOMALOUS_LABEL, AnomalySample
from anomaly_synth_aug.errors import InvalidInputError

if TYPE_CHECKING:
    from anomalib.data.datasets.base.image import AnomalibDataset

    from anomaly_synth_aug.generators.base import AnomalyGenerator


class CachedAnomalyDataset(SyntheticAnomalyDataset):
    """Training normals of which a share ``anomaly_ratio`` are replaced by cached synthetic anomalies.

    Args:
        dataset: the wrapped anomalib training set (its normals are the cache's sources).
        generator: the generator that filled the cache (kept for provenance, never called here).
        cache_dir: the cache folder ``entries`` belong to.
        entries: the cache's samples, from ``generate_cache`` or ``SampleCache.load``.
        anomaly_ratio, seed, augmentations, mask_threshold: as for ``SyntheticAnomalyDataset``.
    """

    #: Separates the "which cached sample" draw from the "is this item anomalous" draw.
    pick_stream: ClassVar[int] = 7

    def __init__(
        self,
        dataset: AnomalibDataset,
        generator: AnomalyGenerator,
        cache_dir: str | Path,
        entries: Sequence[ManifestEntry],
        *,
        anomaly_ratio: float = 0.5,
        seed: int = 0,
        augmentations: Transform | None = None,
        mask_threshold: int = MASK_THRESHOLD,
    ) -> None:
        super().__init__(
            dataset,
            generator,
            anomaly_ratio=anomaly_ratio,
            seed=seed,
            augmentations=augmentations,
            mask_threshold=mask_threshold,
        )
        if not entries:
            raise InvalidInputError(
                "the sample cache holds no samples", path=cache_dir, fix="generate the cache with samples_per_type >= 1"
            )
        self.layout = CacheLayout(Path(cache_dir))
        self.entries = list(entries)
        by_source: dict[str, list[int]] = defaultdict(list)
        for position, entry in enumerate(self.entries):
            by_source[entry.source].append(position)
        self._by_source = dict(by_source)
        #: A moved dataset still matches its cache (the header knows its files by name and contents), so a
        #: normal whose path is not the recorded one finds its samples by file name, where only one source has it.
        sources_by_name: dict[str, list[str]] = defaultdict(list)
        for source in self._by_source:
            sources_by_name[Path(source).name].append(source)
        self._by_name = {name: self._by_source[found[0]] for name, found in sources_by_name.items() if len(found) == 1}

    def cached_sample(self, index: int) -> AnomalySample:
        """The cached anomaly that stands in for item ``index`` this epoch: one made from its own normal."""
        source = Path(self.samples.iloc[index].image_path).resolve()
        candidates = (
            self._by_source.get(str(source)) or self._by_name.get(source.name) or range(len(self.entries))
        )
        rng = np.random.default_rng([self.seed, self.stream, self.epoch, int(index), self.pick_stream])
        entry = self.entries[candidates[int(rng.integers(len(candidates)))]]
        return load_sample(
            self.layout.resolve(entry.image),
            self.layout.resolve(entry.mask),
            entry.defect_type,
            threshold=self.mask_threshold,
            require_defect=True,
        )

    def _samples_with_anomalies(self, indices: list[int]) -> list[AnomalySample]:
        return [self.cached_sample(index) if self.is_synthetic(index) else self.read_sample(index) for index in indices]


def normal_source_paths(dataset: AnomalibDataset) -> list[str]:
    """Image paths of the dataset's normal rows: what the cache puts defects on."""
    samples = dataset.samples
    return sorted(str(path) for path in samples.loc[samples.label_index != ANOMALOUS_LABEL, "image_path"])


def build_cached_train_dataset(
    train_dataset: AnomalibDataset,
    generator: AnomalyGenerator,
    cache_dir: str | Path,
    *,
    samples_per_type: int,
    anomaly_ratio: float,
    seed: int,
    config: Mapping[str, Any] | None = None,
    trainer_kwargs: Mapping[str, Any] | None = None,
    batch_size: int = 4,
    num_workers: int = 0,
    mask_threshold: int = MASK_THRESHOLD,
) -> CachedAnomalyDataset:
    """Fill (or reuse, or resume) the cache from ``train_dataset``'s normals and train from it.

    The data fingerprint is computed from the normals' names and contents; ``config`` is anything else
    that shaped the samples (none for the datamodule: the generator's fingerprint and the data say it
    all, so a cache made by ``anomaly-synth-aug generate`` is reused). See ``generate_cache`` for the rest.
    """
    entries = generate_cache(
        cache_dir,
        generator,
        normal_source_paths(train_dataset),
        samples_per_type=samples_per_type,
        seed=seed,
        config=config,
        batch_size=batch_size,
        num_workers=num_workers,
        trainer_kwargs=trainer_kwargs,
    )
    return CachedAnomalyDataset(
        train_dataset,
        generator,
        cache_dir,
        entries,
        anomaly_ratio=anomaly_ratio,
        seed=seed,
        mask_threshold=mask_threshold,
    )

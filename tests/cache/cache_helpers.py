"""Helpers for the cache tests (importable by the subprocess script too): a fake generator, a direct fill."""

from __future__ import annotations

import time
from pathlib import Path

import torch

from anomaly_synth_aug.cache.generation import make_header
from anomaly_synth_aug.cache.jobs import plan_jobs
from anomaly_synth_aug.cache.manifest import CacheHeader
from anomaly_synth_aug.cache.store import SampleCache
from anomaly_synth_aug.data.io import load_image
from anomaly_synth_aug.generators.base import AnomalyGenerator, GeneratedBatch
from anomaly_synth_aug.utils.random import make_generator


class TwoTypeGenerator(AnomalyGenerator):
    """Paints a seeded rectangle: dark for ``dent``, bright for ``spot``.

    ``delay`` (seconds per sample) and ``fail_after`` (raise after that many samples) are test
    knobs set after construction, so they do not change the fingerprint: a run that failed and
    the run that resumes it share one cache.
    """

    delay: float = 0.0
    fail_after: int | None = None

    def __init__(self, size: int = 8) -> None:
        super().__init__()
        self.size = size
        self.generated = 0

    @property
    def defect_types(self) -> list[str]:
        return ["dent", "spot"]

    def _generate(
        self,
        images: list[torch.Tensor],
        masks: list[torch.Tensor | None],
        defect_types: list[str | None],
        generator: torch.Generator | None,
    ) -> GeneratedBatch:
        out_images, out_masks, out_types = [], [], []
        for image, defect_type in zip(images, defect_types, strict=True):
            if self.fail_after is not None and self.generated >= self.fail_after:
                raise RuntimeError(f"TwoTypeGenerator: planned failure after {self.fail_after} samples")
            time.sleep(self.delay)
            defect_type = defect_type or "dent"
            height, width = image.shape[-2:]
            top = int(torch.randint(0, height - self.size + 1, (1,), generator=generator))
            left = int(torch.randint(0, width - self.size + 1, (1,), generator=generator))
            value = float(torch.rand((), generator=generator)) * 0.2 + (0.0 if defect_type == "dent" else 0.8)
            mask = torch.zeros(height, width, dtype=torch.bool)
            mask[top : top + self.size, left : left + self.size] = True
            out_images.append(torch.where(mask, torch.full_like(image, value), image))
            out_masks.append(mask)
            out_types.append(defect_type)
            self.generated += 1
        return GeneratedBatch(out_images, out_masks, out_types)


def train_normals(mvtec_root: Path) -> list[Path]:
    """The source normals of a ``make_mvtec_layout`` dataset."""
    return sorted((mvtec_root / "train" / "good").glob("*.png"))


def header_for(generator: AnomalyGenerator, sources: list[Path], samples_per_type: int = 3) -> CacheHeader:
    """The header ``generate_cache`` would write for ``generator`` with seed 0 and no extra config."""
    return make_header(
        generator, sources, samples_per_type=samples_per_type, seed=0, defect_types=generator.defect_types
    )


def fill_cache(cache: SampleCache, generator: AnomalyGenerator, header: CacheHeader, sources: list[Path]) -> None:
    """Fill ``cache`` in-process the way ``CacheWriter`` does, without a Trainer (fast)."""
    cache.prepare(header)
    for job in cache.pending(plan_jobs(sources, header.defect_types, header.samples_per_type, header.seed)):
        image = load_image(job.source)
        out = generator.generate([image], defect_types=[job.defect_type], generator=make_generator(job.seed))
        cache.write_sample(job, out.images[0], out.masks[0], header.generator_fingerprint, rank=0)
    cache.commit()

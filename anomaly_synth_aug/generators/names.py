"""The generators this package ships, by class name and module: resolved by name, imported on demand.

``AnomalyGenerator.load`` and ``resolve_generator`` find a packaged class by its name without the
caller importing its module first (the diffusion generator's module is heavy and loaded lazily).
The package's public names (``anomaly_synth_aug.__all__``) list the same classes; a test keeps the
two in step.

Example:
    >>> PACKAGED_GENERATORS["PerlinGenerator"]
    'anomaly_synth_aug.generators.perlin'
"""

from __future__ import annotations

PACKAGED_GENERATORS: dict[str, str] = {
    "PerlinGenerator": "anomaly_synth_aug.generators.perlin",
    "CutPasteGenerator": "anomaly_synth_aug.generators.cutpaste",
    "PoissonBlendGenerator": "anomaly_synth_aug.generators.poisson",
    "RealShotPasteGenerator": "anomaly_synth_aug.generators.real_paste",
    "MixtureGenerator": "anomaly_synth_aug.generators.mixture",
    "DiffusionAnomalyGenerator": "anomaly_synth_aug.generators.diffusion.generator",
    "StableDiffusionInpaintGenerator": "anomaly_synth_aug.generators.diffusion.pretrained",
}

__all__ = ["PACKAGED_GENERATORS"]

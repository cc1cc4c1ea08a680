"""Anomaly generators behind one interface (classic baselines and the diffusion generator)."""

from anomaly_synth_aug.generators.base import AnomalyGenerator, GeneratedBatch
from anomaly_synth_aug.generators.classic import ClassicGenerator
from anomaly_synth_aug.generators.cutpaste import CutPasteGenerator
from anomaly_synth_aug.generators.perlin import PerlinGenerator
from anomaly_synth_aug.generators.poisson import PoissonBlendGenerator
from anomaly_synth_aug.generators.mixture import MixtureGenerator
from anomaly_synth_aug.generators.real_paste import RealShotPasteGenerator

__all__ = [
    "AnomalyGenerator",
    "ClassicGenerator",
    "CutPasteGenerator",
    "GeneratedBatch",
    "MixtureGenerator",
    "PerlinGenerator",
    "PoissonBlendGenerator",
    "RealShotPasteGenerator",
]

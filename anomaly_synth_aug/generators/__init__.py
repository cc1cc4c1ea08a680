"""Anomaly generators behind one interface (classic baselines and the diffusion generator)."""

from anomaly_synth_aug.generators.base import AnomalyGenerator, GeneratedBatch

__all__ = ["AnomalyGenerator", "GeneratedBatch"]

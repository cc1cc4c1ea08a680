"""Diffusion defect generator: learned appearance (what) plus learned and shot masks (where)."""

from anomaly_synth_aug.generators.diffusion.generator import DiffusionAnomalyGenerator

__all__ = ["DiffusionAnomalyGenerator"]

"""Rendering helpers for generated samples (grids with mask overlays)."""

from anomaly_synth_aug.visualization.figures import save_figure
from anomaly_synth_aug.visualization.grid import overlay_mask, render_sample_grid, save_grid

__all__ = ["overlay_mask", "render_sample_grid", "save_figure", "save_grid"]

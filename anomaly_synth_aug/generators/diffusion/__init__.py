"""Diffusion defect generator: learned appearance (what) plus learned and shot masks (where)."""

"""``save_figure``: every matplotlib picture the package writes goes to disk the same way.

Parent folders are created, and the figure is closed after writing, so that a benchmark drawing a
chart after every run does not keep every figure it ever drew in memory.

Example:
    >>> save_figure(figure, "results/downstream_full_sources.png", dpi=110)
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def save_figure(figure: Figure, path: str | Path, *, dpi: int = 120) -> Path:
    """Write ``figure`` as a PNG at ``path`` (parent folders created) and close it."""
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=dpi)
    plt.close(figure)
    return path


__all__ = ["save_figure"]

"""A labelled sheet per defect type: real shots beside generated defects, each with its mask.

A bare grid leaves the reader guessing which row is which type, which column is the overlay and
what the real defect looked like. Here every row is one defect type, named on the left; the
columns are titled (real shot, its mask, generated, generated with mask), so generated defects
are judged against the real ones they were learned from.

Example:
    >>> rows = [TypeRow("crack", shots=[(img, mask)], generated=[(gen, gen_mask), ...])]
    >>> save_type_sheet(rows, "results/demo/samples.png", title="diffusion defects on brick")
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.visualization.figures import save_figure
from anomaly_synth_aug.visualization.grid import overlay_mask

Pair = tuple[torch.Tensor, torch.Tensor]  # image [3, H, W] in [0, 1], bool mask [H, W]


@dataclass
class TypeRow:
    """One defect type: a few real shots and a few generated samples, each an (image, mask) pair."""

    defect_type: str
    shots: list[Pair] = field(default_factory=list)
    generated: list[Pair] = field(default_factory=list)


def save_type_sheet(
    rows: Sequence[TypeRow],
    path: str | Path,
    *,
    title: str = "",
    shots_per_row: int = 2,
    generated_per_row: int = 3,
    tile_inches: float = 1.6,
) -> Path:
    """Write the sheet as PNG: per row, ``shots_per_row`` real shots then ``generated_per_row`` samples.

    Each sample takes two tiles (plain, then with its mask in red), so a defect is seen unhidden.
    """
    if not rows:
        raise InvalidInputError("no defect types to draw", fix="pass at least one TypeRow")
    # no empty columns: as many as the fullest row needs, up to the limits
    shots_per_row = max(1, min(shots_per_row, max(len(row.shots) for row in rows)))
    generated_per_row = max(1, min(generated_per_row, max(len(row.generated) for row in rows)))
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    columns = 2 * (shots_per_row + generated_per_row)
    figure, axes = plt.subplots(
        len(rows), columns, figsize=(tile_inches * columns, tile_inches * len(rows) + 0.6), squeeze=False
    )
    headers = [*(["real shot", "+ mask"] * shots_per_row), *(["generated", "+ mask"] * generated_per_row)]
    for row_index, row in enumerate(rows):
        cells = [*_padded(row.shots, shots_per_row), *_padded(row.generated, generated_per_row)]
        for pair_index, pair in enumerate(cells):
            for offset, with_mask in enumerate((False, True)):
                axis = axes[row_index][2 * pair_index + offset]
                axis.set_xticks([])
                axis.set_yticks([])
                for spine in axis.spines.values():
                    spine.set_visible(False)
                if pair is not None:
                    image, mask = pair
                    shown = (
                        overlay_mask(image, mask) if with_mask else (image.clamp(0, 1) * 255).round().to(torch.uint8)
                    )
                    axis.imshow(shown.permute(1, 2, 0).cpu().numpy())
                if row_index == 0:
                    axis.set_title(headers[2 * pair_index + offset], fontsize=8)
        axes[row_index][0].set_ylabel(row.defect_type, fontsize=9, rotation=0, ha="right", va="center")
    if title:
        figure.suptitle(title, fontsize=10)
    figure.tight_layout()
    return save_figure(figure, path, dpi=110)


def _padded(pairs: list[Pair], count: int) -> list[Pair | None]:
    return [*pairs[:count], *([None] * max(0, count - len(pairs)))]

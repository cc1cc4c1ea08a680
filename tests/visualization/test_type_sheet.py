"""The labelled per-type sheet: rows named by type, real shots beside generated defects."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from PIL import Image

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.visualization.type_sheet import TypeRow, save_type_sheet


def _pair(value: float) -> tuple[torch.Tensor, torch.Tensor]:
    mask = torch.zeros(16, 16, dtype=torch.bool)
    mask[4:9, 4:9] = True
    return torch.full((3, 16, 16), value), mask


def test_one_row_per_type_with_missing_cells_left_blank(tmp_path: Path) -> None:
    rows = [TypeRow("crack", shots=[_pair(0.2)], generated=[_pair(0.5)] * 3), TypeRow("hole", generated=[_pair(0.8)])]
    path = save_type_sheet(rows, tmp_path / "sheet.png", title="demo")
    width, height = Image.open(path).size
    assert width > 2 * height  # 10 tiles per row, 2 rows
    with pytest.raises(InvalidInputError, match="no defect types"):
        save_type_sheet([], tmp_path / "empty.png")

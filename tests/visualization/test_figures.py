"""``save_figure``: one way to write a matplotlib picture (folders made, figure closed)."""

from pathlib import Path

import pytest


def test_a_figure_is_written_into_new_folders_and_closed(tmp_path: Path) -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from anomaly_synth_aug.visualization import save_figure

    figure, axis = plt.subplots()
    axis.plot([0, 1], [1, 0])
    path = save_figure(figure, tmp_path / "a" / "b" / "chart.png", dpi=50)
    assert path == tmp_path / "a" / "b" / "chart.png" and path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert not plt.fignum_exists(figure.number)  # closed: a benchmark drawing after every run keeps none

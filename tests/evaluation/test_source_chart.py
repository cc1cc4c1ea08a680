"""The source chart: one bar per measured recipe, a dot per seed, pale below the seed count, the anchor as a line."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from anomaly_synth_aug.evaluation.source_chart import plot_sources, source_recipes, sources_figure

DETECTOR = "segmenter_prior"
ANCHORS = [("padim_native", "real_paste"), ("patchcore_native", "real_paste")]


def _runs(generator: str, image: float, pixel: float, seeds: int = 3, detector: str = DETECTOR) -> list[dict[str, Any]]:
    return [
        {
            "detector": detector,
            "generator": generator,
            "seed": seed,
            "metrics": {"image_AUROC": image + 0.01 * seed, "pixel_AUPR": pixel - 0.01 * seed},
        }
        for seed in range(seeds)
    ]


RUNS = [
    *_runs("diffusion_with_shots", 0.92, 0.40),
    *_runs("shots_only", 0.90, 0.60),
    *_runs("diffusion_visible_with_shots", 0.91, 0.50),
    *_runs("perlin_with_shots", 0.93, 0.55, seeds=1),
    *_runs("segmenter_only_row", 0.5, 0.1),  # not a recipe of any family: left out
    *_runs("real_paste", 0.95, 0.20, detector="padim_native"),
    *_runs("real_paste", 0.97, 0.30, detector="patchcore_native", seeds=2),  # too few seeds to be the anchor
]


def test_recipes_follow_the_families_and_mark_optional_settings() -> None:
    assert source_recipes(RUNS, DETECTOR) == [
        ("shots_only", "shots_only", False),
        ("perlin", "perlin_with_shots", False),
        ("diffusion", "diffusion_with_shots", False),
        ("diffusion", "diffusion_visible_with_shots", True),
    ]


def test_bars_are_means_dots_are_seeds_and_the_anchor_has_enough_seeds() -> None:
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure = sources_figure(RUNS, DETECTOR, anchors=ANCHORS)
    assert figure is not None
    pixel, image = figure.axes
    heights = [patch.get_height() for patch in pixel.patches]
    assert heights == pytest.approx([0.59, 0.55, 0.39, 0.49])  # means over seeds, in family order
    alphas = [patch.get_facecolor()[3] for patch in pixel.patches]
    assert alphas[1] < alphas[0]  # one seed of perlin: pale
    assert pixel.patches[3].get_hatch() == "//" and pixel.patches[2].get_hatch() is None
    dots = sum(len(collection.get_offsets()) for collection in pixel.collections)
    assert dots == 3 + 1 + 3 + 3
    (line,) = [line for line in image.get_lines() if line.get_linestyle() == "--"]
    assert line.get_ydata()[0] == pytest.approx(0.96)  # padim_native's mean; patchcore_native has 2 seeds only
    assert "padim_native" in image.get_legend().get_texts()[0].get_text()
    assert (pixel.get_ylabel(), image.get_ylabel()) == ("pixel AP", "image AUROC")  # not the anchor's legend
    plt.close(figure)


def test_a_pale_recipe_that_is_not_judged_still_shows_its_hatch() -> None:
    """At the pale bar's transparency a white hatch vanished: a one-seed unjudged row looked judged."""
    matplotlib = pytest.importorskip("matplotlib")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgba

    runs = [*_runs("shots_only", 0.90, 0.60), *_runs("diffusion_visible_with_shots", 0.91, 0.50, seeds=1)]
    figure = sources_figure(runs, DETECTOR)
    assert figure is not None
    judged, pale_unjudged = figure.axes[0].patches
    assert pale_unjudged.get_facecolor()[3] < judged.get_facecolor()[3]  # one seed: pale
    assert pale_unjudged.get_hatch() == "//"
    hatch = pale_unjudged.get_edgecolor()
    assert hatch[3] == 1.0 and hatch != to_rgba("white")  # drawn opaque, in a colour that shows on a pale bar
    plt.close(figure)


def test_nothing_is_written_without_a_recipe(tmp_path: Path) -> None:
    pytest.importorskip("matplotlib")
    assert plot_sources(_runs("real_paste", 0.9, 0.2, detector="padim_native"), tmp_path / "x.png", DETECTOR) is None
    assert not (tmp_path / "x.png").exists()
    written = plot_sources(RUNS, tmp_path / "chart.png", DETECTOR, anchors=ANCHORS)
    assert written == tmp_path / "chart.png" and written.stat().st_size > 0


def test_a_recipe_without_image_auroc_still_draws() -> None:
    pytest.importorskip("matplotlib")
    import matplotlib.pyplot as plt

    runs = [{"detector": DETECTOR, "generator": "shots_only", "seed": 0, "metrics": {"pixel_AUPR": 0.5}}]
    figure = sources_figure(runs, DETECTOR)
    assert figure is not None and [p.get_height() for p in figure.axes[0].patches] == [0.5]
    plt.close(figure)

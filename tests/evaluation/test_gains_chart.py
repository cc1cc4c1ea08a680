"""The gain chart: one scale for every panel, spread only where seeds are paired."""

from __future__ import annotations


def test_gain_chart_panels_share_one_scale_and_draw_no_spread_for_one_seed() -> None:
    import matplotlib.pyplot as plt
    from matplotlib.container import BarContainer

    from anomaly_synth_aug.evaluation.gains_chart import gains_figure

    def run(detector: str, generator: str, seed: int, auroc: float) -> dict:
        return {"generator": generator, "detector": detector, "seed": seed, "metrics": {"image_AUROC": auroc}}

    runs = [
        run("segmenter", "none", 0, 0.60),
        run("segmenter", "none", 1, 0.62),
        run("segmenter", "perlin", 0, 0.80),
        run("segmenter", "perlin", 1, 0.70),
        run("padim", "none", 0, 0.700),
        run("padim", "perlin", 0, 0.697),  # a tiny loss must look tiny next to the segmenter's gain
    ]
    figure = gains_figure(runs, metrics=["image_AUROC"], detector_order=["segmenter", "padim"])
    assert figure is not None
    segmenter, padim = figure.axes
    assert segmenter.get_title() == "segmenter (2 seeds)" and padim.get_title() == "padim (1 seed)"
    assert segmenter.get_shared_y_axes().joined(segmenter, padim)
    assert padim.get_ylim()[1] >= 0.14  # the segmenter's +0.14 sets the common scale
    bars = {axis.get_title(): next(c for c in axis.containers if isinstance(c, BarContainer)) for axis in figure.axes}
    assert bars["segmenter (2 seeds)"].errorbar is not None  # std over 2 paired seeds
    assert bars["padim (1 seed)"].errorbar is None  # one seed has no spread to draw
    plt.close(figure)
    assert gains_figure([run("padim", "perlin", 0, 0.7)]) is None  # no baseline, nothing to compare


def test_a_source_with_no_seed_paired_with_the_baseline_is_left_out_not_drawn_as_no_gain() -> None:
    import matplotlib.pyplot as plt

    from anomaly_synth_aug.evaluation.gains_chart import gains_figure

    runs = [
        {"generator": g, "detector": "segmenter", "seed": s, "metrics": {"image_AUROC": v}}
        for g, s, v in (("none", 0, 0.6), ("perlin", 0, 0.8), ("cutpaste", 1, 0.9))
    ]
    figure = gains_figure(runs, metrics=["image_AUROC"])
    assert figure is not None
    assert [label.get_text() for label in figure.axes[0].get_xticklabels()] == ["perlin"]
    plt.close(figure)

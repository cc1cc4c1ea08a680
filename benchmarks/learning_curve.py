"""Learning curve: is the diffusion generator limited by its training budget or by its design?

For each step budget of the generator's fit, the segmenter is trained on diffusion defects with the
full preset (everything else unchanged) and tested on the held-out real defects, as in
``downstream.py``. Each budget is a preset variant with its own results file, written under
``--out/<dataset>/`` and resumed like the downstream benchmark's; the product's default budget is
the full preset itself, so its runs are shared with the downstream tables. Afterwards:

* ``learning_curve.md``: image AUROC, pixel AP and AUPRO per budget, with the other sources of
  the full results file (the shots, pasted shots, Perlin) as references;
* ``learning_curve.png``: the same as a plot against fit steps.

    python benchmarks/learning_curve.py --data ../shared/data/magnetic_tile            # 250 500 1000 2000 steps
    python benchmarks/learning_curve.py --data ../shared/data/magnetic_tile --steps 250 1000
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import sys
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for remote weights
sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling downstream.py, however it is started

import torch  # noqa: E402
from downstream import PROJECT_ROOT, SHARED_DATA, run_dataset  # noqa: E402

from anomaly_synth_aug.evaluation.downstream import resolve_preset  # noqa: E402
from anomaly_synth_aug.evaluation.learning_curve import (  # noqa: E402
    budget_preset,
    curve_points,
    learning_curve_figure,
    learning_curve_markdown,
    reference_values,
)
from anomaly_synth_aug.evaluation.reporting import ResultsStore  # noqa: E402
from anomaly_synth_aug.utils.imports import import_all_submodules  # noqa: E402
from anomaly_synth_aug.visualization.figures import save_figure  # noqa: E402

logger = logging.getLogger("benchmarks.learning_curve")

DETECTOR = "segmenter"
#: The sources the curve is read against, when the full results file has them.
REFERENCES = ("shots_only", "real_paste", "perlin")


def default_steps() -> int:
    """The diffusion generator's own default budget (the product's, and the full preset's)."""
    from anomaly_synth_aug.generators.diffusion import DiffusionAnomalyGenerator

    return int(inspect.signature(DiffusionAnomalyGenerator).parameters["max_steps"].default)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=SHARED_DATA / "magnetic_tile", help="an MVTec-layout category")
    parser.add_argument("--steps", type=int, nargs="+", default=[250, 500, 1000, 2000], help="fit step budgets")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--preset", default="full", choices=["full", "quick", "smoke"])
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results")
    parser.add_argument("--work-dir", type=Path, default=PROJECT_ROOT / "runs" / "benchmark")
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads (the budgets are for 2 cores)")
    args = parser.parse_args(argv)
    if min(args.steps) < 1:
        parser.error(f"--steps must all be >= 1, got {args.steps}")
    args.no_quality = True  # the curve is about the detector; the quality measures stay in downstream.py
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    import_all_submodules()  # hours of runs: keep the code they started with, even if the tree is edited
    base = resolve_preset(args.preset)
    default = default_steps()
    failures: list[str] = []
    runs_by_steps: dict[int, list[dict]] = {}
    for steps in sorted(set(args.steps)):
        preset = budget_preset(base, steps, default)
        logger.info("%s: diffusion fit of %d steps (preset %s)", args.data.name, steps, preset.name)
        failures += run_dataset(args.data, preset, [("diffusion", DETECTOR)], args.seeds, args, grid_seed=args.seeds[0])
        store = ResultsStore(args.out / args.data.name / f"downstream_{preset.name}.json")
        runs_by_steps[steps] = [r for r in store.runs if r["seed"] in args.seeds]
    main_runs = ResultsStore(args.out / args.data.name / f"downstream_{base.name}.json").runs
    references = reference_values([r for r in main_runs if r["seed"] in args.seeds], DETECTOR, REFERENCES)
    points = curve_points(runs_by_steps, DETECTOR, "diffusion")
    out = args.out / args.data.name
    seeds = " ".join(str(s) for s in args.seeds)
    header = (
        f"# Diffusion learning curve: `{args.data.name}`, preset `{base.name}`, seeds {seeds}\n\n"
        f"Generated by `benchmarks/learning_curve.py`: the {DETECTOR} trained on diffusion defects whose generator "
        f"was fitted for each step budget (the product default is {default}); references in parentheses are the "
        f"other sources of `downstream_{base.name}.json`, same seeds.\n\n"
    )
    (out / "learning_curve.md").write_text(header + learning_curve_markdown(points, references))
    figure = learning_curve_figure(points, references, f"{args.data.name}: {DETECTOR} on diffusion defects")
    if figure is not None:
        save_figure(figure, out / "learning_curve.png")
    logger.info("learning curve in %s", out / "learning_curve.md")
    for failure in failures:
        logger.error("FAILED %s", failure)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())

"""Pick a generator variant on held-back shots, never on test data.

Builds the validation folder of ``anomaly_synth_aug.evaluation.downstream.shot_validation`` (the
category's shots and a share of its train normals, linked), runs ``benchmarks/downstream.py`` on it
with a shot fraction of one half (each candidate fits on half the shots, its detector is scored on
the other half), and applies the rule fixed in that module. Writes, under ``--out/<dataset>/``, the
benchmark's files for the validation runs (resumable like any downstream run), ``layout.json`` (what the
folder holds) and ``choice.md`` / ``choice.json``: every candidate's validation numbers and the pick.

    python benchmarks/shot_validation.py --data ../shared/data/mvtec_screw \\
        --candidates diffusion_with_shots diffusion_no_inversion_with_shots --seeds 0
    python benchmarks/shot_validation.py --data ../shared/data/mvtec_screw --candidates ... --report-only
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # its sibling downstream.py, however it is started

import downstream  # noqa: E402
from downstream import PROJECT_ROOT  # noqa: E402

from anomaly_synth_aug.errors import InvalidInputError  # noqa: E402
from anomaly_synth_aug.evaluation.downstream import GENERATORS, choice_markdown, choose_variant  # noqa: E402
from anomaly_synth_aug.evaluation.downstream.shot_validation import (  # noqa: E402
    CHOICE_FILE,
    CHOICE_REPORT,
    MARKER,
    shot_validation_layout,
    unusable_pick,
)
from anomaly_synth_aug.evaluation.reporting import ResultsStore  # noqa: E402

logger = logging.getLogger("benchmarks.shot_validation")

#: Inside the validation folder: the first half of each type's shots train, the second half validate.
VALIDATION_SHOT_FRACTION = 0.5
#: The validation folder's description, kept with the results (the folder itself lives under the work dir).
LAYOUT_FILE = "layout.json"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, required=True, help="an MVTec-layout category folder")
    parser.add_argument(
        "--candidates",
        nargs="+",
        required=True,
        choices=list(GENERATORS),
        help="the default first, then the variants that may replace it",
    )
    parser.add_argument("--detector", default="segmenter_prior", help="the detector the variants are judged on")
    parser.add_argument("--seeds", nargs="+", type=int, default=[0])
    parser.add_argument("--preset", choices=["full", "quick", "smoke"], default="full")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results" / "shot_validation")
    parser.add_argument("--work-dir", type=Path, default=PROJECT_ROOT / "runs" / "shot_validation")
    parser.add_argument("--report-only", action="store_true", help="apply the rule to the recorded runs only")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    if len(set(args.candidates)) != len(args.candidates) or len(args.candidates) < 2:
        parser.error("--candidates needs at least two different generators: the default first, then the others")
    return args


def write_choice(store: ResultsStore, candidates: list[str], detector: str, out: Path) -> str:
    """``choice.md`` and ``choice.json`` from the validation runs in ``store`` and ``layout.json``; returns the pick."""
    choice = choose_variant(store.runs, candidates, detector)
    if not (out / LAYOUT_FILE).is_file():
        raise InvalidInputError(
            "no description of the validation folder beside the results",
            path=out / LAYOUT_FILE,
            fix="run benchmarks/shot_validation.py without --report-only once (recorded runs are not rerun)",
        )
    layout = json.loads((out / LAYOUT_FILE).read_text())
    per_type = ", ".join(f"{name} {count}" for name, count in layout["shots_per_type"].items())
    runs = [r for r in store.runs if r["generator"] in candidates and r["detector"] == detector]
    fitted = " / ".join(str(n) for n in sorted({r["data"]["shots"] for r in runs}))
    scored = " / ".join(str(n) for n in sorted({r["data"]["test_anomalies"] for r in runs}))
    header = (
        f"# Variant chosen on held-back shots: {Path(layout['source']).name}\n\n"
        f"Validation folder: the benchmark's {sum(layout['shots_per_type'].values())} shots ({per_type}); the "
        f"first half of each type (rounded down, {fitted} in all) fit the generator and train the detector, the "
        f"other {scored} are scored with {layout['validation_normals']} held-back train normals. No test image. "
        f"Detector: `{detector}`. Made by `benchmarks/shot_validation.py`.\n\n"
    )
    (out / CHOICE_REPORT).write_text(header + choice_markdown(choice))
    record = {"detector": detector, "layout": layout, **dataclasses.asdict(choice)}
    (out / CHOICE_FILE).write_text(json.dumps(record, indent=2) + "\n")
    return choice.chosen


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    name = args.data.resolve().name
    folder = args.work_dir / "layouts" / name
    out = args.out / name
    if not args.report_only:
        layout = shot_validation_layout(args.data, folder)
        logger.info("validation folder %s: %s shots per type", folder, {k: len(v) for k, v in layout.defects.items()})
        # before layout.json is rewritten: runs made on another validation folder (the data changed) are refused
        preset = dataclasses.replace(downstream.resolve_preset(args.preset), shot_fraction=VALIDATION_SHOT_FRACTION)
        store = ResultsStore(out / f"downstream_{args.preset}.json")
        downstream.check_resumable(store, folder, preset, layout.digest())
        description = json.loads((folder / MARKER).read_text())
        description["links"] = len(description["links"])  # a count: hundreds of this machine's paths add nothing
        out.mkdir(parents=True, exist_ok=True)
        (out / LAYOUT_FILE).write_text(json.dumps(description, indent=2) + "\n")
        status = downstream.main(
            [
                "--data", str(folder), "--generators", *args.candidates, "--detectors", args.detector,
                "--seeds", *map(str, args.seeds), "--preset", args.preset, "--out", str(args.out),
                "--work-dir", str(args.work_dir / "work"), "--shot-fraction", str(VALIDATION_SHOT_FRACTION),
                "--no-quality", "--threads", str(args.threads),
            ]
        )  # fmt: skip
        if status:
            return status
    chosen = write_choice(ResultsStore(out / f"downstream_{args.preset}.json"), args.candidates, args.detector, out)
    logger.info("chosen on held-back shots: %s (%s)", chosen, out / CHOICE_REPORT)
    if reason := unusable_pick(args.candidates[0], chosen):
        logger.warning("downstream.py's verdict will not use this pick: %s", reason)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Does a shot's surroundings tell where its defect type belongs? Leave-one-shot-out, on the shots alone.

``context_placement`` admits a position for a defect type when its surface (ImageNet features, the
defect inpainted away) is as close to one of the type's shots as the type's least typical shot is to
the others. This checks the premise on the shots only, no test data: for each shot, its own position's
similarity to the *other* shots of its type is ranked among every position on its (defect-free)
image, inside the object where the category has one. A percentile of 0.5 means the surface says
nothing about where the type belongs; 1.0 means its own position is the most typical. It also
reports the share of each image the rule admits.

    python benchmarks/context_placement.py                       # both datasets
    python benchmarks/context_placement.py --data ../shared/data/mvtec_screw
"""

from __future__ import annotations

import argparse
import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for remote weights

import torch  # noqa: E402
from torch.nn import functional as F  # noqa: E402
from tqdm import tqdm  # noqa: E402

from anomaly_synth_aug.data.fewshot import few_shot_split  # noqa: E402
from anomaly_synth_aug.generators.context_placement import ContextPlacement  # noqa: E402
from anomaly_synth_aug.generators.foreground import (  # noqa: E402
    OBJECT_THRESHOLDS,
    defects_lie_on_objects,
    foreground_region,
)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = PROJECT_ROOT.parent / "shared" / "data"


def measure(root: Path) -> dict[str, object]:
    shots = few_shot_split(root).load_shots()
    on_object = defects_lie_on_objects(shots)
    placement = ContextPlacement()
    described = [placement.describe(shot) for shot in tqdm(shots, desc=root.name, unit="shot")]
    placement.fit_described(described)
    records = []
    for index, shot in enumerate(described):
        same_type = [i for i, other in enumerate(described) if other.defect_type == shot.defect_type]
        others = placement.contexts[shot.defect_type][[k for k, i in enumerate(same_type) if i != index]]
        if len(others) == 0:
            continue  # leave this shot out: nothing left to compare with
        cells = shot.contexts.shape[-2:]
        allowed = (
            foreground_region(shot.surface, **OBJECT_THRESHOLDS)
            if on_object
            else torch.ones(shot.surface.shape[-2:], dtype=torch.bool)
        )
        allowed = F.interpolate(allowed[None, None].float(), size=tuple(cells), mode="area")[0, 0] >= 0.5
        similarity = torch.einsum("chw,nc->nhw", shot.contexts, others).max(dim=0).values
        candidates = similarity[allowed]
        percentile = float((candidates < similarity[shot.cell]).float().mean())
        floor = placement.floors.get(shot.defect_type, -1.0)
        admitted = float((candidates >= floor - 1e-6).float().mean())
        records.append({"type": shot.defect_type, "percentile": percentile, "admitted": admitted})
    by_type: dict[str, dict[str, float]] = {}
    for name in sorted({r["type"] for r in records}):
        rows = [r for r in records if r["type"] == name]
        by_type[name] = {
            "shots": len(rows),
            "mean_percentile": sum(r["percentile"] for r in rows) / len(rows),
            "share_above_half": sum(r["percentile"] > 0.5 for r in rows) / len(rows),
            "admitted_share": sum(r["admitted"] for r in rows) / len(rows),
        }
    overall = sum(r["percentile"] for r in records) / len(records) if records else float("nan")
    return {"dataset": root.name, "object_category": on_object, "mean_percentile": overall, "by_type": by_type}


def markdown(results: list[dict[str, object]]) -> str:
    lines = [
        "# Context placement: leave-one-shot-out on the shots",
        "",
        "`python benchmarks/context_placement.py`. Percentile of each shot's own position among the positions",
        "of its image (on the object, in object categories), by its surface's similarity to the other shots of",
        "its type: 0.5 = the surface says nothing. Admitted: share of those positions the rule keeps.",
        "",
        "| dataset | defect type | shots | mean percentile | share above 0.5 | admitted share |",
        "|---|---|---|---|---|---|",
    ]
    for result in results:
        for name, row in result["by_type"].items():  # type: ignore[union-attr]
            lines.append(
                f"| {result['dataset']} | {name} | {row['shots']} | {row['mean_percentile']:.2f} | "
                f"{row['share_above_half']:.2f} | {row['admitted_share']:.2f} |"
            )
        lines.append(f"| {result['dataset']} | **all** | | **{result['mean_percentile']:.3f}** | | |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> list[dict[str, object]]:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--data", type=Path, nargs="+", default=[SHARED_DATA / "magnetic_tile", SHARED_DATA / "mvtec_screw"]
    )
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results" / "context_placement")
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    missing = [str(root) for root in args.data if not root.is_dir()]
    if missing:
        raise SystemExit(f"no dataset at {', '.join(missing)}: pass --data with an MVTec-layout category folder")
    results = [measure(root) for root in args.data]
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(results, indent=2))
    (args.out / "README.md").write_text(markdown(results))
    print(markdown(results))
    return results


if __name__ == "__main__":
    main()

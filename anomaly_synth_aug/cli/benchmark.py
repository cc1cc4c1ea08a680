"""``anomaly-synth-aug benchmark``: the downstream benchmark (generators x detectors x seeds) on one category."""

from __future__ import annotations

import json
from pathlib import Path


def benchmark(
    data: Path,
    generators: list[str] = ["none", "real_paste", "diffusion"],  # noqa: B006 -- jsonargparse shows it as the default
    detectors: list[str] = ["segmenter"],  # noqa: B006
    seeds: list[int] = [0],  # noqa: B006
    preset: str = "quick",
    output: Path = Path("results/benchmark"),
) -> int:
    """Train each detector on each generator's defects and test it on held-out real defects; write JSON.

    Args:
        data: MVTec-layout category folder.
        generators: sources of training defects (none, shots_only, perlin, cutpaste, poisson, real_paste,
            diffusion, diffusion ablations).
        detectors: segmenter (pretrained U-Net), segmenter_scratch, supersimplenet, draem, padim, patchcore.
        seeds: one run per seed.
        preset: sizes and budgets: smoke, quick or full.
        output: results.jsonl and fitted generators go here.
    """
    from anomaly_synth_aug.evaluation.downstream import preset_record, run_experiment  # heavy
    from anomaly_synth_aug.utils.imports import import_all_submodules

    import_all_submodules()  # runs take hours: keep the code they started with, even if the tree is edited

    output.mkdir(parents=True, exist_ok=True)
    results = output / "results.jsonl"
    with results.open("a") as sink:
        for seed in seeds:
            for generator in generators:
                for detector in detectors:
                    record = run_experiment(
                        data,
                        generator,
                        detector,
                        seed,
                        preset,
                        fit_store=output / "generators",
                    )
                    record["preset_values"] = preset_record(preset)
                    sink.write(json.dumps(record) + "\n")
                    print(generator, detector, seed, {k: v for k, v in record["metrics"].items() if "AUROC" in k})
    print(f"results appended to {results}")
    return 0

"""``anomaly-synth-aug fit-generator``: fit a generator on one category's few-shot split and keep it in a fit store."""

from __future__ import annotations

from pathlib import Path

from anomaly_synth_aug.data.fewshot import DEFAULT_SHOT_FRACTION
from anomaly_synth_aug.data.mvtec_datamodule import mvtec_datamodule
from anomaly_synth_aug.generators.base import AnomalyGenerator
from anomaly_synth_aug.generators.fit_store import FitStore


def fit_generator(
    data: Path,
    generator: AnomalyGenerator,
    output: Path = Path("results/generators"),
    shot_fraction: float = DEFAULT_SHOT_FRACTION,
    max_fit_normals: int = 64,
    seed: int = 0,
) -> int:
    """Fit a generator on a category's training normals and few-shot defects; keep it in the store OUTPUT.

    The store is the one ``GeneratorFineTuneCallback``, the benchmark and the demo use: a fit is kept
    under a key of the generator's training settings and the data's contents, in
    OUTPUT/<category>/<Class>-<key>/, and running this again on unchanged data loads it instead of
    fitting again. Pass the printed folder to ``generate --generator_dir``.

    Args:
        data: MVTec-layout category folder (train/good, test/<type>, ground_truth/<type>).
        generator: the generator, e.g. ``--generator DiffusionAnomalyGenerator --generator.max_steps 100``.
        output: the fit store's folder.
        shot_fraction: share of each defect type's real images given to the generator (and kept out of evaluation).
        max_fit_normals: at most this many training normals are used for fitting.
        seed: fixes the choice of normals and the fitting.
    """
    datamodule = mvtec_datamodule(
        data, generator, shot_fraction=shot_fraction, max_fit_normals=max_fit_normals, seed=seed
    )
    store = FitStore(output)
    fit_data = datamodule.fit_data()
    action = store.fit_or_load(generator, fit_data, keep=True)
    folder = store.folder_for(generator, fit_data)
    print(f"{type(generator).__name__} for {fit_data.category!r}: {action.replace('_', ' ')}; saved in {folder}")
    return 0

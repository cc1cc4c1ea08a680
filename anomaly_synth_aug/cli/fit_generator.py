"""``anomaly-synth-aug fit-generator``: fit a generator on one category's few-shot split and save it."""

from __future__ import annotations

from pathlib import Path

from anomaly_synth_aug.callbacks.finetune import GeneratorFineTuneCallback, OnMismatch, checkpoint_key, save_checkpoint
from anomaly_synth_aug.data.fewshot import DEFAULT_SHOT_FRACTION
from anomaly_synth_aug.data.mvtec_folder import mvtec_datamodule
from anomaly_synth_aug.generators.base import AnomalyGenerator


def fit_generator(
    data: Path,
    generator: AnomalyGenerator,
    output: Path = Path("results/generators"),
    shot_fraction: float = DEFAULT_SHOT_FRACTION,
    max_fit_normals: int = 64,
    seed: int = 0,
    on_mismatch: OnMismatch = "error",
) -> int:
    """Fit a generator on a category's training normals and few-shot defects; save it to OUTPUT/<category>.

    The checkpoint is the one GeneratorFineTuneCallback uses in training runs with the same
    settings, and running this again on unchanged data loads it instead of fitting again.

    Args:
        data: MVTec-layout category folder (train/good, test/<type>, ground_truth/<type>).
        generator: the generator, e.g. ``--generator anomaly_synth_aug.generators.diffusion.DiffusionAnomalyGenerator
            --generator.max_steps 100``.
        output: parent folder of the per-category generator folders.
        shot_fraction: share of each defect type's real images given to the generator (and kept out of evaluation).
        max_fit_normals: at most this many training normals are used for fitting.
        seed: fixes the choice of normals and the fitting.
        on_mismatch: an existing OUTPUT/<category> for other data or settings: "error" or "retrain" (replace it).
    """
    datamodule = mvtec_datamodule(
        data, generator, shot_fraction=shot_fraction, max_fit_normals=max_fit_normals, seed=seed
    )
    callback = GeneratorFineTuneCallback(output, on_mismatch=on_mismatch)
    action = callback.prepare(datamodule)
    key = checkpoint_key(datamodule)
    directory = callback.checkpoint_path(key.category)
    if action == "not_needed" and not callback.has_matching_checkpoint(key, directory):
        save_checkpoint(generator, key, directory)  # a classic generator: its config is all there is to save
    print(f"{key.generator_class} for {key.category!r}: {action.replace('_', ' ')}; saved in {directory}")
    return 0

"""The downstream benchmark: which source of defects makes the best detector of *real* ones?

One concern per module:

* ``presets``: sizes and step budgets of a run;
* ``generator_table``: the sources of training defects by name (none, the shots, classic, diffusion);
* ``detectors``: each detector's network, training images and budget;
* ``datamodules``: the few-shot data path and the generator's fit-or-load;
* ``runner``: ``run_experiment``, one (source, detector, seed) run end to end;
* ``quality``: realism, diversity and background fidelity of a fitted generator;
* ``report_file``: the per-dataset report (markdown tables, gain chart) from a results store;
* ``shot_validation``: a validation folder of held-back shots, and the rule that picks a variant on it.

``benchmarks/downstream.py`` runs the matrix and writes the reports.
"""

from anomaly_synth_aug.evaluation.downstream.datamodules import fit_generator, folder_datamodule, synthetic_datamodule
from anomaly_synth_aug.evaluation.downstream.detectors import DETECTORS, DetectorSpec, detector_spec
from anomaly_synth_aug.evaluation.downstream.generator_table import (
    ABLATIONS,
    GENERATORS,
    SHOTS_PLUS,
    TRAIN_MODE_OVERRIDES,
    WITH_SHOTS,
    build_generator,
    check_generator_name,
    generates,
    pool_source,
    training_options,
    variant_counterparts,
)
from anomaly_synth_aug.evaluation.downstream.presets import (
    PRESETS,
    Preset,
    preset_record,
    resolve_preset,
    same_preset,
)
from anomaly_synth_aug.evaluation.downstream.quality import (
    GeneratedSamples,
    generate_samples,
    measure_generation_quality,
)
from anomaly_synth_aug.evaluation.downstream.report_file import fit_costs, run_seconds, write_report_files
from anomaly_synth_aug.evaluation.downstream.runner import run_experiment, split_sizes, training_steps
from anomaly_synth_aug.evaluation.downstream.shot_validation import (
    Choice,
    JudgedSources,
    RecordedChoice,
    choice_markdown,
    choose_variant,
    judged_sources,
    read_choice,
    shot_validation_layout,
)

__all__ = [
    "ABLATIONS",
    "DETECTORS",
    "GENERATORS",
    "PRESETS",
    "SHOTS_PLUS",
    "TRAIN_MODE_OVERRIDES",
    "WITH_SHOTS",
    "Choice",
    "DetectorSpec",
    "GeneratedSamples",
    "JudgedSources",
    "Preset",
    "RecordedChoice",
    "build_generator",
    "check_generator_name",
    "choice_markdown",
    "choose_variant",
    "detector_spec",
    "fit_costs",
    "fit_generator",
    "folder_datamodule",
    "generate_samples",
    "generates",
    "judged_sources",
    "measure_generation_quality",
    "pool_source",
    "preset_record",
    "read_choice",
    "resolve_preset",
    "run_seconds",
    "run_experiment",
    "same_preset",
    "shot_validation_layout",
    "split_sizes",
    "synthetic_datamodule",
    "training_options",
    "training_steps",
    "variant_counterparts",
    "write_report_files",
]

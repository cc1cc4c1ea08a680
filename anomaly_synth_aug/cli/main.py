"""``anomaly-synth-aug``: fit a generator, fill and check a sample cache, benchmark, run the demo, or name a backbone.

Each subcommand is a typed function; jsonargparse turns its signature and docstring into
``--help``, YAML configs (``--config``) and ``--print_config``, and builds any generator
from ``--generator <class_path> --generator.<arg> <value>``.
"""

from __future__ import annotations

import importlib
import logging
import sys
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from anomaly_synth_aug.errors import AnomalySynthError


@dataclass(frozen=True)
class Subcommand:
    """Where a subcommand's function lives, imported only when that subcommand runs.

    The functions import anomalib, Lightning and diffusers, which take seconds; ``--help`` and a
    mistyped subcommand must answer at once.
    """

    module: str
    function: str
    summary: str
    #: Takes a ``--generator``: every packaged generator is imported first, so short class names
    #: (``--generator DiffusionAnomalyGenerator``) resolve and ``--help`` lists them all.
    takes_generator: bool = False

    def load(self) -> Callable[..., int]:
        return getattr(importlib.import_module(self.module), self.function)


DESCRIPTION = "Few-shot synthetic defects for anomalib: fit a generator, fill and check a sample cache, benchmark."

SUBCOMMANDS: dict[str, Subcommand] = {
    "fit-generator": Subcommand(
        "anomaly_synth_aug.cli.fit_generator", "fit_generator", "fit a generator on a category's few shots and save it", True
    ),
    "generate": Subcommand("anomaly_synth_aug.cli.generate", "generate", "fill a sample cache from a saved generator"),
    "verify": Subcommand("anomaly_synth_aug.cli.verify", "verify_cache", "check a sample cache against its manifest"),
    "benchmark": Subcommand("anomaly_synth_aug.cli.benchmark", "benchmark", "train and test detectors on each source"),
    "demo": Subcommand("anomaly_synth_aug.cli.demo", "demo", "the whole workflow on one category, offline"),
    "backbone": Subcommand("anomaly_synth_aug.cli.backbone", "backbone", "print an offline pretrained backbone name"),
}


def top_level_help() -> str:
    """``anomaly-synth-aug --help``: the subcommands, without importing any of them."""
    width = max(map(len, SUBCOMMANDS))
    lines = [
        "usage: anomaly-synth-aug SUBCOMMAND [--help] [--config CONFIG] [--print_config] ...",
        "",
        DESCRIPTION,
        "",
        "subcommands:",
        *(f"  {name.ljust(width)}  {command.summary}" for name, command in SUBCOMMANDS.items()),
        "",
        "Run 'anomaly-synth-aug SUBCOMMAND --help' for its options.",
    ]
    return "\n".join(lines)


def _normalise_arguments(argv: list[str]) -> list[str]:
    """``verify <cache_dir>`` as documented: a positional cache folder becomes ``--cache_dir``."""
    if len(argv) >= 2 and argv[0] == "verify" and not argv[1].startswith("-"):
        return [argv[0], "--cache_dir", argv[1], *argv[2:]]
    return argv


def import_packaged_generators() -> None:
    """Import every generator class the package exports (they register as ``AnomalyGenerator`` subclasses).

    Through the package's public names, so that configs printed by ``--print_config`` say
    ``anomaly_synth_aug.PerlinGenerator``: the one import that runs from a layer up to the package itself.
    """
    import anomaly_synth_aug
    from anomaly_synth_aug.generators.base import AnomalyGenerator

    for name in anomaly_synth_aug.__all__:
        if name.endswith("Generator") and name != AnomalyGenerator.__name__:
            getattr(anomaly_synth_aug, name)  # the lazy export imports the class's module


def check_generator_names(argv: list[str]) -> None:
    """A ``--generator`` that is neither a packaged class name nor a dotted path is an error listing the names.

    jsonargparse would answer a misspelt name with its usage text and "Expected a dot import path string".
    """
    from anomaly_synth_aug.errors import InvalidInputError
    from anomaly_synth_aug.generators.names import PACKAGED_GENERATORS

    names = sorted(PACKAGED_GENERATORS)
    for index, argument in enumerate(argv):
        value = argv[index + 1] if argument == "--generator" and index + 1 < len(argv) else None
        if argument.startswith("--generator="):
            value = argument.split("=", 1)[1]
        if value and "." not in value and not value.startswith("{") and value not in names:
            raise InvalidInputError(f"unknown generator {value!r}", fix=f"use one of {', '.join(names)}")


#: Exit status of a run stopped by bad input (argparse uses 2 for bad arguments too).
EXIT_BAD_INPUT = 2


def _show_package_logs() -> None:
    """Progress messages of the package (fitting, loading, caching) at INFO, without touching the root logger."""
    from rich.logging import RichHandler

    package_logger = logging.getLogger("anomaly_synth_aug")
    if not package_logger.handlers:
        package_logger.addHandler(RichHandler(show_path=False, show_time=False))
        package_logger.setLevel(logging.INFO)


#: Third-party messages that say nothing a user of this command can act on; each repeats per
#: Trainer (the demo builds several) and buries the results table.
QUIET_WARNINGS: tuple[str, ...] = (
    r"`isinstance\(treespec, LeafSpec\)` is deprecated",  # Lightning on torch >= 2.10, internal
    r"You called `self.log\(.*` but have no logger configured",  # runs that deliberately log nowhere
    r"Importing from timm.models.layers is deprecated",  # anomalib importing timm
    r"The anomalib.models.components.dinov2 package is deprecated",  # anomalib importing itself
    r"Found \d+ module\(s\) in eval mode at the start of training",  # frozen pretrained stages, on purpose
)
#: Library loggers whose warnings say nothing actionable here: timm lists the ImageNet head's keys that
#: a feature extractor does not load; anomalib says a one-class run's validation set has no anomalies.
QUIET_LOGGERS: tuple[str, ...] = ("timm.models._builder", "anomalib.metrics.threshold.f1_adaptive_threshold")


def _quiet_third_party_warnings() -> None:
    """Silence only ``QUIET_WARNINGS`` for this process; every other warning still shows."""
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns its exit status. Bad input prints one clear line, not a traceback."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(top_level_help())
        return 0
    if argv[0] not in SUBCOMMANDS:
        print(f"anomaly-synth-aug: error: unknown subcommand {argv[0]!r}; use one of {', '.join(SUBCOMMANDS)}", file=sys.stderr)
        return EXIT_BAD_INPUT
    _show_package_logs()
    _quiet_third_party_warnings()
    command = SUBCOMMANDS[argv[0]]
    from jsonargparse import auto_cli  # after the fast paths above

    try:
        if command.takes_generator:
            import_packaged_generators()
            check_generator_names(argv)
        status = auto_cli(
            {argv[0]: command.load()},
            args=_normalise_arguments(argv),
            as_positional=False,
            prog="anomaly-synth-aug",
            description=DESCRIPTION,
        )
    except AnomalySynthError as exc:
        print(f"anomaly-synth-aug: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())

"""``anomaly-synth-aug``: fit a generator, fill and check a sample cache, benchmark, run the demo, or name a backbone.

Each subcommand is a typed function; jsonargparse turns its signature and docstring into
``--help``, YAML configs (``--config``) and ``--print_config``, and builds any generator
from ``--generator <class_path> --generator.<arg> <value>``.
"""

from __future__ import annotations

import logging
import sys
import warnings
from collections.abc import Callable

from jsonargparse import auto_cli
from rich.logging import RichHandler

from anomaly_synth_aug.cli.backbone import backbone
from anomaly_synth_aug.cli.benchmark import benchmark
from anomaly_synth_aug.cli.demo import demo
from anomaly_synth_aug.cli.fit_generator import fit_generator
from anomaly_synth_aug.cli.generate import generate
from anomaly_synth_aug.cli.verify import verify_cache
from anomaly_synth_aug.errors import AnomalySynthError

SUBCOMMANDS: dict[str, Callable[..., int]] = {
    "fit-generator": fit_generator,
    "generate": generate,
    "verify": verify_cache,
    "benchmark": benchmark,
    "demo": demo,
    "backbone": backbone,
}

#: Exit status of a run stopped by bad input (argparse uses 2 for bad arguments too).
EXIT_BAD_INPUT = 2


def _show_package_logs() -> None:
    """Progress messages of the package (fitting, loading, caching) at INFO, without touching the root logger."""
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
)


def _quiet_third_party_warnings() -> None:
    """Silence only ``QUIET_WARNINGS`` for this process; every other warning still shows."""
    for message in QUIET_WARNINGS:
        warnings.filterwarnings("ignore", message=message)


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns its exit status. Bad input prints one clear line, not a traceback."""
    _show_package_logs()
    _quiet_third_party_warnings()
    try:
        status = auto_cli(
            SUBCOMMANDS, args=argv, as_positional=False, prog="anomaly-synth-aug", description=__doc__.split("\n\n")[0]
        )
    except AnomalySynthError as exc:
        print(f"anomaly-synth-aug: error: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT
    return int(status or 0)


if __name__ == "__main__":
    sys.exit(main())

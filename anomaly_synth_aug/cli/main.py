"""``anomaly-synth-aug``: fit a generator, fill and check a sample cache, benchmark, or run the demo.

Each subcommand is a typed function; jsonargparse turns its signature and docstring into
``--help``, YAML configs (``--config``) and ``--print_config``, and builds any generator
from ``--generator <class_path> --generator.<arg> <value>``.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Callable

from jsonargparse import auto_cli
from rich.logging import RichHandler

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
}

#: Exit status of a run stopped by bad input (argparse uses 2 for bad arguments too).
EXIT_BAD_INPUT = 2


def _show_package_logs() -> None:
    """Progress messages of the package (fitting, loading, caching) at INFO, without touching the root logger."""
    package_logger = logging.getLogger("anomaly_synth_aug")
    if not package_logger.handlers:
        package_logger.addHandler(RichHandler(show_path=False, show_time=False))
        package_logger.setLevel(logging.INFO)


def main(argv: list[str] | None = None) -> int:
    """Run one subcommand; returns its exit status. Bad input prints one clear line, not a traceback."""
    _show_package_logs()
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

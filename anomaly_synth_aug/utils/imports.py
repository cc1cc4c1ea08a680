"""Loading a whole package up front, so that a long run keeps the code it started with."""

from __future__ import annotations

import importlib
import pkgutil


def import_all_submodules(package: str = "anomaly_synth_aug") -> list[str]:
    """Import every submodule of ``package`` now and return their names.

    Heavy modules (the diffusion generator, DRÆM, SuperSimpleNet) are imported only when a run first
    needs them. A benchmark runs for hours; with an editable install, a module first imported after the
    source tree was edited comes from the new code, while everything loaded before is old. A benchmark
    run failed exactly that way (``cannot import name 'as_torch_generator'``). Importing everything at
    the start keeps the whole run on one version of the code.
    """
    root = importlib.import_module(package)
    names = [info.name for info in pkgutil.walk_packages(root.__path__, f"{package}.")]
    for name in names:
        importlib.import_module(name)
    return names

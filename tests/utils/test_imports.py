"""A long run keeps the code it started with, even if the source tree is edited meanwhile."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from anomaly_synth_aug.utils.imports import import_all_submodules

PACKAGE = "edited_midrun_pkg"


@pytest.fixture
def package(tmp_path: Path) -> Iterator[Path]:
    """A package whose ``late`` module is normally imported only when first used, like the diffusion generator."""
    root = tmp_path / PACKAGE
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "helpers.py").write_text("def old_helper():\n    return 'old'\n")
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "late.py").write_text(f"from {PACKAGE}.helpers import old_helper as helper\n")
    sys.path.insert(0, str(tmp_path))
    yield root
    sys.path.remove(str(tmp_path))
    for name in [n for n in sys.modules if n == PACKAGE or n.startswith(f"{PACKAGE}.")]:
        del sys.modules[name]


def _edit_source(root: Path) -> None:
    """What a developer does while the run goes on: a new helper, and the late module switched to it."""
    (root / "helpers.py").write_text("def new_helper():\n    return 'new'\n")
    (root / "sub" / "late.py").write_text(f"from {PACKAGE}.helpers import new_helper as helper\n")
    importlib.invalidate_caches()


def test_without_it_a_module_first_imported_after_an_edit_mixes_old_and_new_code(package: Path) -> None:
    importlib.import_module(f"{PACKAGE}.helpers")  # loaded at the start of the run
    _edit_source(package)
    with pytest.raises(ImportError, match="new_helper"):
        importlib.import_module(f"{PACKAGE}.sub.late")


def test_imported_up_front_the_run_keeps_the_code_it_started_with(package: Path) -> None:
    names = import_all_submodules(PACKAGE)
    assert set(names) == {f"{PACKAGE}.helpers", f"{PACKAGE}.sub", f"{PACKAGE}.sub.late"}
    _edit_source(package)
    assert importlib.import_module(f"{PACKAGE}.sub.late").helper() == "old"


class _Loaded(Exception):
    """Raised by the stand-in for ``import_all_submodules``: it was called, so stop the run there."""


@pytest.mark.parametrize("script", ["downstream", "speed"])
def test_the_benchmark_scripts_load_the_whole_package_first(script: str, monkeypatch, tmp_path: Path) -> None:
    from shared_fixtures import load_script

    module = load_script(script)

    def loaded(*args, **kwargs):
        raise _Loaded

    monkeypatch.setattr(module, "import_all_submodules", loaded)
    with pytest.raises(_Loaded):
        module.main(["--preset", "smoke", "--out", str(tmp_path), "--work-dir", str(tmp_path / "work")])


def test_the_benchmark_command_loads_the_whole_package_first(monkeypatch, tmp_path: Path) -> None:
    from anomaly_synth_aug.cli.benchmark import benchmark
    from anomaly_synth_aug.utils import imports

    def loaded(*args, **kwargs):
        raise _Loaded

    monkeypatch.setattr(imports, "import_all_submodules", loaded)
    with pytest.raises(_Loaded):
        benchmark(tmp_path, output=tmp_path / "out")

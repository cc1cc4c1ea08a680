"""Every name the package advertises resolves, lazily, to the object its module defines."""

from __future__ import annotations

import importlib
import subprocess
import sys

import pytest

import anomaly_synth_aug


@pytest.mark.parametrize("name", anomaly_synth_aug.__all__)
def test_export_resolves_to_its_module_object(name: str) -> None:
    module_path, _, attribute = anomaly_synth_aug._EXPORTS[name].partition(":")
    expected = getattr(importlib.import_module(module_path), attribute or name)
    assert getattr(anomaly_synth_aug, name) is expected


def test_unknown_name_raises_attribute_error() -> None:
    with pytest.raises(AttributeError, match="no attribute 'NoSuchThing'"):
        anomaly_synth_aug.NoSuchThing  # noqa: B018


def test_package_import_is_lazy() -> None:
    """``import anomaly_synth_aug`` must not pull in anomalib, Lightning or diffusers (CLI start-up time)."""
    code = (
        "import sys, anomaly_synth_aug; "
        "heavy = [m for m in ('anomalib', 'lightning', 'diffusers') if m in sys.modules]; "
        "print(','.join(heavy))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_datamodule_is_reachable_by_class_path() -> None:
    """The anomalib CLI resolves ``class_path: anomaly_synth_aug.SyntheticAnomalyDataModule``."""
    from anomalib.data import AnomalibDataModule

    assert issubclass(anomaly_synth_aug.SyntheticAnomalyDataModule, AnomalibDataModule)

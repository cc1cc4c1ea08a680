"""Every name the package advertises resolves, lazily, to the object its module defines."""

from __future__ import annotations

import subprocess
import sys

import pytest

import anomaly_synth_aug


@pytest.mark.parametrize("name", anomaly_synth_aug.__all__)
def test_every_advertised_name_is_one_of_the_packages_own_objects(name: str) -> None:
    value = getattr(anomaly_synth_aug, name)
    assert getattr(anomaly_synth_aug, name) is value  # resolved once, the same object afterwards
    if callable(value):
        assert value.__module__.startswith("anomaly_synth_aug."), value.__module__
    assert name in dir(anomaly_synth_aug)


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

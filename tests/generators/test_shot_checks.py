"""``validate_shots``: the checks every defect shot passes before a generator learns from it."""

from __future__ import annotations

import pytest
import torch

from anomaly_synth_aug.data.sample import AnomalySample
from anomaly_synth_aug.errors import InvalidInputError, MaskError
from anomaly_synth_aug.generators.shot_checks import validate_shots


def _shot(defect_type: str = "crack", *, empty: bool = False) -> AnomalySample:
    mask = torch.zeros(8, 10, dtype=torch.bool)
    if not empty:
        mask[2:4, 3:6] = True
    return AnomalySample(image=torch.rand(3, 8, 10), mask=mask, label=1, defect_type=defect_type,
                         image_path="shots/crack/001.png")


def test_a_typed_shot_with_a_mask_passes() -> None:
    validate_shots([_shot(), _shot("scratch")])


def test_a_normal_sample_is_not_a_shot() -> None:
    with pytest.raises(InvalidInputError, match="normal sample was passed as a defect shot"):
        validate_shots([_shot(), AnomalySample.normal(torch.rand(3, 8, 10))])


@pytest.mark.parametrize("defect_type", ["good", ""])
def test_shots_must_name_their_defect_type(defect_type: str) -> None:
    # Regression: AnomalySample defaults to defect_type "good", which used to pass as a defect type.
    with pytest.raises(InvalidInputError, match="defect type"):
        validate_shots([_shot(defect_type)])


def test_an_empty_mask_is_refused_naming_the_file() -> None:
    with pytest.raises(MaskError, match="empty mask") as error:
        validate_shots([_shot(empty=True)])
    assert "shots/crack/001.png" in str(error.value)

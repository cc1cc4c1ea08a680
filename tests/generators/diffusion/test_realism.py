"""``ShotRealism``: realism judged in pretrained feature space, from the shots alone (the optional filter)."""

from __future__ import annotations

import pytest
import torch
from diffusion_helpers import TINY, defect_shot, normals, shots, surface

from anomaly_synth_aug.errors import NotFittedError
from anomaly_synth_aug.generators.diffusion import DiffusionAnomalyGenerator
from anomaly_synth_aug.generators.diffusion.realism import ShotRealism, reference_from

FAST = {**TINY, "max_steps": 4, "batch_size": 4, "num_inference_steps": 3, "progress": False}


@pytest.fixture(scope="module")
def realism() -> ShotRealism:
    return ShotRealism().fit(shots())


def test_spacing_is_the_median_and_limit_the_largest_leave_one_out_distance() -> None:
    features = torch.tensor([[0.0], [1.0], [3.0], [10.0], [20.0]])
    reference = reference_from(features)
    assert reference.spacing == 2.0  # nearest others: 1, 1, 2, 7, 10
    assert reference.limit == 5.0  # 10 / 2


def test_a_shot_is_realistic_and_a_foreign_defect_is_not(realism: ShotRealism) -> None:
    dent = defect_shot(1, "dent")
    ratios, realistic = realism.judge([dent.image], [dent.mask], ["dent"])
    assert ratios[0] < 1e-3 and bool(realistic[0])  # a shot is its own nearest shot
    foreign = surface(7).clone()
    mask = torch.zeros(40, 48, dtype=torch.bool)
    mask[5:35, 4:44] = True
    foreign[0, mask], foreign[1:, mask] = 1.0, 0.0  # a huge red slab, unlike any dark dent
    ratios, realistic = realism.judge([foreign], [mask], ["dent"])
    assert ratios[0] > realism.references["dent"].limit and not bool(realistic[0])


def test_types_without_two_shots_are_not_judged() -> None:
    realism = ShotRealism().fit([defect_shot(0, "dent"), defect_shot(0, "streak"), defect_shot(1, "streak")])
    assert set(realism.references) == {"streak"}
    dent = defect_shot(2, "dent")
    ratios, realistic = realism.judge([dent.image], [dent.mask], ["dent"])
    assert torch.isnan(ratios[0]) and bool(realistic[0])
    with pytest.raises(NotFittedError, match="fit"):
        ShotRealism().ratios([dent.image], [dent.mask], ["dent"])


def test_references_round_trip_through_tensors(realism: ShotRealism) -> None:
    restored = ShotRealism().load_tensors(realism.state_tensors())
    dent = defect_shot(5, "dent")
    expected = realism.ratios([dent.image], [dent.mask], ["dent"])
    assert torch.allclose(restored.ratios([dent.image], [dent.mask], ["dent"]), expected)


def test_unrealistic_defects_are_regenerated_and_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    generator = DiffusionAnomalyGenerator(
        category="tiles", guidance_scale=1.0, max_retries=1, realism_filter=True, **FAST
    )
    generator.fit(normals(), shots(), generator=torch.Generator().manual_seed(0))
    references = generator._realism.references
    for name, reference in list(references.items()):  # nothing generated can be this close to a shot
        monkeypatch.setitem(references, name, type(reference)(reference.features, reference.spacing, -1.0))
    batch = generator.generate(normals(2), defect_types="dent", generator=0)
    assert batch.stats["reasons"].get("unrealistic", 0) >= 2 and batch.stats["exhausted"] == 2
    assert batch.stats["attempts"] == 4  # each image: a first draw and one retry, the last one kept
    monkeypatch.setattr(generator, "realism_filter", False)
    assert "unrealistic" not in generator.generate(normals(2), defect_types="dent", generator=0).stats["reasons"]

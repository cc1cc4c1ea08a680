"""Mask refinement and the quality filter: what ships must be visible, pixel-exact and background-clean."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from anomaly_synth_aug.errors import InvalidInputError, MaskError
from anomaly_synth_aug.generators.diffusion.quality import (
    QualityFilter,
    QualityReport,
    QualityVerdict,
    composite,
    refine_mask,
)

SIZE = (40, 48)


def _texture(seed: int = 0) -> torch.Tensor:
    gray = 0.5 + 0.1 * torch.rand(1, *SIZE, generator=torch.Generator().manual_seed(seed))
    return gray.expand(3, -1, -1).clone()


def _box(top: int, left: int, height: int, width: int) -> torch.Tensor:
    mask = torch.zeros(SIZE, dtype=torch.bool)
    mask[top : top + height, left : left + width] = True
    return mask


def _dilate(mask: torch.Tensor, radius: int) -> torch.Tensor:
    return F.max_pool2d(mask[None, None].float(), 2 * radius + 1, stride=1, padding=radius)[0, 0].bool()


# --------------------------------------------------------------- refine
def test_refine_mask_follows_the_change_inside_the_dilated_placement() -> None:
    before = _texture()
    placement = _box(10, 10, 16, 16)
    defect = _box(12, 14, 8, 14)  # reaches 2 px beyond the placement's right edge
    after = before.clone()
    after[:, defect] = 0.1
    after[:, 30, 40] = 0.1  # a change far from the placement
    refined = refine_mask(before, after, placement, dilation=3)
    assert torch.equal(refined, defect)
    assert not bool((refined & ~_dilate(placement, 3)).any())


def test_refine_mask_drops_speckles_and_faint_changes_and_closes_small_holes() -> None:
    before = _texture()
    placement = _box(5, 5, 30, 30)
    defect = _box(10, 10, 10, 10)
    after = before.clone()
    after[:, defect] -= 0.3
    after[:, 14:16, 14:16] = before[:, 14:16, 14:16]  # a 2x2 unchanged hole inside the defect
    after[:, 28, 28] -= 0.3  # a one-pixel speckle
    after[:, 25:30, 8:13] += 0.02  # a faint change below the threshold
    refined = refine_mask(before, after, placement, threshold=0.04, min_component_area=4, max_hole_area=16)
    assert torch.equal(refined, defect)


def test_refine_mask_is_empty_when_nothing_changed() -> None:
    image = _texture()
    assert not bool(refine_mask(image, image.clone(), _box(5, 5, 10, 10)).any())


def test_composite_makes_the_image_change_exactly_the_refined_mask() -> None:
    before = _texture()
    after = before.clone()
    after[:, _box(10, 10, 8, 8)] = 0.0
    after[:, 30, 40] = 0.0  # would break the contract if shipped
    refined = refine_mask(before, after, _box(8, 8, 12, 12))
    shipped = composite(before, after, refined)
    changed = (shipped != before).any(0)
    assert torch.equal(changed, refined)


def test_refine_mask_rejects_bad_arguments() -> None:
    image = _texture()
    with pytest.raises(InvalidInputError, match="threshold"):
        refine_mask(image, image, _box(1, 1, 2, 2), threshold=5.0)
    with pytest.raises(InvalidInputError, match="one shape"):
        refine_mask(image, image[:, :10], _box(1, 1, 2, 2))
    with pytest.raises(MaskError, match="mask size"):
        refine_mask(image, image, torch.ones(10, 10, dtype=torch.bool))


# --------------------------------------------------------------- filter
@pytest.fixture
def scene() -> tuple[torch.Tensor, torch.Tensor]:
    return _texture(), _box(10, 10, 12, 12)


def test_filter_accepts_a_visible_contained_defect(scene: tuple[torch.Tensor, torch.Tensor]) -> None:
    before, mask = scene
    after = before.clone()
    after[:, mask] -= 0.3
    verdict = QualityFilter().assess(before, after, mask)
    assert verdict.accepted and verdict.reason == "ok"
    assert verdict.inside_change == pytest.approx(0.3, abs=1e-4)
    assert verdict.outside_change == 0.0


def test_filter_rejects_an_unchanged_sample(scene: tuple[torch.Tensor, torch.Tensor]) -> None:
    before, mask = scene
    verdict = QualityFilter().assess(before, before.clone(), mask)
    assert not verdict.accepted and verdict.reason == "defect_not_visible"


def test_filter_rejects_background_changes(scene: tuple[torch.Tensor, torch.Tensor]) -> None:
    before, mask = scene
    after = before.clone()
    after[:, mask] -= 0.3
    after[:, 35, 40] += 0.05
    verdict = QualityFilter().assess(before, after, mask)
    assert verdict.reason == "background_changed"
    assert verdict.outside_change == pytest.approx(0.05, abs=1e-4)
    rounding_only = before.clone()
    rounding_only[:, mask] -= 0.3
    rounding_only[:, 35, 40] += 1 / 255
    assert QualityFilter().assess(before, rounding_only, mask).accepted


def test_filter_rejects_a_defect_covering_little_of_its_mask(scene: tuple[torch.Tensor, torch.Tensor]) -> None:
    before, mask = scene
    after = before.clone()
    after[:, 10:12, 10:22] -= 0.45  # 2 of 12 rows: strong on average, but most of the mask is untouched
    verdict = QualityFilter().assess(before, after, mask)
    assert verdict.inside_change > QualityFilter().min_inside_change
    assert verdict.reason == "defect_incomplete"


def test_filter_rejects_invalid_pixels_and_empty_masks(scene: tuple[torch.Tensor, torch.Tensor]) -> None:
    before, mask = scene
    broken = before.clone()
    broken[0, 12, 12] = float("nan")
    assert QualityFilter().assess(before, broken, mask).reason == "invalid_pixels"
    assert QualityFilter().assess(before, before, torch.zeros(SIZE, dtype=torch.bool)).reason == "empty_mask"
    with pytest.raises(InvalidInputError, match="min_inside_change"):
        QualityFilter(min_inside_change=2.0)


# --------------------------------------------------------------- report
def test_report_counts_merges_and_flattens() -> None:
    ok = QualityVerdict(True, "ok", 0.3, 0.0)
    invisible = QualityVerdict(False, "defect_not_visible", 0.0, 0.0)
    first, second = QualityReport(), QualityReport()
    assert first.add(ok) is ok
    first.add(invisible)
    second.add(ok)
    second.add(QualityVerdict(False, "background_changed", 0.3, 0.2))
    merged = first.merge(second)
    assert (merged.accepted, merged.total) == (2, 4)
    assert merged.to_dict() == {
        "quality/accepted": 2,
        "quality/rejected": 2,
        "quality/acceptance_rate": 0.5,
        "quality/rejected/background_changed": 1,
        "quality/rejected/defect_not_visible": 1,
    }
    assert (first + second).to_dict() == merged.to_dict()
    assert first.total == 2, "merging leaves the inputs unchanged"
    assert QualityReport().acceptance_rate == 1.0

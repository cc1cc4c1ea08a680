"""ClassicGenerator: redraws of invisible samples, the bounded retry, per-image seeding and checked ranges."""

from __future__ import annotations

import pytest
import torch

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators.classic import ClassicGenerator, checked_range


class FadingGenerator(ClassicGenerator):
    """Brightens a 2x2 square by ``step`` more on every attempt: the first attempts are invisible."""

    def __init__(self, step: float = 0.001) -> None:
        super().__init__()
        self.step = step
        self.attempts = 0

    @property
    def defect_types(self) -> list[str]:
        return ["fade"]

    def _synthesize(self, image, placement, defect_type, generator):
        self.attempts += 1
        region = torch.zeros(image.shape[-2:], dtype=torch.bool)
        region[:2, :2] = True
        return image + self.step * self.attempts * region, region


def test_invisible_samples_are_redrawn_and_counted() -> None:
    generator = FadingGenerator(step=0.001)  # visible (> half a grey level) from the 2nd attempt on
    batch = generator.generate([torch.full((3, 5, 5), 128 / 255)])  # an 8-bit image: the change rounds off
    assert batch.stats == {"redraws": 1}
    assert batch.masks[0].sum() == 4


def test_retry_is_bounded_with_a_clear_error() -> None:
    generator = FadingGenerator(step=0.1)
    white = torch.ones(3, 5, 5)  # brightening white changes nothing once clamped to [0, 1]
    with pytest.raises(InvalidInputError, match="FadingGenerator made no visible change to image 1 in 20 attempts"):
        generator.generate([torch.full((3, 5, 5), 0.5), white])
    assert generator.attempts == 21  # 1 for image 0, then the limit for image 1


def test_placement_outside_the_region_counts_as_no_change() -> None:
    placement = torch.zeros(5, 5, dtype=torch.bool)
    placement[4, 4] = True
    with pytest.raises(InvalidInputError, match="made no visible change"):
        FadingGenerator(step=0.1).generate([torch.full((3, 5, 5), 0.5)], masks=[placement])


def test_checked_range_turns_lists_into_tuples_and_refuses_bad_pairs() -> None:
    assert checked_range("scale", [0.5, 2], float, low=0.0) == (0.5, 2.0)
    with pytest.raises(InvalidInputError, match=r"scale must be a \(min, max\) pair.*\[0.0, 1.0\]"):
        checked_range("scale", (0.2, 1.5), float, low=0.0, high=1.0)


@pytest.mark.parametrize(
    ("values", "cast", "message"),
    [
        (0.1, float, r"width must be a \(min, max\) pair of numbers, got 0.1"),
        ((2, 4, 6), int, r"width must be a \(min, max\) pair of numbers, got \(2, 4, 6\)"),
        (("a", 2), float, r"width must be a \(min, max\) pair of numbers"),
        ("12", int, r"width must be a \(min, max\) pair of numbers"),
        ((2.7, 4), int, r"width takes whole numbers, got \(2.7, 4\)"),
    ],
)
def test_checked_range_names_scalars_wrong_lengths_and_fractions(values, cast, message: str) -> None:
    """A scalar raised a bare "'float' object is not iterable", three values "too many values to unpack", and
    (2.7, 4) for a whole-number range became (2, 4) silently."""
    with pytest.raises(InvalidInputError, match=message):
        checked_range("width", values, cast, low=0.0)


def test_a_perlin_blend_factor_of_zero_is_refused_at_construction() -> None:
    """Accepted, then every generate failed with advice about flat images."""
    from anomaly_synth_aug.generators.perlin import PerlinGenerator

    for blend in (0.0, (0.0, 0.0)):
        with pytest.raises(InvalidInputError, match="blend_factor 0 leaves every image unchanged"):
            PerlinGenerator(blend_factor=blend)
    PerlinGenerator(blend_factor=(0.0, 0.5))  # some draws faint, others not

import math

import pytest
import torch

from anomaly_synth_aug.errors import InvalidInputError, MaskError
from anomaly_synth_aug.evaluation.generation_quality import (
    background_psnr,
    classifier_two_sample_test,
    defect_crops,
    diversity_by_type,
    mean_pairwise_distance,
)


def blob_crops(count: int, seed: int, brightness: float = 0.5) -> torch.Tensor:
    """Noisy crops with a Gaussian blob of random position and width: one fixed distribution per brightness."""
    rng = torch.Generator().manual_seed(seed)
    yy, xx = torch.meshgrid(torch.arange(32.0), torch.arange(32.0), indexing="ij")
    centers = torch.rand(count, 2, generator=rng) * 16 + 8
    widths = torch.rand(count, generator=rng) * 4 + 3
    blobs = torch.exp(
        -((yy - centers[:, 0, None, None]) ** 2 + (xx - centers[:, 1, None, None]) ** 2) / (2 * widths[:, None, None] ** 2)
    )
    noise = torch.rand(count, 32, 32, generator=rng) * 0.2
    return (0.3 + brightness * blobs * 0.5 + noise).clamp(0, 1).unsqueeze(1).expand(-1, 3, -1, -1).contiguous()


def test_c2st_is_chance_on_one_distribution() -> None:
    result = classifier_two_sample_test(blob_crops(120, seed=1), blob_crops(120, seed=2), epochs=15, seed=0)
    assert result.train_size == result.test_size == 60
    assert 0.3 < result.auroc < 0.7  # AUROC's sd at 60 vs 60 is ~0.05


def test_c2st_separates_trivially_different_crops() -> None:
    result = classifier_two_sample_test(blob_crops(120, 1, brightness=1.0), blob_crops(80, 2, brightness=-1.0), epochs=15)
    assert result.auroc > 0.95 and result.test_size == 40  # balanced: the larger set is subsampled


def test_c2st_needs_enough_crops() -> None:
    with pytest.raises(InvalidInputError, match="at least 4 crops"):
        classifier_two_sample_test(blob_crops(3, 0), blob_crops(50, 1))


def test_defect_crops_centre_on_the_mask() -> None:
    image = torch.zeros(3, 40, 60)
    mask = torch.zeros(40, 60, dtype=torch.bool)
    mask[10:20, 30:40] = True
    image[:, mask] = 1.0
    (crop,) = defect_crops([image], [mask], size=16, context=0.0)
    assert crop.shape == (3, 16, 16) and crop.min() > 0.99  # the crop is exactly the defect box
    (wide,) = defect_crops([image], [mask], size=16, context=1.0)
    assert wide[:, 8, 8].min() > 0.99 and wide[:, 0, 0].max() < 0.01  # defect in the middle, surface around
    mask[0, 0] = True  # a box reaching the corner: the crop is zero-padded, not shifted
    (corner,) = defect_crops([image], [mask], size=20, context=0.0, zero_outside=True)
    assert corner.shape == (3, 20, 20)
    with pytest.raises(MaskError, match="empty"):
        defect_crops([image], [torch.zeros(40, 60, dtype=torch.bool)])


def test_diversity() -> None:
    same = torch.full((5, 3, 8, 8), 0.4)
    assert mean_pairwise_distance(same) == 0.0 and math.isnan(mean_pairwise_distance(same[:1]))
    pair = torch.stack([torch.zeros(3, 8, 8), torch.ones(3, 8, 8)])
    assert mean_pairwise_distance(pair) == pytest.approx(1.0)  # RMS distance per pixel
    spread = diversity_by_type(torch.cat([same, pair]), ["a"] * 5 + ["b"] * 2)
    assert spread == {"a": 0.0, "b": pytest.approx(1.0)}


def test_background_psnr() -> None:
    source = torch.rand(3, 20, 20)
    mask = torch.zeros(20, 20, dtype=torch.bool)
    mask[5:10, 5:10] = True
    changed = source.clone()
    changed[:, mask] = 1 - changed[:, mask]
    assert background_psnr(source, changed, mask) == math.inf  # bit-exact outside the mask
    drifted = (changed + 0.01 * (~mask)).clamp(0, 1)
    assert 35 < background_psnr(source, drifted, mask) < 45  # ~0.01 error: ~40 dB
    with pytest.raises(InvalidInputError, match="sizes differ"):
        background_psnr(source, changed[:, :10], mask)


def test_defect_contrast_measures_inside_against_the_surrounding_band() -> None:
    from anomaly_synth_aug.evaluation.generation_quality import contrast_by_type, defect_contrast

    image = torch.full((3, 40, 40), 0.5)
    mask = torch.zeros(40, 40, dtype=torch.bool)
    mask[15:25, 15:25] = True
    image[:, mask] = 0.2
    image[:, :3] = 1.0  # far from the defect: outside the 7-px band, must not count
    assert defect_contrast(image, mask) == pytest.approx(0.3)
    assert defect_contrast(torch.full((3, 40, 40), 0.5), mask) == 0.0
    faint = image.clone()
    faint[:, mask] = 0.45
    by_type = contrast_by_type([image, faint], [mask, mask], ["dent", "dent"])
    assert by_type == {"dent": pytest.approx((0.3 + 0.05) / 2)}
    with pytest.raises(MaskError):
        defect_contrast(image, torch.zeros(40, 40, dtype=torch.bool))

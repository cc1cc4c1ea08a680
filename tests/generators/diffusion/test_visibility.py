"""``FeatureContrast``: how far a defect stands out in the detectors' pretrained features; the filter's floors."""

from pathlib import Path

import pytest
import torch

from anomaly_synth_aug.errors import InvalidInputError, MaskError
from anomaly_synth_aug.generators.diffusion import DiffusionAnomalyGenerator
from anomaly_synth_aug.generators.diffusion.patches import CropBox
from anomaly_synth_aug.generators.diffusion.visibility import FeatureContrast, _dilate, faintest_by_type, median_by_type


@pytest.fixture(scope="module")
def contrast() -> FeatureContrast:
    return FeatureContrast()


def striped_surface(size: int = 128) -> torch.Tensor:
    """A grey surface with fine vertical stripes (one channel), the same everywhere."""
    columns = 0.5 + 0.1 * torch.sin(torch.arange(size, dtype=torch.float32) * 1.3)
    return columns.expand(1, size, size).clone()


def centre_mask(size: int = 128, half: int = 12) -> torch.Tensor:
    mask = torch.zeros(size, size, dtype=torch.bool)
    mask[size // 2 - half : size // 2 + half, size // 2 - half : size // 2 + half] = True
    return mask


def test_an_unchanged_surface_has_almost_no_feature_contrast_and_a_defect_has_much(contrast: FeatureContrast) -> None:
    surface, mask = striped_surface(), centre_mask()
    dented = surface.clone()
    dented[:, mask] = 0.1  # a dark, flat dent wipes the stripes out
    faint = surface.clone()
    faint[:, mask] -= 0.03  # the same place, barely darker, stripes kept
    values = contrast([surface, faint, dented], [mask, mask, mask])
    assert values.shape == (3,)
    assert float(values[0]) < 0.2 * float(values[2])  # the padding of a crop would have scored this high
    assert float(values[0]) < float(values[1]) < float(values[2])


def test_rgb_and_grey_images_agree(contrast: FeatureContrast) -> None:
    surface, mask = striped_surface(), centre_mask()
    surface[:, mask] = 0.2
    grey = contrast([surface], [mask])
    rgb = contrast([surface.expand(3, -1, -1)], [mask])
    assert torch.allclose(grey, rgb)


def test_masks_with_nothing_to_compare_are_refused(contrast: FeatureContrast) -> None:
    surface = striped_surface(64)
    with pytest.raises(MaskError, match="non-empty"):
        contrast([surface], [torch.zeros(64, 64, dtype=torch.bool)])
    with pytest.raises(MaskError, match="whole image"):
        contrast([surface], [torch.ones(64, 64, dtype=torch.bool)])


def test_a_ring_or_margin_out_of_range_is_refused() -> None:
    with pytest.raises(InvalidInputError, match="ring >= 1"):
        FeatureContrast(ring=0)
    with pytest.raises(InvalidInputError, match="margin >= 0"):
        FeatureContrast(margin=-1)


def test_median_and_faintest_by_type_group_values() -> None:
    values = torch.tensor([1.0, 3.0, 2.0, 10.0])
    assert median_by_type(values, ["a", "a", "a", "b"]) == {"a": 2.0, "b": 10.0}
    assert faintest_by_type(values, ["a", "a", "a", "b"]) == {"a": 1.0, "b": 10.0}


def test_the_ring_is_the_square_dilation_of_the_mask() -> None:
    region = (torch.rand(1, 1, 70, 90, generator=torch.Generator().manual_seed(0)) > 0.97).float()
    region[..., 0, 0] = region[..., -1, -1] = 1.0  # masks touching the corners
    square = torch.nn.functional.max_pool2d(region, kernel_size=9, stride=1, padding=4)
    assert torch.equal(_dilate(region, 4), square)
    blob = torch.zeros(1, 1, 70, 90)
    blob[..., 3:9, 60:88] = 1.0  # near the top and right edges: the pooled window is clipped
    blob[..., 5, 70] = 0.0  # not a full rectangle
    box = CropBox(3, 60, 6, 28)
    expected = torch.nn.functional.max_pool2d(blob, kernel_size=9, stride=1, padding=4)
    assert torch.equal(_dilate(blob, 4, box), expected)


@pytest.mark.parametrize("margin", [0, 64])
def test_pooling_the_ring_around_the_box_changes_no_value(
    contrast: FeatureContrast, margin: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Masks touching each edge of the image: the same contrast with the ring pooled around the box or everywhere."""
    import anomaly_synth_aug.generators.diffusion.visibility as visibility

    surface = striped_surface(96)
    masks = []
    for rows, cols in ((slice(0, 10), slice(30, 50)), (slice(86, 96), slice(0, 20)), (slice(40, 60), slice(80, 96))):
        mask = torch.zeros(96, 96, dtype=torch.bool)
        mask[rows, cols] = True
        masks.append(mask)
    images = [surface.masked_fill(mask, 0.1) for mask in masks]
    measure = FeatureContrast(margin=margin)
    boxed = measure(images, masks)
    whole_dilate = visibility._dilate
    monkeypatch.setattr(visibility, "_dilate", lambda region, radius, box=None: whole_dilate(region, radius))
    assert torch.equal(measure(images, masks), boxed)


def test_without_a_margin_the_ring_still_lies_on_the_image() -> None:
    surface, mask = striped_surface(), centre_mask()
    surface[:, mask] = 0.1
    assert float(FeatureContrast(margin=0)([surface], [mask])[0]) > 0.0


@pytest.fixture(scope="module")
def fitted() -> DiffusionAnomalyGenerator:
    from diffusion_helpers import TINY, normals, shots

    generator = DiffusionAnomalyGenerator(
        category="tiles", guidance_scale=1.0, max_retries=1, visibility_filter=True,
        **{**TINY, "max_steps": 4, "batch_size": 4, "num_inference_steps": 3, "progress": False},
    )  # fmt: skip
    return generator.fit(normals(), shots(), generator=torch.Generator().manual_seed(0))


def test_the_fit_records_each_types_faintest_shot_and_saving_keeps_it(
    fitted: DiffusionAnomalyGenerator, tmp_path: Path
) -> None:
    from diffusion_helpers import shots

    from anomaly_synth_aug.generators.base import AnomalyGenerator

    by_type: dict[str, list] = {}
    for shot in shots():
        by_type.setdefault(shot.defect_type, []).append(shot)
    assert set(fitted.shot_visibility) == set(by_type)
    measure = FeatureContrast()
    for name, members in by_type.items():
        values = measure([s.image for s in members], [s.mask for s in members])
        assert fitted.shot_visibility[name] == pytest.approx(float(values.min()), rel=1e-4)
    restored = AnomalyGenerator.load(fitted.save(tmp_path / "gen"))
    assert restored.shot_visibility == pytest.approx(fitted.shot_visibility)


def test_defects_fainter_than_every_shot_are_regenerated_and_counted(
    fitted: DiffusionAnomalyGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusion_helpers import normals

    monkeypatch.setattr(fitted, "shot_visibility", {name: float("inf") for name in fitted.shot_visibility})
    batch = fitted.generate(normals(2), defect_types="dent", generator=0)
    assert batch.stats["reasons"].get("faint", 0) >= 2 and batch.stats["exhausted"] == 2
    assert batch.stats["attempts"] == 4  # each image: a first draw and one retry, the last one kept
    monkeypatch.setattr(fitted, "shot_visibility", {name: 0.0 for name in fitted.shot_visibility})
    assert "faint" not in fitted.generate(normals(2), defect_types="dent", generator=0).stats["reasons"]
    monkeypatch.setattr(fitted, "visibility_filter", False)
    monkeypatch.setattr(fitted, "shot_visibility", {name: float("inf") for name in fitted.shot_visibility})
    assert "faint" not in fitted.generate(normals(2), defect_types="dent", generator=0).stats["reasons"]


def test_a_fit_without_floors_says_to_fit_again(
    fitted: DiffusionAnomalyGenerator, monkeypatch: pytest.MonkeyPatch
) -> None:
    from diffusion_helpers import normals

    from anomaly_synth_aug.errors import NotFittedError

    monkeypatch.setattr(fitted, "shot_visibility", {})  # as loaded from a folder saved before fit version 4
    with pytest.raises(NotFittedError, match="fit the generator again"):
        fitted.generate(normals(1), defect_types="dent", generator=0)


def test_a_shot_whose_mask_covers_the_whole_image_leaves_the_floors_to_the_others() -> None:
    """The floors were measured on every shot, filter on or off, and a whole-image mask has no surrounding ring:
    the default fit failed after its whole training run."""
    from diffusion_helpers import TINY, normals, shots, surface

    from anomaly_synth_aug.data.sample import AnomalySample

    whole = AnomalySample(image=surface(77) * 0.5, mask=torch.ones(40, 48, dtype=torch.bool), defect_type="dent")
    generator = DiffusionAnomalyGenerator(**{**TINY, "max_steps": 2, "batch_size": 4, "progress": False})
    generator.fit(normals(), [*shots(), whole], generator=torch.Generator().manual_seed(0))
    framed = [shot for shot in shots() if shot.defect_type == "dent"]
    faintest = FeatureContrast()([s.image for s in framed], [s.mask for s in framed]).min()
    assert generator.shot_visibility["dent"] == pytest.approx(float(faintest), rel=1e-4)


def test_a_type_whose_shots_all_cover_their_image_is_named_as_unjudged(caplog: pytest.LogCaptureFixture) -> None:
    from diffusion_helpers import TINY, normals, shots, surface

    from anomaly_synth_aug.data.sample import AnomalySample

    flood = AnomalySample(image=surface(78) * 0.5, mask=torch.ones(40, 48, dtype=torch.bool), defect_type="flood")
    generator = DiffusionAnomalyGenerator(**{**TINY, "max_steps": 1, "batch_size": 4, "progress": False})
    with caplog.at_level("WARNING"):
        generator.fit(normals(), [*shots(), flood], generator=torch.Generator().manual_seed(0))
    assert "flood" not in generator.shot_visibility and "Every shot of flood covers its whole image" in caplog.text


def test_a_defect_covering_the_whole_image_is_left_unjudged(fitted: DiffusionAnomalyGenerator) -> None:
    """With no surface around it to compare, the filter raised MaskError and the whole batch was lost."""
    from diffusion_helpers import normals

    image = normals(1)[0]
    whole = torch.ones(image.shape[-2:], dtype=torch.bool)
    batch = fitted.generate([image], [whole], defect_types="dent", generator=0)
    assert batch.masks[0].any() and "faint" not in batch.stats["reasons"]

"""``MixtureGenerator`` beyond the shared contract (``test_contract.py`` runs that on a mixture too)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from classic_helpers import normals, shots, surface

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators import (
    AnomalyGenerator,
    CutPasteGenerator,
    MixtureGenerator,
    PerlinGenerator,
    RealShotPasteGenerator,
)


def _mixture(weights: list[float]) -> MixtureGenerator:
    mixture = MixtureGenerator([RealShotPasteGenerator(), PerlinGenerator()], weights=weights)
    return mixture.fit(normals(), shots(), generator=torch.Generator().manual_seed(0))


def _images(count: int) -> list[torch.Tensor]:
    return [surface(40, 48, seed=i) for i in range(count)]


def test_weights_set_the_share_of_each_component_for_untyped_requests() -> None:
    mixture = _mixture([3, 1])
    shot_types = set(RealShotPasteGenerator().fit(normals(), shots()).defect_types)
    batch = mixture.generate(_images(80), generator=0)
    pasted = sum(name in shot_types for name in batch.defect_types)
    assert 45 <= pasted <= 75  # about 3/4 of 80
    assert batch.stats["components"] == {"RealShotPasteGenerator": pasted, "PerlinGenerator": 80 - pasted}
    only_perlin = _mixture([0, 1]).generate(_images(6), generator=0)
    assert only_perlin.defect_types == ["perlin"] * 6


def test_a_typed_request_comes_back_with_its_type() -> None:
    """A sample cache asks for each type and refuses another: a 'perlin' answer to 'blowhole' broke a cached pool."""
    mixture = _mixture([3, 1])
    wanted = mixture.defect_types[0]  # a shot type: only the paste generator makes it
    assert mixture.generate(_images(20), defect_types=wanted, generator=1).defect_types == [wanted] * 20
    assert mixture.generate(_images(20), defect_types="perlin", generator=1).defect_types == ["perlin"] * 20
    assert mixture.defect_types == [*RealShotPasteGenerator().fit(normals(), shots()).defect_types, "perlin"]
    with pytest.raises(InvalidInputError, match="no component with a non-zero weight makes 'perlin'"):
        _mixture([1, 0]).generate(_images(2), defect_types="perlin", generator=0)


def test_a_mixture_fills_a_sample_cache(tmp_path: Path) -> None:
    from torchvision.utils import save_image

    from anomaly_synth_aug.cache.generation import generate_cache

    (tmp_path / "normals").mkdir()
    sources = [tmp_path / "normals" / f"{i}.png" for i in range(3)]
    for image, path in zip(_images(3), sources, strict=True):
        save_image(image, path)
    mixture = _mixture([1, 1])
    entries = generate_cache(
        tmp_path / "cache", mixture, sources, samples_per_type=2, trainer_kwargs={"accelerator": "cpu"}
    )
    assert sorted(e.defect_type for e in entries) == sorted(mixture.defect_types * 2)


def test_only_unfitted_components_are_fitted() -> None:
    paste = RealShotPasteGenerator().fit(normals(), shots())
    fingerprint = paste.fingerprint()
    mixture = MixtureGenerator([paste, CutPasteGenerator()])
    assert mixture.requires_fit and mixture.is_fitted  # its one learned component is already fitted
    mixture.fit(normals(), shots()[:1])  # would change the paste generator if it were refitted
    assert mixture.components[0].fingerprint() == fingerprint
    assert not MixtureGenerator([CutPasteGenerator()]).requires_fit


def test_a_components_fit_does_not_depend_on_which_others_arrived_fitted() -> None:
    """Seeds were drawn only for the components still to fit: one fitted beforehand shifted every later stream."""
    from anomaly_synth_aug.generators.poisson import PoissonBlendGenerator

    normals = [torch.full((3, 16, 16), i / 10) for i in range(8)]

    def second_pool(first: PoissonBlendGenerator) -> list[float]:
        mixture = MixtureGenerator([first, PoissonBlendGenerator(pool_size=3)])
        mixture.fit(normals, [], generator=torch.Generator().manual_seed(0))
        return [float(patch[0, 0, 0]) for patch in mixture.components[1]._pool]

    fitted_first = PoissonBlendGenerator(pool_size=3).fit(normals, [], generator=torch.Generator().manual_seed(7))
    assert second_pool(fitted_first) == second_pool(PoissonBlendGenerator(pool_size=3))


def test_save_load_keeps_components_and_weights_change_on_load(tmp_path: Path) -> None:
    mixture = _mixture([1, 1])
    folder = mixture.save(tmp_path / "mixture")
    assert (folder / "component_0" / "generator.json").is_file()
    loaded = AnomalyGenerator.load(folder, weights=[0, 1])
    assert isinstance(loaded, MixtureGenerator) and loaded.weights == [0.0, 1.0]
    assert [type(c) for c in loaded.components] == [RealShotPasteGenerator, PerlinGenerator]
    assert loaded.generate(_images(3), generator=0).defect_types == ["perlin"] * 3
    with pytest.raises(InvalidInputError, match="cannot change"):
        AnomalyGenerator.load(folder, generators=["PerlinGenerator"])


def test_a_nested_mixture_loads_back(tmp_path: Path) -> None:
    """A component was rebuilt by calling its class without arguments first, which a mixture cannot take."""
    inner = MixtureGenerator([PerlinGenerator(), CutPasteGenerator()], weights=[1, 0])
    outer = MixtureGenerator([RealShotPasteGenerator(), inner], weights=[0, 1])
    outer.fit(normals(), shots(), generator=torch.Generator().manual_seed(0))
    loaded = AnomalyGenerator.load(outer.save(tmp_path / "nested"))
    assert isinstance(loaded.components[1], MixtureGenerator) and loaded.components[1].weights == [1.0, 0.0]
    assert loaded.fingerprint() == outer.fingerprint()
    assert loaded.generate(_images(2), generator=0).defect_types == ["perlin"] * 2


def test_components_by_name_and_bad_arguments() -> None:
    assert isinstance(MixtureGenerator(["PerlinGenerator", "CutPasteGenerator"]).components[1], CutPasteGenerator)
    with pytest.raises(InvalidInputError, match="at least one"):
        MixtureGenerator([])
    with pytest.raises(InvalidInputError, match="weight"):
        MixtureGenerator(["PerlinGenerator"], weights=[-1])
    with pytest.raises(InvalidInputError, match="weight"):
        MixtureGenerator(["PerlinGenerator", "CutPasteGenerator"], weights=[1])
    with pytest.raises(InvalidInputError, match="cannot make a generator"):
        MixtureGenerator(["NoSuchGenerator"])

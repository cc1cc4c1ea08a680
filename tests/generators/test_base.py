"""The ``AnomalyGenerator`` base class: input checks, fitting, registry and persistence."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from anomaly_synth_aug.data.sample import AnomalySample
from anomaly_synth_aug.errors import (
    CheckpointMismatchError,
    CorruptFileError,
    InvalidInputError,
    MaskError,
    NotFittedError,
    UnknownDefectTypeError,
)
from anomaly_synth_aug.generators.base import (
    CONFIG_FILE,
    FORMAT_VERSION,
    AnomalyGenerator,
    GeneratedBatch,
)
from anomaly_synth_aug.generators.classic import ClassicGenerator


class StampGenerator(AnomalyGenerator):
    """Writes ``value`` into a ``size`` square at a seeded position; records the placements it got."""

    def __init__(self, value: float = 1.0, size: tuple[int, int] = (2, 3)) -> None:
        super().__init__()
        self.value = value
        self.size = size
        self.placements: list[torch.Tensor | None] = []

    @property
    def defect_types(self) -> list[str]:
        return ["stamp", "other"]

    def _generate(self, images, masks, defect_types, generator) -> GeneratedBatch:
        self.placements.extend(masks)
        out_images, out_masks = [], []
        for image in images:
            top = int(torch.randint(0, image.shape[1] - self.size[0] + 1, (1,), generator=generator))
            mask = torch.zeros(image.shape[-2:], dtype=torch.bool)
            mask[top : top + self.size[0], : self.size[1]] = True
            out_images.append(torch.where(mask, torch.full_like(image, self.value), image))
            out_masks.append(mask)
        return GeneratedBatch(out_images, out_masks, [t or "stamp" for t in defect_types])


class LearnedStampGenerator(StampGenerator):
    """A ``StampGenerator`` that must be fitted; learns its value from the shots and saves it."""

    requires_fit = True
    learned: float | None = None

    def _fit(self, normal_images, shots, generator) -> None:
        self.fit_images = normal_images
        self.learned = float(torch.stack([s.image[:, s.mask].mean() for s in shots]).mean())

    def state_fingerprint(self) -> str:
        return f"{self.learned}"

    def _save_state(self, directory: Path) -> None:
        (directory / "state.json").write_text(json.dumps({"learned": self.learned}))

    def _load_state(self, directory: Path) -> None:
        self.learned = json.loads((directory / "state.json").read_text())["learned"]


def _shot(defect_type: str = "crack") -> AnomalySample:
    mask = torch.zeros(8, 10, dtype=torch.bool)
    mask[2:4, 3:6] = True
    return AnomalySample(image=torch.rand(3, 8, 10), mask=mask, label=1, defect_type=defect_type)


def _images(count: int = 2) -> list[torch.Tensor]:
    return [torch.rand(3, 8, 10) for _ in range(count)]


# ------------------------------------------------------------------- registry
def test_concrete_subclasses_register_and_abstract_ones_do_not() -> None:
    assert AnomalyGenerator._registry["StampGenerator"] is StampGenerator
    assert "ClassicGenerator" not in AnomalyGenerator._registry
    assert issubclass(ClassicGenerator, AnomalyGenerator)


# -------------------------------------------------------------- input checks
def test_mask_count_must_match_image_count() -> None:
    with pytest.raises(MaskError, match="got 1 masks for 2 images"):
        StampGenerator().generate(_images(2), masks=[torch.ones(8, 10, dtype=torch.bool)])


def test_mask_size_must_match_image_size() -> None:
    with pytest.raises(MaskError, match=r"mask 1 has size \(8, 9\).*\(8, 10\)"):
        StampGenerator().generate(_images(2), masks=[None, torch.ones(8, 9, dtype=torch.bool)])


def test_empty_placement_mask_is_rejected() -> None:
    with pytest.raises(MaskError, match="mask 0 is empty"):
        StampGenerator().generate(_images(1), masks=[torch.zeros(8, 10, dtype=torch.bool)])


def test_unknown_defect_type_names_the_known_ones() -> None:
    with pytest.raises(UnknownDefectTypeError, match=r"'dent'.*\['other', 'stamp'\]"):
        StampGenerator().generate(_images(2), defect_types=["stamp", "dent"])


def test_defect_type_count_must_match() -> None:
    with pytest.raises(InvalidInputError, match="got 1 defect types for 2 images"):
        StampGenerator().generate(_images(2), defect_types=["stamp"])


def test_one_defect_type_string_applies_to_every_image() -> None:
    # Regression: a plain string used to be split into characters ("o", "t", "h", ...).
    batch = StampGenerator().generate(_images(3), defect_types="other")
    assert batch.defect_types == ["other"] * 3


def test_anomalib_style_mask_batch_is_one_mask_per_image() -> None:
    # Regression: a [B, 1, H, W] tensor used to count as a single mask.
    generator = StampGenerator()
    placements = torch.zeros(2, 1, 8, 10, dtype=torch.bool)
    placements[:, :, 1:3, 1:3] = True
    generator.generate(_images(2), masks=placements)
    assert [tuple(m.shape) for m in generator.placements] == [(8, 10), (8, 10)]


def test_tensor_batch_and_grayscale_inputs_are_normalised() -> None:
    batch = StampGenerator().generate(torch.rand(2, 1, 8, 10), generator=torch.Generator().manual_seed(0))
    assert [tuple(img.shape) for img in batch.images] == [(3, 8, 10), (3, 8, 10)]
    assert StampGenerator().generate([]).images == []


# ----------------------------------------------------------------------- fit
def test_learned_generator_refuses_to_generate_before_fit() -> None:
    with pytest.raises(NotFittedError, match="LearnedStampGenerator must be fitted"):
        LearnedStampGenerator().generate(_images(1))
    fitted = LearnedStampGenerator().fit(_images(2), [_shot()])
    assert fitted.is_fitted and len(fitted.generate(_images(1))) == 1


def test_a_refit_that_fails_leaves_the_generator_unfitted(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second fit interrupted half-way kept the first fit's "fitted" flag over half-learnt state, and saved so."""
    generator = LearnedStampGenerator().fit(_images(2), [_shot()])

    def interrupted(normal_images, shots, seed) -> None:
        generator.learned = None  # half-learnt
        raise KeyboardInterrupt

    monkeypatch.setattr(generator, "_fit", interrupted)
    with pytest.raises(KeyboardInterrupt):
        generator.fit(_images(2), [_shot("scratch")])
    assert not generator.is_fitted
    with pytest.raises(NotFittedError):
        generator.generate(_images(1))


def test_fit_normalises_normal_images_like_generate() -> None:
    # Regression: fit used to hand raw uint8 / grayscale / batched tensors to _fit.
    generator = LearnedStampGenerator().fit(torch.full((2, 1, 8, 10), 255, dtype=torch.uint8), [_shot()])
    assert [(tuple(img.shape), img.dtype) for img in generator.fit_images] == [((3, 8, 10), torch.float32)] * 2
    assert all(bool((img == 1.0).all()) for img in generator.fit_images)


def test_fit_refuses_a_shot_with_an_empty_mask() -> None:
    empty = AnomalySample(image=torch.rand(3, 8, 10), mask=torch.zeros(8, 10), defect_type="crack")
    with pytest.raises(MaskError, match="empty mask"):
        LearnedStampGenerator().fit([], [empty])


def test_one_seed_stream_per_image_gives_each_image_its_single_call_result() -> None:
    """generate(images, generator=[g0, g1, ...]) equals generate([image_i], generator=g_i), for any batching."""
    generator = StampGenerator(value=0.5)
    images = _images(3)
    batched = generator.generate(images, generator=[torch.Generator().manual_seed(s) for s in (4, 5, 6)])
    for image, seed, out, mask in zip(images, (4, 5, 6), batched.images, batched.masks, strict=True):
        alone = generator.generate([image], generator=torch.Generator().manual_seed(seed))
        assert torch.equal(out, alone.images[0]) and torch.equal(mask, alone.masks[0])
    with pytest.raises(InvalidInputError, match="seed sources for 3 images"):
        generator.generate(images, generator=[torch.Generator()])


def test_integer_seeds_per_image_work_as_a_single_integer_seed_does() -> None:
    """``generator=[4, 5, 6]`` was refused as "got 3 seed sources for 3 images", blaming the count."""
    generator = StampGenerator(value=0.5)
    images = _images(3)
    by_int = generator.generate(images, generator=[4, 5, 6])
    by_stream = generator.generate(images, generator=[torch.Generator().manual_seed(s) for s in (4, 5, 6)])
    assert all(torch.equal(a, b) for a, b in zip(by_int.images, by_stream.images, strict=True))
    with pytest.raises(InvalidInputError, match="must be a torch.Generator or an integer seed, got \\['str'\\]"):
        generator.generate(images, generator=["4", 5, 6])


def test_concat_keeps_order_and_sums_counters() -> None:
    image, mask = torch.zeros(3, 2, 2), torch.ones(2, 2, dtype=torch.bool)
    first = GeneratedBatch([image], [mask], ["a"], {"attempts": 2, "reasons": {"faint": 1}, "mode": "x"})
    second = GeneratedBatch([image + 1], [mask], ["b"], {"attempts": 1, "reasons": {"faint": 2, "edge": 1}})
    joined = GeneratedBatch.concat([first, second])
    assert joined.defect_types == ["a", "b"] and torch.equal(joined.images[1], image + 1)
    assert joined.stats == {"attempts": 3, "reasons": {"faint": 3, "edge": 1}, "mode": "x"}


# ---------------------------------------------------------------- persistence
def test_save_load_round_trip(tmp_path: Path) -> None:
    original = StampGenerator(value=0.25, size=(3, 4))
    folder = original.save(tmp_path / "stamp")
    meta = json.loads((folder / CONFIG_FILE).read_text())
    assert meta["class"] == "StampGenerator" and meta["config"] == {"value": 0.25, "size": [3, 4]}
    loaded = StampGenerator.load(folder)
    assert isinstance(loaded, StampGenerator) and loaded.fingerprint() == original.fingerprint()
    images = _images(2)
    first = original.generate(images, generator=torch.Generator().manual_seed(1))
    second = loaded.generate(images, generator=torch.Generator().manual_seed(1))
    assert all(torch.equal(a, b) for a, b in zip(first.images, second.images, strict=True))


def test_save_load_keeps_learned_state_and_fitted_flag(tmp_path: Path) -> None:
    fitted = LearnedStampGenerator().fit(_images(1), [_shot()])
    loaded = AnomalyGenerator.load(fitted.save(tmp_path / "fitted"))
    assert loaded.is_fitted and loaded.learned == pytest.approx(fitted.learned)
    assert loaded.fingerprint() == fitted.fingerprint()
    unfitted = AnomalyGenerator.load(LearnedStampGenerator().save(tmp_path / "unfitted"))
    with pytest.raises(NotFittedError):
        unfitted.generate(_images(1))


def test_load_state_refuses_a_folder_saved_before_fitting(tmp_path: Path) -> None:
    """``load_state`` ignored the folder's ``"fitted": false``: the generator said it was fitted and failed deep
    inside ``generate``."""
    folder = LearnedStampGenerator().save(tmp_path / "unfitted")
    generator = LearnedStampGenerator()
    with pytest.raises(InvalidInputError, match="never fitted") as error:
        generator.load_state(folder)
    assert str(folder) in str(error.value) and not generator.is_fitted


def test_files_already_in_the_save_folder_are_not_made_part_of_the_generator(tmp_path: Path) -> None:
    """Every file in the folder was checksummed: deleting a log that happened to be there broke loading."""
    folder = tmp_path / "fit"
    folder.mkdir()
    (folder / "train.log").write_text("step 1\n")
    fitted = LearnedStampGenerator().fit(_images(1), [_shot()])
    fitted.save(folder)
    assert "train.log" not in json.loads((folder / CONFIG_FILE).read_text())["checksums"]
    (folder / "train.log").unlink()
    assert AnomalyGenerator.load(folder).is_fitted
    fitted.save(folder)  # the same state saved again rewrites identical files: still the generator's own
    checksums = json.loads((folder / CONFIG_FILE).read_text())["checksums"]
    assert checksums and set(checksums) == {p.name for p in folder.iterdir() if p.name != CONFIG_FILE}


class TunableStampGenerator(LearnedStampGenerator):
    """``value`` changes only how stamps are drawn; ``size`` shapes the (pretend) fit."""

    sampling_options = frozenset({"value"})


def test_load_overrides_sampling_options_only(tmp_path: Path) -> None:
    folder = TunableStampGenerator(value=0.25).fit(_images(1), [_shot()]).save(tmp_path / "tunable")
    loaded = AnomalyGenerator.load(folder, value=0.75)
    assert isinstance(loaded, TunableStampGenerator) and loaded.value == 0.75 and loaded.is_fitted
    with pytest.raises(InvalidInputError, match=r"cannot change \['size'\] on load.*Fix: fit a new"):
        AnomalyGenerator.load(folder, size=(1, 1))
    with pytest.raises(InvalidInputError, match=r"TunableStampGenerator has no option 'guidance'.*Fix: change only"):
        AnomalyGenerator.load(folder, guidance=3)  # said "cannot change ... they shape what fit() learned"


def test_load_state_refuses_other_training_settings(tmp_path: Path) -> None:
    """A saved fit is loaded in place only when nothing but sampling options differ (it once was reused blindly)."""
    folder = TunableStampGenerator(value=0.25, size=(2, 3)).fit(_images(1), [_shot()]).save(tmp_path / "fit")
    reused = TunableStampGenerator(value=0.5, size=(2, 3)).load_state(folder)
    assert reused.value == 0.5 and reused.is_fitted
    with pytest.raises(InvalidInputError, match=r"other settings: \['size'\]"):
        TunableStampGenerator(value=0.25, size=(4, 4)).load_state(folder)
    with pytest.raises(InvalidInputError, match="holds a TunableStampGenerator"):
        LearnedStampGenerator(value=0.25).load_state(folder)


def test_fingerprint_follows_config() -> None:
    assert StampGenerator(value=0.5).fingerprint() != StampGenerator(value=0.6).fingerprint()
    assert StampGenerator(value=0.5).fingerprint() == StampGenerator(value=0.5).fingerprint()


def test_load_errors_name_the_folder_and_fix(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=f"no {CONFIG_FILE} here.*Fix:"):
        AnomalyGenerator.load(tmp_path)
    (tmp_path / CONFIG_FILE).write_text("{not json")
    with pytest.raises(InvalidInputError, match="not valid JSON"):
        AnomalyGenerator.load(tmp_path)
    (tmp_path / CONFIG_FILE).write_text(json.dumps({"class": "NoSuchGenerator", "config": {}}))
    with pytest.raises(InvalidInputError, match="unknown generator class 'NoSuchGenerator'"):
        AnomalyGenerator.load(tmp_path)
    folder = StampGenerator().save(tmp_path / "stamp")
    with pytest.raises(InvalidInputError, match="holds a StampGenerator, not a LearnedStampGenerator"):
        LearnedStampGenerator.load(folder)


def test_load_refuses_a_newer_format_version(tmp_path: Path) -> None:
    """A folder written by a newer release must fail with the fix, not load half-understood state."""
    folder = StampGenerator().save(tmp_path / "stamp")
    meta = json.loads((folder / CONFIG_FILE).read_text())
    meta["format_version"] = FORMAT_VERSION + 1
    (folder / CONFIG_FILE).write_text(json.dumps(meta))
    with pytest.raises(CheckpointMismatchError, match=r"format version 2.*Fix: upgrade anomaly_synth_aug"):
        AnomalyGenerator.load(folder)


@pytest.mark.slow
def test_base_load_finds_a_packaged_generator_whose_module_was_never_imported(tmp_path: Path) -> None:
    """The diffusion generator is imported lazily; loading a saved one through the base class must still work."""
    import subprocess
    import sys

    from anomaly_synth_aug.generators.diffusion import DiffusionAnomalyGenerator

    normal = torch.full((3, 24, 24), 0.5)
    mask = torch.zeros(24, 24, dtype=torch.bool)
    mask[8:14, 8:14] = True
    shot = AnomalySample(image=torch.where(mask, 0.1, normal), mask=mask, label=1, defect_type="dent")
    tiny = {"patch_size": 16, "block_out_channels": (8, 16), "max_steps": 1, "max_minutes": None, "progress": False}
    fitted = DiffusionAnomalyGenerator(**tiny).fit([normal], [shot], generator=torch.Generator().manual_seed(0))
    folder = fitted.save(tmp_path / "saved")
    load = (
        "import sys; from anomaly_synth_aug.generators.base import AnomalyGenerator; "
        "assert 'anomaly_synth_aug.generators.diffusion.generator' not in sys.modules; "
        f"print(type(AnomalyGenerator.load({str(folder)!r})).__name__)"
    )
    out = subprocess.run([sys.executable, "-c", load], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "DiffusionAnomalyGenerator"


def test_a_tampered_state_file_is_refused_naming_it(tmp_path: Path) -> None:
    """Flipped bytes in a saved state used to load silently (the saved fingerprint was never checked)."""
    folder = LearnedStampGenerator().fit(_images(1), [_shot()]).save(tmp_path / "gen")
    assert set(json.loads((folder / CONFIG_FILE).read_text())["checksums"]) == {"state.json"}
    AnomalyGenerator.load(folder)  # intact: loads
    (folder / "state.json").write_text(json.dumps({"learned": 13.2}))
    with pytest.raises(CorruptFileError, match=r"state\.json: the file's checksum differs"):
        AnomalyGenerator.load(folder)
    (folder / "state.json").unlink()
    with pytest.raises(CorruptFileError, match=r"state\.json: a file of the saved generator is missing"):
        AnomalyGenerator.load(folder)


@pytest.mark.parametrize("version", [-7, 0, "1", True])
def test_impossible_format_versions_are_refused(tmp_path: Path, version) -> None:
    folder = StampGenerator().save(tmp_path / "stamp")
    meta = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**meta, "format_version": version}))
    with pytest.raises(CheckpointMismatchError, match="format version"):
        AnomalyGenerator.load(folder)


def test_a_json_list_is_refused_with_the_file_named(tmp_path: Path) -> None:
    (tmp_path / CONFIG_FILE).write_text("[1, 2]")
    with pytest.raises(CorruptFileError, match=f"{CONFIG_FILE}: expected a JSON object, found a list"):
        AnomalyGenerator.load(tmp_path)
    with pytest.raises(CorruptFileError, match="expected a JSON object"):
        StampGenerator().load_state(tmp_path)


@pytest.mark.parametrize(
    ("config", "message"),
    [
        ({"old_option": 1}, r"CutPasteGenerator takes no option 'old_option'"),
        ({"area_ratio": 0.1}, r"CutPasteGenerator: area_ratio must be a \(min, max\) pair"),
    ],
)
def test_a_saved_option_the_class_cannot_take_names_the_file(tmp_path: Path, config: dict, message: str) -> None:
    """An unknown key in generator.json (another version, a hand edit) was a bare TypeError, and a value the class
    refuses lost the file it came from."""
    from anomaly_synth_aug.generators.cutpaste import CutPasteGenerator

    folder = CutPasteGenerator().save(tmp_path / "cutpaste")
    meta = json.loads((folder / CONFIG_FILE).read_text())
    (folder / CONFIG_FILE).write_text(json.dumps({**meta, "config": {**meta["config"], **config}}))
    with pytest.raises(InvalidInputError, match=message) as error:
        AnomalyGenerator.load(folder)
    assert str(folder / CONFIG_FILE) in str(error.value) and "Fix:" in str(error.value)

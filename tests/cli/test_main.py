"""The ``anomaly-synth-aug`` command line: help, configs, and fit-generator -> generate -> verify on a tiny dataset."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from anomaly_synth_aug.generators.fit_store import FIT_FILE
from anomaly_synth_aug.cli.main import EXIT_BAD_INPUT, SUBCOMMANDS, main
from anomaly_synth_aug.generators.base import CONFIG_FILE

PERLIN = "anomaly_synth_aug.generators.perlin.PerlinGenerator"
REAL_PASTE = "anomaly_synth_aug.generators.real_paste.RealShotPasteGenerator"


def run_cli(*args: str) -> int:
    return main([str(arg) for arg in args])


def test_top_level_help_lists_every_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("--help") == 0 and main([]) == 0
    out = capsys.readouterr().out
    for name in ("fit-generator", "generate", "verify", "benchmark", "demo", "backbone"):
        assert name in out
    assert run_cli("fit-generatr") == EXIT_BAD_INPUT
    assert "unknown subcommand 'fit-generatr'" in capsys.readouterr().err


@pytest.mark.slow
def test_top_level_help_imports_no_subcommand() -> None:
    """``--help`` took 9-23 s because it imported anomalib, Lightning and diffusers for every subcommand."""
    code = (
        "import sys\n"
        "from anomaly_synth_aug.cli.main import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"  # an argparse-style exit must not skip the check below
        "    pass\n"
        "heavy = [m for m in ('anomalib', 'lightning', 'diffusers', 'torch') if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert "HEAVY []" in done.stdout and "fit-generator" in done.stdout  # the help was printed, nothing heavy loaded


def test_verify_takes_the_cache_folder_as_documented(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """The README says ``verify <cache_dir>``; only ``--cache_dir`` used to be accepted."""
    positional = run_cli("verify", tmp_path / "missing")
    out_positional = capsys.readouterr()
    named = run_cli("verify", "--cache_dir", tmp_path / "missing")
    out_named = capsys.readouterr()
    assert positional == named and out_positional.out == out_named.out and out_positional.err == out_named.err


def test_every_packaged_generator_works_by_its_short_name(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """``--generator DiffusionAnomalyGenerator`` was refused ("Expected a dot import path string")."""
    with pytest.raises(SystemExit):
        run_cli("fit-generator", "--help")
    listed = capsys.readouterr().out
    assert "DiffusionAnomalyGenerator" in listed and "RealShotPasteGenerator" in listed
    import anomaly_synth_aug

    names = [n for n in anomaly_synth_aug.__all__ if n.endswith("Generator") and n not in ("AnomalyGenerator", "ClassicGenerator")]
    assert "MixtureGenerator" in names and "DiffusionAnomalyGenerator" in names
    for name in names:
        if name == "MixtureGenerator":  # needs its components: given as a list of class names
            extra = ["--generator.generators", "[PerlinGenerator, CutPasteGenerator]"]
        else:
            extra = []
        with pytest.raises(SystemExit):
            run_cli("fit-generator", "--generator", name, *extra, "--print_config")
        assert f"class_path: anomaly_synth_aug.{name}" in capsys.readouterr().out, name


def test_a_misspelt_generator_is_one_line_listing_the_names(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli("fit-generator", "--data", "x", "--generator", "Diffusion") == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "unknown generator 'Diffusion'" in err and "DiffusionAnomalyGenerator" in err and "usage" not in err


@pytest.mark.parametrize("subcommand", sorted(SUBCOMMANDS))
def test_each_subcommand_has_help(subcommand: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        run_cli(subcommand, "--help")
    assert stopped.value.code == 0
    out = capsys.readouterr().out
    assert "--print_config" in out and "--config" in out
    first_doc_line = SUBCOMMANDS[subcommand].load().__doc__.strip().splitlines()[0]
    assert first_doc_line[:40] in " ".join(out.split())


def test_print_config_round_trips_through_a_yaml_config(
    tmp_path: Path, tiny_mvtec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    output = tmp_path / "generators"
    with pytest.raises(SystemExit):
        run_cli(
            "fit-generator", "--data", tiny_mvtec, "--generator", PERLIN, "--generator.dual_mask", "true",
            "--output", output, "--print_config",
        )  # fmt: skip
    config = yaml.safe_load(capsys.readouterr().out)
    assert config["generator"] == {
        "class_path": PERLIN,
        "init_args": {**config["generator"]["init_args"], "dual_mask": True},
    }
    assert not output.exists()  # printing the config runs nothing
    config_file = tmp_path / "fit.yaml"
    config_file.write_text(yaml.safe_dump(config))
    assert run_cli("fit-generator", "--config", config_file) == 0
    saved = json.loads((saved_folder(capsys) / CONFIG_FILE).read_text())
    assert saved["class"] == "PerlinGenerator" and saved["config"]["dual_mask"] is True


def test_fit_generate_verify(tmp_path: Path, tiny_mvtec: Path, capsys: pytest.CaptureFixture[str]) -> None:
    generators, cache = tmp_path / "generators", tmp_path / "cache"
    assert run_cli("fit-generator", "--data", tiny_mvtec, "--generator", REAL_PASTE, "--output", generators) == 0
    out = capsys.readouterr().out
    assert "fitted" in out
    folder = Path(out.split("saved in ")[-1].strip())
    assert folder.parent == generators / "tiny" and json.loads((folder / FIT_FILE).read_text())["category"] == "tiny"
    assert run_cli("fit-generator", "--data", tiny_mvtec, "--generator", REAL_PASTE, "--output", generators) == 0
    assert "loaded" in capsys.readouterr().out  # same data and config: the stored fit is reused

    assert (
        run_cli(
            "generate", "--generator_dir", folder, "--data", tiny_mvtec, "--cache_dir", cache,
            "--samples_per_type", 2, "--accelerator", "cpu", "--devices", 1,
        )  # fmt: skip
        == 0
    )
    manifest = [json.loads(line) for line in (cache / "manifest.jsonl").read_text().splitlines()]
    assert sorted(entry["defect_type"] for entry in manifest) == ["blob", "blob", "scratch", "scratch"]

    capsys.readouterr()
    assert run_cli("verify", "--cache_dir", cache) == 0
    assert "4/4 samples, complete" in capsys.readouterr().out
    (cache / manifest[0]["mask"]).write_bytes(b"edited by hand")
    assert run_cli("verify", "--cache_dir", cache) == 1
    assert "PROBLEMS FOUND" in capsys.readouterr().out


def test_generate_refuses_a_generator_of_another_category(
    tmp_path: Path, tiny_mvtec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert run_cli("fit-generator", "--data", tiny_mvtec, "--generator", PERLIN, "--output", tmp_path / "g") == 0
    folder = saved_folder(capsys)
    other = tiny_mvtec.rename(tiny_mvtec.with_name("other"))
    status = run_cli("generate", "--generator_dir", folder, "--data", other, "--cache_dir", tmp_path / "c")
    assert status == EXIT_BAD_INPUT
    assert "fitted on category 'tiny'" in capsys.readouterr().err


def test_generate_takes_the_output_folder_of_fit_generator(
    tmp_path: Path, tiny_mvtec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """fit-generator --output G stores in G/<category>/<Class>-<key>/; passing G itself on said "no generator.json"."""
    generators = tmp_path / "generators"
    assert run_cli("fit-generator", "--data", tiny_mvtec, "--generator", PERLIN, "--output", generators) == 0
    capsys.readouterr()
    for folder in (generators, generators / "tiny"):  # the store, or its category folder
        cache = tmp_path / f"cache_{folder.name}"
        argv = ["--data", tiny_mvtec, "--cache_dir", cache, "--samples_per_type", 1, "--accelerator", "cpu"]
        assert run_cli("generate", "--generator_dir", folder, *argv) == 0, capsys.readouterr().err
        assert len((cache / "manifest.jsonl").read_text().splitlines()) == 1  # Perlin: one type of its own

    assert run_cli("fit-generator", "--data", tiny_mvtec, "--generator", REAL_PASTE, "--output", generators) == 0
    capsys.readouterr()
    status = run_cli("generate", "--generator_dir", generators, "--data", tiny_mvtec, "--cache_dir", tmp_path / "c")
    assert status == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "holds 2 fits of 'tiny'" in err and "PerlinGenerator-" in err and "RealShotPasteGenerator-" in err


def saved_folder(capsys: pytest.CaptureFixture[str]) -> Path:
    """The store folder ``fit-generator`` printed."""
    return Path(capsys.readouterr().out.split("saved in ")[-1].strip())


def test_bad_data_folder_is_one_clear_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    status = run_cli("fit-generator", "--data", tmp_path, "--generator", PERLIN)
    assert status == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert str(tmp_path) in err and "MVTec-layout" in err and "Traceback" not in err


@pytest.mark.slow
def test_console_entry_point_runs() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "anomaly_synth_aug.cli.main", "verify", "--help"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "cache_dir" in done.stdout


def test_only_the_listed_third_party_warnings_are_silenced() -> None:
    """The demo's results table must not drown in per-Trainer library noise, but real warnings must still show."""
    from anomaly_synth_aug.cli import main as cli_main

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli_main._quiet_third_party_warnings()
        warnings.warn("`isinstance(treespec, LeafSpec)` is deprecated, use ...", DeprecationWarning, stacklevel=1)
        warnings.warn("You called `self.log('train_loss', ..., logger=True)` but have no logger configured.", stacklevel=1)
        warnings.warn("Found 131 module(s) in eval mode at the start of training.", UserWarning, stacklevel=1)
        warnings.warn("your mask folder is empty", UserWarning, stacklevel=1)
    assert [str(w.message) for w in caught] == ["your mask folder is empty"]
    assert logging.getLogger("timm.models._builder").getEffectiveLevel() == logging.ERROR
    assert logging.getLogger("anomaly_synth_aug").getEffectiveLevel() <= logging.WARNING  # ours still speak


def test_generate_changes_sampling_options_of_the_saved_generator(
    tmp_path: Path, tiny_mvtec: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from anomaly_synth_aug.data.fewshot import few_shot_split
    from anomaly_synth_aug.data.io import load_image
    from anomaly_synth_aug.generators.diffusion import DiffusionAnomalyGenerator

    split = few_shot_split(tiny_mvtec)
    tiny = {"patch_size": 16, "block_out_channels": (8, 16), "max_steps": 2, "max_minutes": None, "progress": False}
    generator = DiffusionAnomalyGenerator(category="tiny", batch_size=2, num_inference_steps=2, **tiny)
    generator.fit([load_image(p) for p in split.train_normals[:4]], split.load_shots())
    saved = generator.save(tmp_path / "g" / "tiny")
    common = ("--generator_dir", saved, "--data", tiny_mvtec, "--samples_per_type", 1, "--accelerator", "cpu")
    assert run_cli("generate", *common, "--cache_dir", tmp_path / "c", "--sampling", '{"guidance_scale": 2.5}') == 0
    header = json.loads((tmp_path / "c" / "cache.json").read_text())
    from anomaly_synth_aug.generators.base import AnomalyGenerator

    assert header["generator_fingerprint"] == AnomalyGenerator.load(saved, guidance_scale=2.5).fingerprint()
    assert header["generator_fingerprint"] != generator.fingerprint()
    status = run_cli("generate", *common, "--cache_dir", tmp_path / "d", "--sampling", '{"patch_size": 32}')
    assert status == EXIT_BAD_INPUT
    assert "cannot change ['patch_size'] on load" in capsys.readouterr().err


def test_backbone_prints_a_name_anomalib_loads_offline(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["backbone", f"--cache_dir={tmp_path}"]) == 0
    name = capsys.readouterr().out.strip().splitlines()[-1]  # after the package's own log lines
    assert name.startswith("local-dir:") and str(tmp_path) in name
    from anomalib.models import Padim

    model = Padim(backbone=name, layers=["blocks.2"], pre_trained=True, n_features=10)
    assert model.model.feature_extractor.out_dims == [40]


@pytest.mark.parametrize("split", [{}, {"val_split": "none"}])
def test_a_cache_made_by_generate_is_reused_by_the_cached_datamodule(
    tmp_path: Path,
    tiny_mvtec: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    split: dict[str, str],
) -> None:
    """``generate`` recorded config ``{}`` and the datamodule ``{name, category, mask_threshold}``: training
    moved the CLI's cache aside and generated it all again. So it did for training with ``val_split="none"``:
    ``generate`` always held back the default validation normals, and had no option to match."""
    from anomaly_synth_aug.data.mvtec_datamodule import mvtec_datamodule
    from anomaly_synth_aug.generators.base import AnomalyGenerator

    assert run_cli("fit-generator", "--data", tiny_mvtec, "--generator", REAL_PASTE, "--output", tmp_path / "g") == 0
    folder = saved_folder(capsys)
    cache = tmp_path / "cache"
    common = ("--samples_per_type", 2, "--accelerator", "cpu", "--devices", 1)
    common += tuple(item for key, value in split.items() for item in (f"--{key}", value))
    assert run_cli("generate", "--generator_dir", folder, "--data", tiny_mvtec, "--cache_dir", cache, *common) == 0
    manifest = (cache / "manifest.jsonl").read_text()
    datamodule = mvtec_datamodule(
        tiny_mvtec, AnomalyGenerator.load(folder), mode="cached", cache_dir=cache, samples_per_type=2, **split
    )
    with caplog.at_level("INFO", logger="anomaly_synth_aug.cache.generation"):
        datamodule.prepare_train_data()
    assert "Reusing the complete sample cache" in caplog.text
    assert (cache / "manifest.jsonl").read_text() == manifest
    assert not list(tmp_path.glob("cache.stale-*"))  # nothing was moved aside

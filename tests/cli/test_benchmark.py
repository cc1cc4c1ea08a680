"""``anomaly-synth-aug benchmark``: finished runs survive a kill, and a rerun skips them."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import anomaly_synth_aug.evaluation.downstream as downstream
import anomaly_synth_aug.utils.imports as imports
from anomaly_synth_aug.cli.benchmark import benchmark, finished_runs


def fake_record(generator: str, detector: str, seed: int, preset: str) -> dict:
    metrics = {"image_AUROC": 0.9}
    return {"generator": generator, "detector": detector, "seed": seed, "preset": preset, "metrics": metrics}


def _fake_runs(monkeypatch) -> list[tuple[str, int, str]]:
    ran: list[tuple[str, int, str]] = []

    def run(data, generator, detector, seed, preset, fit_store):
        ran.append((generator, seed, preset))
        return fake_record(generator, detector, seed, preset)

    monkeypatch.setattr(downstream, "run_experiment", run)
    monkeypatch.setattr(downstream, "preset_record", lambda preset: {})
    monkeypatch.setattr(imports, "import_all_submodules", lambda: [])
    return ran


def test_a_killed_benchmark_keeps_every_finished_run(tmp_path: Path) -> None:
    """Records went through a buffered handle: a process killed during its third run had written none of the two
    finished ones."""
    script = textwrap.dedent(
        f"""
        import os
        import anomaly_synth_aug.evaluation.downstream as downstream
        import anomaly_synth_aug.utils.imports as imports
        from anomaly_synth_aug.cli.benchmark import benchmark

        calls = []
        def run(data, generator, detector, seed, preset, fit_store):
            calls.append(generator)
            if len(calls) == 3:
                os._exit(137)  # killed: no exit handler, no buffer flushed
            return {{"generator": generator, "detector": detector, "seed": seed, "preset": preset,
                    "metrics": {{"image_AUROC": 0.9}}}}
        downstream.run_experiment = run
        downstream.preset_record = lambda preset: {{}}
        imports.import_all_submodules = lambda: []
        output = __import__("pathlib").Path({str(tmp_path)!r})
        benchmark("data", generators=["none", "perlin", "diffusion"], output=output)
        """
    )
    completed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert completed.returncode == 137, completed.stderr
    records = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert [record["generator"] for record in records] == ["none", "perlin"]


def test_a_rerun_skips_finished_runs_and_redoes_a_torn_one(tmp_path: Path, monkeypatch, caplog) -> None:
    results = tmp_path / "results.jsonl"
    data_root = str((tmp_path / "data").resolve())
    torn = json.dumps(fake_record("perlin", "segmenter", 0, "quick"))[:30]
    finished = {**fake_record("none", "segmenter", 0, "quick"), "data_root": data_root}
    results.write_text(json.dumps(finished) + "\n" + torn)
    ran = _fake_runs(monkeypatch)
    with caplog.at_level("WARNING"):
        benchmark(tmp_path / "data", generators=["none", "perlin"], seeds=[0, 1], output=tmp_path)
    assert ran == [("perlin", 0, "quick"), ("none", 1, "quick"), ("perlin", 1, "quick")]
    assert "results.jsonl:2 is not a complete run record" in caplog.text
    lines = results.read_text().splitlines()
    assert torn not in lines and len(lines) == 4  # the torn line is cut off; every line is a whole record
    assert all(json.loads(line)["generator"] for line in lines)
    expected = {(data_root, g, "segmenter", s, "quick") for g in ("none", "perlin") for s in (0, 1)}
    assert finished_runs(results) == expected
    ran.clear()
    benchmark(tmp_path / "data", generators=["none"], seeds=[0], preset="full", output=tmp_path)
    assert ran == [("none", 0, "full")]  # another preset is another run
    ran.clear()
    benchmark(tmp_path / "other", generators=["none"], seeds=[0], output=tmp_path)
    assert ran == [("none", 0, "quick")]  # and so is another dataset


@pytest.mark.parametrize("content", ["", "\n\n"])
def test_no_results_yet_means_nothing_finished(tmp_path: Path, content: str) -> None:
    results = tmp_path / "results.jsonl"
    if content:
        results.write_text(content)
    assert finished_runs(results) == set()


def test_a_whole_last_record_without_its_newline_is_kept(tmp_path: Path, monkeypatch) -> None:
    """The run was counted as finished, then its line was cut as torn: never run again, and its record gone."""
    results = tmp_path / "results.jsonl"
    finished = {**fake_record("none", "segmenter", 0, "quick"), "data_root": str((tmp_path / "data").resolve())}
    results.write_text(json.dumps(finished))  # a kill between the record and its newline
    ran = _fake_runs(monkeypatch)
    benchmark(tmp_path / "data", generators=["none", "perlin"], output=tmp_path)
    assert ran == [("perlin", 0, "quick")]
    assert [json.loads(line)["generator"] for line in results.read_text().splitlines()] == ["none", "perlin"]


def test_a_name_given_twice_runs_once(tmp_path: Path, monkeypatch) -> None:
    ran = _fake_runs(monkeypatch)
    benchmark(tmp_path / "data", generators=["none", "none"], seeds=[0, 0], output=tmp_path)
    assert ran == [("none", 0, "quick")]
    assert len((tmp_path / "results.jsonl").read_text().splitlines()) == 1


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"generators": ["none", "perlni"]}, "unknown generator 'perlni'"),
        ({"detectors": ["segmenter", "padmi"]}, "unknown detector 'padmi'"),
        ({"preset": "qiuck"}, "unknown preset 'qiuck'"),
    ],
)
def test_a_typo_anywhere_stops_the_benchmark_before_its_first_run(
    tmp_path: Path, monkeypatch, kwargs: dict, message: str
) -> None:
    """Names were checked only when their run started: a typo late in the list stopped an overnight run hours in."""
    from anomaly_synth_aug.errors import InvalidInputError

    ran = _fake_runs(monkeypatch)
    with pytest.raises(InvalidInputError, match=message):
        benchmark(tmp_path / "data", output=tmp_path, **kwargs)
    assert ran == []

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from cache_helpers import TwoTypeGenerator, fill_cache, header_for, train_normals

from anomaly_synth_aug.cache import generation
from anomaly_synth_aug.cache.generation import generate_cache
from anomaly_synth_aug.cache.integrity import verify
from anomaly_synth_aug.cache.manifest import ManifestEntry, read_manifest
from anomaly_synth_aug.cache.store import SampleCache
from anomaly_synth_aug.data.io import load_image, load_mask
from anomaly_synth_aug.errors import InvalidInputError, NotFittedError
from anomaly_synth_aug.generators.perlin import PerlinGenerator


@pytest.fixture
def sources(tiny_mvtec: Path) -> list[Path]:
    return train_normals(tiny_mvtec)


SCRIPT = Path(__file__).with_name("run_cache_generation.py")
CPU = {"accelerator": "cpu", "enable_progress_bar": False}


def reference_entries(root: Path, sources: list[Path], samples_per_type: int) -> list[ManifestEntry]:
    """The samples an uninterrupted, single-process, one-job-at-a-time run produces."""
    generator = TwoTypeGenerator()
    cache = SampleCache(root)
    fill_cache(cache, generator, header_for(generator, sources, samples_per_type), sources)
    return read_manifest(cache.layout).entries


def assert_complete_and_exact(root: Path, expected: list[ManifestEntry]) -> None:
    """Every sample exactly once, every file matching its sha256, and the same bytes as ``expected``."""
    manifest = read_manifest(SampleCache(root).layout)
    lines = SampleCache(root).layout.manifest.read_text().splitlines()
    assert not manifest.problems and not manifest.torn_tail
    assert len(lines) == len({e.id for e in manifest.entries}) == len(expected)
    report = verify(root)
    assert report.complete, str(report)
    assert sorted(manifest.entries, key=lambda e: e.id) == expected


def test_generate_on_one_device_matches_one_job_at_a_time(tmp_path: Path, sources: list[Path]) -> None:
    expected = reference_entries(tmp_path / "reference", sources, 3)
    entries = generate_cache(
        tmp_path / "cache", TwoTypeGenerator(), sources, samples_per_type=3, batch_size=4, trainer_kwargs=CPU
    )
    assert entries == expected
    assert_complete_and_exact(tmp_path / "cache", expected)


def test_classic_generator_fills_a_cache_with_exact_masks(tmp_path: Path, sources: list[Path]) -> None:
    entries = generate_cache(tmp_path / "cache", PerlinGenerator(), sources, samples_per_type=3, trainer_kwargs=CPU)
    assert [e.id for e in entries] == ["perlin/000000", "perlin/000001", "perlin/000002"]
    for entry in entries:
        image, mask = load_image(tmp_path / "cache" / entry.image), load_mask(tmp_path / "cache" / entry.mask)
        changed = (image != load_image(entry.source)).any(0)
        assert mask.any() and changed.any() and not (changed & ~mask).any()


def test_complete_cache_is_reused_without_a_trainer(
    tmp_path: Path, sources: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    first = generate_cache(tmp_path / "cache", TwoTypeGenerator(), sources, samples_per_type=2, trainer_kwargs=CPU)
    stamps = {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*")}

    def no_trainer(**kwargs):
        raise AssertionError("a complete cache must not be generated again")

    monkeypatch.setattr(generation, "Trainer", no_trainer)
    again = generate_cache(tmp_path / "cache", TwoTypeGenerator(), sources, samples_per_type=2, trainer_kwargs=CPU)
    assert again == first
    assert {p: p.stat().st_mtime_ns for p in (tmp_path / "cache").rglob("*")} == stamps


def test_a_complete_cache_on_read_only_storage_is_reused(
    tmp_path: Path, sources: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The write probe and the lock came before the check, so a finished cache on a read-only mount was refused.
    (Root ignores file modes, so the storage is made read-only where the cache would write: probe and lock.)"""
    first = generate_cache(tmp_path / "cache", TwoTypeGenerator(), sources, samples_per_type=2, trainer_kwargs=CPU)

    def read_only(*args: object, **kwargs: object) -> None:
        raise OSError(30, "Read-only file system")

    monkeypatch.setattr(generation, "check_writable", read_only)
    monkeypatch.setattr(generation, "generation_lock", read_only)
    again = generate_cache(tmp_path / "cache", TwoTypeGenerator(), sources, samples_per_type=2, trainer_kwargs=CPU)
    assert again == first
    with pytest.raises(OSError, match="Read-only"):  # what is not complete still needs the storage
        generate_cache(tmp_path / "other", TwoTypeGenerator(), sources, samples_per_type=2, trainer_kwargs=CPU)


def test_a_file_vanishing_under_the_unlocked_check_defers_to_the_locked_one(
    tmp_path: Path, sources: list[Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The check without the lock may read while a writer holding it moves files: that must not crash the call."""
    first = generate_cache(tmp_path / "cache", TwoTypeGenerator(), sources, samples_per_type=2, trainer_kwargs=CPU)
    real_verify, calls = generation.verify, []

    def racing(root: Path, **kwargs: object):
        calls.append(root)
        if len(calls) == 1:
            raise FileNotFoundError(2, "No such file or directory", str(root / "shards" / "rank0.jsonl"))
        return real_verify(root, **kwargs)

    monkeypatch.setattr(generation, "verify", racing)
    again = generate_cache(tmp_path / "cache", TwoTypeGenerator(), sources, samples_per_type=2, trainer_kwargs=CPU)
    assert again == first and len(calls) == 2  # decided again under the lock


def test_failed_run_resumes_without_loss_or_duplicates(tmp_path: Path, sources: list[Path]) -> None:
    expected = reference_entries(tmp_path / "reference", sources, 3)
    failing = TwoTypeGenerator()
    failing.fail_after = 4
    with pytest.raises(RuntimeError, match="planned failure"):
        generate_cache(tmp_path / "cache", failing, sources, samples_per_type=3, batch_size=1, trainer_kwargs=CPU)
    interrupted = verify(tmp_path / "cache")
    assert interrupted.ok and not interrupted.complete and interrupted.pending_shards

    resumed = TwoTypeGenerator()
    generate_cache(tmp_path / "cache", resumed, sources, samples_per_type=3, batch_size=1, trainer_kwargs=CPU)
    assert resumed.generated == 2  # only the jobs the failed run had not written
    assert_complete_and_exact(tmp_path / "cache", expected)


def test_changed_generator_regenerates_into_a_fresh_folder(
    tmp_path: Path, sources: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    generate_cache(tmp_path / "cache", TwoTypeGenerator(), sources, samples_per_type=1, trainer_kwargs=CPU)
    generate_cache(tmp_path / "cache", TwoTypeGenerator(size=4), sources, samples_per_type=1, trainer_kwargs=CPU)
    assert "generator_fingerprint" in caplog.text and "moved it to" in caplog.text
    assert {e.generator for e in read_manifest(SampleCache(tmp_path / "cache").layout).entries} == {
        TwoTypeGenerator(size=4).fingerprint()
    }
    assert len(list(tmp_path.glob("cache.stale-*"))) == 1


def test_bad_generator_arguments(tmp_path: Path, sources: list[Path]) -> None:
    class Unfitted(TwoTypeGenerator):
        requires_fit = True

    with pytest.raises(NotFittedError, match="fitted"):
        generate_cache(tmp_path / "a", Unfitted(), sources, samples_per_type=1)
    with pytest.raises(InvalidInputError, match="not produced by"):
        generate_cache(tmp_path / "b", TwoTypeGenerator(), sources, samples_per_type=1, defect_types=["crack"])


def run_script(cache: Path, sources: list[Path], *args: str) -> subprocess.Popen:
    env = os.environ | {"OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), str(cache), str(sources[0].parent), *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        env=env,
        start_new_session=True,  # one process group: SIGKILL reaches every rank
    )


def records_written(cache: Path) -> int:
    return sum(len(p.read_bytes().splitlines()) for p in (cache / "shards").glob("*.jsonl"))


@pytest.mark.slow
def test_sigkilled_generation_resumes_exactly(tmp_path: Path, sources: list[Path]) -> None:
    cache = tmp_path / "cache"
    process = run_script(cache, sources, "--samples-per-type", "6", "--delay", "0.25")
    deadline = time.monotonic() + 120
    while records_written(cache) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, process.communicate()[0]
    os.killpg(process.pid, signal.SIGKILL)
    process.wait(timeout=30)
    killed = verify(cache)
    assert not killed.complete and 3 <= killed.pending_samples < 12
    assert killed.problems.keys() <= {"unlisted files", "leftover temp files"}  # only what a crash leaves

    resumed = TwoTypeGenerator()
    generate_cache(cache, resumed, sources, samples_per_type=6, batch_size=2, trainer_kwargs=CPU)
    assert 0 < resumed.generated <= 9
    assert_complete_and_exact(cache, reference_entries(tmp_path / "reference", sources, 6))


@pytest.mark.slow
def test_ddp_on_two_cpu_processes_shards_the_work(tmp_path: Path, sources: list[Path]) -> None:
    process = run_script(tmp_path / "cache", sources, "--samples-per-type", "6", "--devices", "2", "--strategy", "ddp")
    output, _ = process.communicate(timeout=240)
    assert process.returncode == 0, output
    assert output.count("DONE 12 samples") == 2  # Lightning re-ran the script for rank 1
    written = {int(rank): int(count) for rank, count in re.findall(r"Rank (\d) wrote (\d+) cache samples", output)}
    assert written.keys() == {0, 1} and all(written.values()) and sum(written.values()) == 12
    assert_complete_and_exact(tmp_path / "cache", reference_entries(tmp_path / "reference", sources, 6))

import errno
import logging
import os
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from cache_helpers import TwoTypeGenerator, fill_cache, header_for, train_normals
from PIL import Image

from anomaly_synth_aug.cache import atomic
from anomaly_synth_aug.cache.atomic import TEMP_PREFIX, TEMP_SUFFIX
from anomaly_synth_aug.cache.encoding import encode_image_png
from anomaly_synth_aug.cache.generation import make_header
from anomaly_synth_aug.cache.integrity import verify
from anomaly_synth_aug.cache.jobs import plan_jobs
from anomaly_synth_aug.cache.manifest import CacheHeader, read_manifest
from anomaly_synth_aug.cache.store import SampleCache
from anomaly_synth_aug.data.io import load_image, load_mask
from anomaly_synth_aug.errors import CheckpointMismatchError, CorruptFileError, InvalidInputError


@pytest.fixture
def sources(tiny_mvtec: Path) -> list[Path]:
    return train_normals(tiny_mvtec)


@pytest.fixture
def generator() -> TwoTypeGenerator:
    return TwoTypeGenerator()


@pytest.fixture
def header(generator: TwoTypeGenerator, sources: list[Path]) -> CacheHeader:
    return header_for(generator, sources)


@pytest.fixture
def filled_cache(tmp_path: Path, generator: TwoTypeGenerator, header: CacheHeader, sources: list[Path]) -> SampleCache:
    """A complete, intact cache of 2 types x 3 samples."""
    cache = SampleCache(tmp_path / "cache")
    fill_cache(cache, generator, header, sources)
    return cache


def all_files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def jobs_of(header: CacheHeader, sources: list[Path]):
    return plan_jobs(sources, header.defect_types, header.samples_per_type, header.seed)


def test_fresh_cache_gets_header_and_all_jobs_pending(tmp_path: Path, header: CacheHeader, sources: list[Path]) -> None:
    cache = SampleCache(tmp_path / "new" / "cache")
    cache.prepare(header)
    assert CacheHeader.read(cache.layout.header) == header
    assert cache.pending(jobs_of(header, sources)) == jobs_of(header, sources)


def test_filled_cache_files_are_mvtec_style(filled_cache: SampleCache) -> None:
    entries = read_manifest(filled_cache.layout).entries
    assert [e.id for e in entries] == [f"{t}/{i:06d}" for t in ("dent", "spot") for i in range(3)]
    for entry in entries:
        image, mask = load_image(filled_cache.root / entry.image), load_mask(filled_cache.root / entry.mask)
        assert mask.any() and mask.shape == image.shape[-2:]
        changed = (image != load_image(entry.source)).any(0)
        assert not (changed & ~mask).any()  # the defect is exactly where the mask says
        with Image.open(filled_cache.root / entry.mask) as png:
            assert png.mode == "L" and set(np.unique(np.asarray(png)).tolist()) == {0, 255}


def test_folder_that_is_not_a_cache_is_refused_untouched(tmp_path: Path, header: CacheHeader) -> None:
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    with pytest.raises(InvalidInputError, match="not a sample cache") as info:
        SampleCache(folder).prepare(header)
    assert "notes.txt" in str(info.value) and "new or empty folder" in str(info.value)
    assert all_files(folder) == {"notes.txt": b"keep me"}


def test_changed_inputs_move_the_old_cache_aside(
    filled_cache: SampleCache, sources: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    before = all_files(filled_cache.root)
    new_header = make_header(
        TwoTypeGenerator(size=5), sources, samples_per_type=3, seed=0, defect_types=["dent", "spot"], config={"a": 1}
    )
    with caplog.at_level(logging.WARNING):
        filled_cache.prepare(new_header)
    message = caplog.text
    assert "generator_fingerprint" in message and "config: a: '<unset>' -> 1" in message
    stale = [p for p in filled_cache.root.parent.iterdir() if p.name.startswith("cache.stale-")]
    assert len(stale) == 1 and str(stale[0]) in message
    assert all_files(stale[0]) == before  # the old samples are kept whole, elsewhere
    assert all_files(filled_cache.root).keys() == {"cache.json"}
    assert CacheHeader.read(filled_cache.layout.header) == new_header


def test_changed_data_is_noticed(filled_cache: SampleCache, generator: TwoTypeGenerator, sources: list[Path]) -> None:
    fewer = make_header(generator, sources[:-1], samples_per_type=3, seed=0, defect_types=generator.defect_types)
    filled_cache.prepare(fewer)
    assert read_manifest(filled_cache.layout).entries == []


def test_resume_repairs_what_a_crash_leaves(
    tmp_path: Path, generator: TwoTypeGenerator, header: CacheHeader, sources: list[Path]
) -> None:
    reference = SampleCache(tmp_path / "reference")
    fill_cache(reference, generator, header, sources)

    cache = SampleCache(tmp_path / "cache")
    cache.prepare(header)
    jobs = jobs_of(header, sources)

    def write(job, rank):
        seed = torch.Generator().manual_seed(job.seed)
        out = generator.generate([load_image(job.source)], defect_types=[job.defect_type], generator=seed)
        return cache.write_sample(job, out.images[0], out.masks[0], header.generator_fingerprint, rank=rank)

    write(jobs[0], 0)
    cache.commit()
    write(jobs[1], 0)  # recorded in a shard, never committed (rank 0)
    write(jobs[2], 1)  # ... and rank 1
    with cache.layout.manifest.open("a") as handle:
        handle.write('{"id": "spot/0000')  # torn append
    orphan = write(jobs[3], 1)  # files written, record lost with the shard line
    lines = cache.layout.shard(1).read_text().splitlines()
    cache.layout.shard(1).write_text(lines[0] + "\n" + lines[1][:25])
    (cache.root / "images" / "dent" / f"{TEMP_PREFIX}half{TEMP_SUFFIX}").write_bytes(b"\x89PNG half")

    report = cache.recover()
    assert report.ok and not report.pending_shards and not report.temp_files and not report.unlisted
    assert [e.id for e in report.entries] == [j.id for j in jobs[:3]]
    assert not (cache.root / orphan.image).exists()
    assert cache.pending(jobs) == jobs[3:]

    fill_cache(cache, generator, header, sources)  # resume
    final = read_manifest(cache.layout)
    assert not final.problems and len(final.entries) == len({e.id for e in final.entries}) == 6
    assert final.entries == read_manifest(reference.layout).entries  # identical to an uninterrupted run
    assert all_files(cache.root) == all_files(reference.root) | {"cache.json": (cache.root / "cache.json").read_bytes()}
    assert verify(cache.root).complete


def test_damage_a_crash_cannot_explain_is_an_error(filled_cache: SampleCache, header: CacheHeader) -> None:
    entry = read_manifest(filled_cache.layout).entries[0]
    (filled_cache.root / entry.image).write_bytes(b"hand edited")
    before = all_files(filled_cache.root)
    with pytest.raises(CorruptFileError, match="sha256 mismatch") as info:
        filled_cache.prepare(header)
    assert entry.image in str(info.value) and "Fix:" in str(info.value)
    assert all_files(filled_cache.root) == before


def test_hand_edited_header_is_an_error(filled_cache: SampleCache, header: CacheHeader) -> None:
    filled_cache.layout.header.write_text("{ edited")
    with pytest.raises(CorruptFileError, match="unreadable cache header"):
        filled_cache.prepare(header)


class DiskThatFills:
    """``os.fdopen`` stand-in: all files together accept ``budget`` bytes, then a write fails with ENOSPC."""

    def __init__(self, budget: int) -> None:
        self.budget = budget
        self.real_fdopen = os.fdopen

    def __call__(self, fd: int, mode: str = "r", *args, **kwargs):
        return _FillingHandle(self.real_fdopen(fd, mode, *args, **kwargs), self)


class _FillingHandle:
    def __init__(self, handle, disk: DiskThatFills) -> None:
        self.handle, self.disk = handle, disk

    def write(self, data: bytes) -> int:
        allowed = max(0, min(len(data), self.disk.budget))
        self.handle.write(data[:allowed])
        self.disk.budget -= allowed
        if allowed < len(data):
            raise OSError(errno.ENOSPC, "No space left on device")
        return allowed

    def __getattr__(self, name: str):
        return getattr(self.handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.handle.close()


def test_disk_full_mid_sample_leaves_no_file_and_resumes(
    tmp_path: Path,
    generator: TwoTypeGenerator,
    header: CacheHeader,
    sources: list[Path],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cache = SampleCache(tmp_path / "cache")
    cache.prepare(header)
    job = jobs_of(header, sources)[0]
    seed = torch.Generator().manual_seed(job.seed)
    out = generator.generate([load_image(job.source)], defect_types=[job.defect_type], generator=seed)
    image_size = len(encode_image_png(out.images[0]))
    monkeypatch.setattr(atomic.os, "fdopen", DiskThatFills(budget=image_size + 10))  # fills while writing the mask
    with pytest.raises(InvalidInputError, match="disk full") as info:
        cache.write_sample(job, out.images[0], out.masks[0], header.generator_fingerprint, rank=0)
    assert "ground_truth" in str(info.value) and "larger disk" in str(info.value)
    monkeypatch.undo()
    assert all_files(cache.root).keys() == {"cache.json"}  # neither file of the sample, no temp file, no record
    assert cache.pending([job]) == [job]
    cache.write_sample(job, out.images[0], out.masks[0], header.generator_fingerprint, rank=0)
    assert cache.commit() == 1 and verify(cache.root).ok


def test_load_requires_complete_matching_cache(
    tmp_path: Path, filled_cache: SampleCache, header: CacheHeader, generator: TwoTypeGenerator, sources: list[Path]
) -> None:
    assert [e.id for e in filled_cache.load(header)] == [e.id for e in read_manifest(filled_cache.layout).entries]
    with pytest.raises(CheckpointMismatchError, match="seed: 0 -> 1"):
        filled_cache.load(replace(header, seed=1))
    partial = SampleCache(tmp_path / "partial")
    partial.prepare(header)
    with pytest.raises(InvalidInputError, match=r"incomplete \(0 of 6 samples\)"):
        partial.load(header)


def test_commit_skips_tampered_and_already_committed_records(
    filled_cache: SampleCache, caplog: pytest.LogCaptureFixture
) -> None:
    entries = read_manifest(filled_cache.layout).entries
    kept, uncommitted = entries[:-1], entries[-1]
    filled_cache.layout.manifest.write_text("".join(e.to_json() + "\n" for e in kept))
    (filled_cache.root / uncommitted.image).write_bytes(b"changed after its record was written")
    filled_cache.layout.shards_dir.mkdir()
    filled_cache.layout.shard(0).write_text(kept[0].to_json() + "\n" + uncommitted.to_json() + "\n")
    with caplog.at_level(logging.WARNING):
        assert filled_cache.commit() == 0
    assert f"Not committing {uncommitted.id}" in caplog.text
    assert read_manifest(filled_cache.layout).entries == kept
    assert not filled_cache.layout.shards_dir.exists()


def test_an_escaping_manifest_line_deletes_nothing_before_the_error(filled_cache: SampleCache, header: CacheHeader) -> None:
    """A '../../etc/passwd' line made the sample's real files "unlisted": they were deleted, then the error came."""
    text = filled_cache.layout.manifest.read_text()
    filled_cache.layout.manifest.write_text(text.replace('"images/dent/000001.png"', '"../../etc/passwd"', 1))
    before = all_files(filled_cache.root)
    with pytest.raises(CorruptFileError, match="escaping the cache"):
        filled_cache.prepare(header)
    assert all_files(filled_cache.root).keys() == before.keys()  # nothing was touched


def test_only_one_invalidated_copy_is_kept(
    filled_cache: SampleCache, sources: list[Path], caplog: pytest.LogCaptureFixture
) -> None:
    """Each invalidation left a full <cache>.stale-<ts> copy: 4 changes, 4 copies."""
    for size in (5, 6, 7):
        header = make_header(TwoTypeGenerator(size=size), sources, samples_per_type=1, seed=0, defect_types=["dent"])
        with caplog.at_level(logging.INFO):
            filled_cache.prepare(header)
    stale = [p for p in filled_cache.root.parent.iterdir() if p.name.startswith("cache.stale-")]
    assert len(stale) == 1
    assert "Deleted the older invalidated copy" in caplog.text


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_writers_through_a_symlink_share_one_lock(tmp_path: Path, sources: list[Path], monkeypatch) -> None:
    """Two writers reaching one cache through a symlink took two locks and deleted each other's files."""
    from contextlib import contextmanager

    from anomaly_synth_aug.cache import generation

    real = tmp_path / "real"
    link = tmp_path / "link"
    link.symlink_to(real, target_is_directory=True)
    locked: list[Path] = []
    original = generation.generation_lock

    @contextmanager
    def recording(root: Path):
        locked.append(root)
        with original(root):
            yield

    monkeypatch.setattr(generation, "generation_lock", recording)
    for root, count in ((real, 1), (link, 2)):  # the second writes too (a complete cache is reused without a lock)
        generation.generate_cache(
            root, TwoTypeGenerator(), sources, samples_per_type=count, trainer_kwargs={"logger": False}
        )
    assert locked == [real.resolve(), real.resolve()]

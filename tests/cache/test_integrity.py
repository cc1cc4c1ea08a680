import json
import os
import shutil
from dataclasses import replace
from pathlib import Path

import pytest
from cache_helpers import TwoTypeGenerator, fill_cache, header_for, train_normals

from anomaly_synth_aug.cache.atomic import TEMP_PREFIX, TEMP_SUFFIX, append_lines_durably
from anomaly_synth_aug.cache.integrity import main, verify
from anomaly_synth_aug.cache.manifest import CacheHeader, ManifestEntry, read_manifest
from anomaly_synth_aug.cache.store import SampleCache
from anomaly_synth_aug.errors import CorruptFileError


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


def first_entry(cache: SampleCache) -> ManifestEntry:
    return read_manifest(cache.layout).entries[0]


def test_intact_cache_is_ok_and_complete(filled_cache: SampleCache) -> None:
    report = verify(filled_cache.root)
    assert report.ok and report.complete and len(report.entries) == 6
    assert str(report).endswith("6/6 samples, complete")
    report.raise_if_not_ok()


def test_hand_edited_image_is_detected(filled_cache: SampleCache) -> None:
    entry = first_entry(filled_cache)
    image = filled_cache.root / entry.image
    data = bytearray(image.read_bytes())
    data[-20] ^= 0xFF
    image.write_bytes(bytes(data))
    report = verify(filled_cache.root)
    assert report.mismatched == [f"{entry.id}: {entry.image}"] and not report.ok
    assert "sha256 mismatch" in str(report) and entry.image in str(report)
    with pytest.raises(CorruptFileError, match="damaged"):
        report.raise_if_not_ok()
    assert verify(filled_cache.root, check_hashes=False).ok  # existence-only check cannot see edits


def test_missing_unlisted_and_temp_files_are_detected(filled_cache: SampleCache) -> None:
    entry = first_entry(filled_cache)
    (filled_cache.root / entry.mask).unlink()
    (filled_cache.root / "images" / "dent" / "extra.png").write_bytes(b"x")
    (filled_cache.root / "images" / "dent" / f"{TEMP_PREFIX}x{TEMP_SUFFIX}").write_bytes(b"x")
    report = verify(filled_cache.root)
    assert report.missing == [f"{entry.id}: {entry.mask}"]
    assert report.unlisted == ["images/dent/extra.png"]
    assert report.temp_files == [f"images/dent/{TEMP_PREFIX}x{TEMP_SUFFIX}"]
    assert not report.ok and not report.complete


def test_files_an_operating_system_drops_into_the_cache_are_not_problems(filled_cache: SampleCache) -> None:
    """A Finder ``.DS_Store`` in a complete cache made it unusable, and the error said to delete the cache."""
    for name in (".DS_Store", "images/dent/Thumbs.db", "ground_truth/._000000_mask.png", ".nfs000123"):
        (filled_cache.root / name).write_bytes(b"x")
    (filled_cache.root / "images" / "dent" / "notes.txt").write_bytes(b"x")  # anything else still counts
    report = verify(filled_cache.root)
    assert report.unlisted == ["images/dent/notes.txt"]
    (filled_cache.root / "images" / "dent" / "notes.txt").unlink()
    assert verify(filled_cache.root).ok


def test_lines_from_another_generator_or_plan_are_foreign(filled_cache: SampleCache) -> None:
    entry = first_entry(filled_cache)
    shutil.copy(filled_cache.root / entry.image, filled_cache.root / "images/dent/000003.png")
    shutil.copy(filled_cache.root / entry.mask, filled_cache.root / "ground_truth/dent/000003_mask.png")
    other = replace(entry, id="dent/000003", image="images/dent/000003.png", mask="ground_truth/dent/000003_mask.png")
    append_lines_durably(filled_cache.layout.manifest, [replace(other, generator="0" * 64).to_json()])
    report = verify(filled_cache.root)
    assert len(report.foreign) == 1 and "made by generator 000000000000" in report.foreign[0]
    filled_cache.layout.manifest.write_text(
        "".join(line + "\n" for line in filled_cache.layout.manifest.read_text().splitlines()[:-1])
    )
    append_lines_durably(filled_cache.layout.manifest, [other.to_json()])
    report = verify(filled_cache.root)
    assert len(report.foreign) == 1 and "not in this cache's plan" in report.foreign[0]


def test_malformed_line_is_reported(filled_cache: SampleCache) -> None:
    lines = filled_cache.layout.manifest.read_text().splitlines()
    lines[2] = lines[2][:30]
    filled_cache.layout.manifest.write_text("\n".join(lines) + "\n")
    report = verify(filled_cache.root)
    assert len(report.malformed) == 1 and report.malformed[0].startswith("manifest.jsonl line 3")
    assert len(report.unlisted) == 2  # the damaged line's files are no longer listed


def test_manifest_names_outside_the_cache_are_refused_not_read(filled_cache: SampleCache, tmp_path: Path) -> None:
    outside = tmp_path / "outside.png"
    outside.write_bytes(b"secret")
    entry = first_entry(filled_cache)
    record = json.loads(entry.to_json()) | {"image": str(outside)}
    text = filled_cache.layout.manifest.read_text().replace(entry.to_json(), json.dumps(record))
    text = text.replace('"image": "images/dent/000001.png"', '"image": "../outside.png"')
    filled_cache.layout.manifest.write_text(text)
    report = verify(filled_cache.root)
    assert len(report.unsafe) == 2 and "absolute" in report.unsafe[0] and "'..'" in report.unsafe[1]
    assert not any("outside" in item for item in report.missing + report.mismatched)


@pytest.mark.skipif(os.name != "posix", reason="symlinks")
def test_symlinked_folder_leading_out_is_refused(filled_cache: SampleCache, tmp_path: Path) -> None:
    images = filled_cache.root / "images" / "dent"
    elsewhere = tmp_path / "elsewhere"
    shutil.move(images, elsewhere)
    images.symlink_to(elsewhere, target_is_directory=True)
    report = verify(filled_cache.root)
    assert len(report.unsafe) == 3 and all("symlink" in item for item in report.unsafe)
    assert "images/dent" in report.unlisted


def test_folder_that_is_not_a_cache(tmp_path: Path) -> None:
    assert "does not exist" in verify(tmp_path / "nothing").header_problem
    (tmp_path / "x.txt").write_text("x")
    report = verify(tmp_path)
    assert "not a sample cache" in report.header_problem and report.unlisted == ["x.txt"] and not report.ok


def test_pending_shard_is_incomplete_not_damaged(filled_cache: SampleCache) -> None:
    filled_cache.layout.shards_dir.mkdir()
    filled_cache.layout.shard(1).write_text("")
    report = verify(filled_cache.root)
    assert report.ok and not report.complete and report.pending_shards == ["shards/rank-1.jsonl"]
    assert "resumes" in str(report)


def test_command_line_exit_status(filled_cache: SampleCache, capsys: pytest.CaptureFixture[str]) -> None:
    assert main([str(filled_cache.root)]) == 0
    assert "complete" in capsys.readouterr().out
    (filled_cache.root / first_entry(filled_cache).image).write_bytes(b"edited")
    assert main([str(filled_cache.root)]) == 1
    assert "PROBLEMS FOUND" in capsys.readouterr().out


def test_a_folder_that_is_not_a_cache_is_not_advised_to_be_deleted(tmp_path: Path) -> None:
    """verify on a user's own images/ folder advised "delete the cache folder"."""
    (tmp_path / "photo.png").write_bytes(b"x")
    text = str(verify(tmp_path))
    assert "delete" not in text and "point at a sample cache folder" in text


def test_a_folder_with_a_manifest_of_its_own_is_not_advised_to_be_deleted(
    tmp_path: Path, filled_cache: SampleCache
) -> None:
    """Any ``manifest.jsonl`` made a folder a cache, to be deleted."""
    (tmp_path / "data").mkdir()
    (tmp_path / "data" / "manifest.jsonl").write_text('{"file": "a.png", "label": "ok"}\n')
    (tmp_path / "data" / "a.png").write_bytes(b"x")
    text = str(verify(tmp_path / "data"))
    assert "delete" not in text and "point at a sample cache folder" in text
    (filled_cache.root / "cache.json").unlink()  # a real cache that lost its header is still one
    assert "delete the cache folder" in str(verify(filled_cache.root))


def test_an_interrupted_cache_is_reported_as_resumable(filled_cache: SampleCache) -> None:
    """Orphan files of an interrupted write were "PROBLEMS FOUND ... delete", although resuming repairs them."""
    (filled_cache.root / "images" / "dent" / "000099.png").write_bytes(b"half a sample")
    (filled_cache.root / "images" / "dent" / f"{TEMP_PREFIX}x{TEMP_SUFFIX}").write_bytes(b"")
    report = verify(filled_cache.root)
    assert not report.ok and report.interrupted_only
    text = str(report)
    assert "interrupted (resumable)" in text and "resume the generation" in text and "delete" not in text
    (filled_cache.root / "notes.txt").write_text("mine")  # not something a generation writes
    assert "delete the cache folder" in str(verify(filled_cache.root))


def test_a_file_given_as_the_cache_is_called_a_file(tmp_path) -> None:
    """``verify`` on a file said "the cache folder does not exist", although the path existed."""
    from anomaly_synth_aug.cache.integrity import verify

    (tmp_path / "notes.txt").write_text("hello")
    assert verify(tmp_path / "notes.txt").header_problem == "this is a file, not a cache folder"
    assert verify(tmp_path / "missing").header_problem == "the cache folder does not exist"

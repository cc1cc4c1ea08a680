import errno
import os
from pathlib import Path

import pytest

from anomaly_synth_aug.cache import atomic
from anomaly_synth_aug.cache.atomic import (
    append_lines_durably,
    atomic_write_bytes,
    check_writable,
    is_temp_file,
    sha256_bytes,
    sha256_file,
)
from anomaly_synth_aug.errors import InvalidInputError


def test_atomic_write_replaces_whole_file_and_leaves_no_temp(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"old")
    atomic_write_bytes(target, b"new content")
    assert target.read_bytes() == b"new content"
    assert [p.name for p in tmp_path.iterdir()] == ["a.bin"]
    assert sha256_file(target) == sha256_bytes(b"new content")


def test_written_files_follow_umask_not_owner_only(tmp_path: Path) -> None:
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"x")
    assert target.stat().st_mode & 0o777 == atomic.FILE_MODE


def _disk_full(*args, **kwargs):
    raise OSError(errno.ENOSPC, "No space left on device")


def test_disk_full_is_a_clear_error_and_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "a.bin"
    atomic_write_bytes(target, b"old")
    monkeypatch.setattr(atomic.os, "fsync", _disk_full)
    with pytest.raises(InvalidInputError, match="disk full") as info:
        atomic_write_bytes(target, b"new")
    assert str(tmp_path) in str(info.value) and "Fix:" in str(info.value)
    assert isinstance(info.value.__cause__, OSError) and info.value.__cause__.errno == errno.ENOSPC
    assert target.read_bytes() == b"old"
    assert not any(is_temp_file(p) for p in tmp_path.iterdir())


def test_unexpected_os_error_is_not_disguised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(*args, **kwargs):
        raise OSError(errno.EIO, "Input/output error")

    monkeypatch.setattr(atomic.os, "replace", broken)
    with pytest.raises(OSError) as info:
        atomic_write_bytes(tmp_path / "a.bin", b"x")
    assert not isinstance(info.value, InvalidInputError)
    assert list(tmp_path.iterdir()) == []


def test_not_writable_folder_names_folder_and_fix(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def denied(*args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied")

    monkeypatch.setattr(atomic.tempfile, "mkstemp", denied)
    with pytest.raises(InvalidInputError, match="not writable") as info:
        check_writable(tmp_path / "cache")
    assert str(tmp_path / "cache") in str(info.value) and "cache_dir" in str(info.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root ignores permission bits")
def test_read_only_folder_is_reported(tmp_path: Path) -> None:
    folder = tmp_path / "ro"
    folder.mkdir()
    folder.chmod(0o500)
    try:
        with pytest.raises(InvalidInputError, match="not writable"):
            check_writable(folder)
    finally:
        folder.chmod(0o700)


def test_file_in_place_of_folder_is_a_clear_error(tmp_path: Path) -> None:
    (tmp_path / "blocker").write_text("x")
    with pytest.raises(InvalidInputError, match="cannot create or write") as info:
        check_writable(tmp_path / "blocker" / "cache")
    assert "blocker" in str(info.value)


def test_append_lines_ends_every_line(tmp_path: Path) -> None:
    path = tmp_path / "log.jsonl"
    append_lines_durably(path, ["a", "b\n"])
    append_lines_durably(path, [])
    append_lines_durably(path, ["c"])
    assert path.read_text() == "a\nb\nc\n"


def test_temp_file_names_are_recognised() -> None:
    assert is_temp_file(Path(f"{atomic.TEMP_PREFIX}abc{atomic.TEMP_SUFFIX}"))
    assert not is_temp_file(Path("000001.png"))

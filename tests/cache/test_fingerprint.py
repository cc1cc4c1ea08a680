import os
from pathlib import Path

import pytest
from cache_helpers import train_normals

from anomaly_synth_aug.cache.fingerprint import config_fingerprint, data_fingerprint
from anomaly_synth_aug.errors import InvalidInputError


@pytest.fixture
def sources(tiny_mvtec: Path) -> list[Path]:
    return train_normals(tiny_mvtec)


def test_data_fingerprint_ignores_order_and_sees_set_size_and_mtime(sources: list[Path]) -> None:
    base = data_fingerprint(sources)
    assert data_fingerprint(list(reversed(sources))) == base
    assert data_fingerprint(sources[:-1]) != base
    stat = sources[0].stat()
    os.utime(sources[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    touched = data_fingerprint(sources)
    assert touched != base
    with sources[1].open("ab") as handle:
        handle.write(b"\0")
    assert data_fingerprint(sources) != touched


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="not found"):
        data_fingerprint([tmp_path / "gone.png"])


def test_config_fingerprint_is_key_order_independent() -> None:
    assert config_fingerprint({"a": 1, "b": Path("x")}) == config_fingerprint({"b": "x", "a": 1})
    assert config_fingerprint({"a": 1}) != config_fingerprint({"a": 2})

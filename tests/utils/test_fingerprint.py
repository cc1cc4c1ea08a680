import os
import shutil
from pathlib import Path

import pytest

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.utils.fingerprint import (
    config_fingerprint,
    files_fingerprint,
    tree_fingerprint,
    update_with_tensors,
)


@pytest.fixture
def sources(tiny_mvtec: Path) -> list[Path]:
    return sorted((tiny_mvtec / "train" / "good").glob("*.png"))


def test_files_fingerprint_sees_contents_and_the_set_not_order_place_or_mtime(sources: list[Path], tmp_path: Path) -> None:
    base = files_fingerprint(sources)
    assert files_fingerprint(list(reversed(sources))) == base
    assert files_fingerprint(sources[:-1]) != base
    stat = sources[0].stat()
    os.utime(sources[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert files_fingerprint(sources) == base  # touched, not changed
    moved = [Path(shutil.copy(path, tmp_path / path.name)) for path in sources]
    assert files_fingerprint(moved) == base  # a dataset on another disk keeps its fits and caches
    with sources[1].open("ab") as handle:
        handle.write(b"\0")
    assert files_fingerprint(sources) != base


def test_ordered_fingerprint_follows_the_order(sources: list[Path]) -> None:
    assert files_fingerprint(sources, ordered=True) != files_fingerprint(list(reversed(sources)), ordered=True)


def test_missing_source_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match=r"gone\.png: a source file is missing"):
        files_fingerprint([tmp_path / "gone.png"])


def test_config_fingerprint_is_key_order_independent() -> None:
    assert config_fingerprint({"a": 1, "b": Path("x")}) == config_fingerprint({"b": "x", "a": 1})
    assert config_fingerprint({"a": 1}) != config_fingerprint({"a": 2})


def test_tree_fingerprint_sees_where_each_file_lies_below_the_root_not_where_the_root_lies(
    tiny_mvtec: Path, tmp_path: Path
) -> None:
    files = sorted(tiny_mvtec.rglob("*.png"))
    base = tree_fingerprint(tiny_mvtec, files)
    assert tree_fingerprint(tiny_mvtec, list(reversed(files))) == base
    copy = Path(shutil.copytree(tiny_mvtec, tmp_path / "elsewhere"))
    assert tree_fingerprint(copy, sorted(copy.rglob("*.png"))) == base
    assert not (copy / "test" / "good" / "011.png").exists()
    shutil.move(copy / "train" / "good" / "011.png", copy / "test" / "good" / "011.png")  # same name and contents
    assert tree_fingerprint(copy, sorted(copy.rglob("*.png"))) != base  # a train normal became a test normal


def test_tensor_fingerprints_follow_names_and_values_and_optionally_ignore_half_precision() -> None:
    import hashlib

    import torch

    def hashed(tensors: dict, as_float: bool = False) -> str:
        digest = hashlib.sha256()
        update_with_tensors(digest, tensors, as_float=as_float)
        return digest.hexdigest()

    weights = {"b": torch.arange(4.0), "a": torch.ones(2, 2).t()}  # a transposed view hashes as its values
    base = hashed(weights)
    assert hashed({"b": torch.arange(4.0), "a": weights["a"].contiguous()}) == base
    assert hashed(dict(reversed(weights.items()))) == base
    assert hashed({"b": weights["b"], "c": weights["a"]}) != base  # another name
    assert hashed({**weights, "b": torch.arange(4.0) + 1}) != base
    half = {name: tensor.half() for name, tensor in weights.items()}
    assert hashed(half, as_float=True) == hashed(weights, as_float=True) and hashed(half) != base

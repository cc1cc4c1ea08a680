"""Lists of differently sized tensors in one safetensors file: round trip, digest, clear errors."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from anomaly_synth_aug.errors import CorruptFileError, InvalidInputError
from anomaly_synth_aug.generators._tensor_store import digest_tensor_lists, load_tensor_lists, save_tensor_lists


def _lists() -> dict[str, list[torch.Tensor]]:
    return {
        "images": [torch.rand(3, 4, 5), torch.rand(3, 7, 2)],
        "masks": [torch.rand(4, 5) > 0.5, torch.rand(7, 2) > 0.5],
        "empty": [],
    }


def test_round_trip_keeps_order_shapes_dtypes_and_metadata(tmp_path: Path) -> None:
    lists = _lists()
    save_tensor_lists(tmp_path / "state.safetensors", lists, {"types": '["a", "b"]'})
    loaded, metadata = load_tensor_lists(tmp_path / "state.safetensors")
    assert metadata == {"types": '["a", "b"]'}
    assert loaded.keys() == lists.keys()
    for name, items in lists.items():
        assert len(loaded[name]) == len(items)
        assert all(torch.equal(a, b) and a.dtype == b.dtype for a, b in zip(items, loaded[name], strict=True))


def test_digest_follows_content_and_metadata() -> None:
    lists = _lists()
    digest = digest_tensor_lists(lists, {"k": "v"})
    assert digest == digest_tensor_lists({k: [t.clone() for t in v] for k, v in lists.items()}, {"k": "v"})
    assert digest != digest_tensor_lists(lists, {"k": "w"})
    lists["images"][0][0, 0, 0] += 0.5
    assert digest != digest_tensor_lists(lists, {"k": "v"})


def test_missing_and_corrupt_files_name_the_file(tmp_path: Path) -> None:
    with pytest.raises(InvalidInputError, match="gone.safetensors: generator state file not found"):
        load_tensor_lists(tmp_path / "gone.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 16)
    with pytest.raises(CorruptFileError, match="bad.safetensors: unreadable generator state"):
        load_tensor_lists(tmp_path / "bad.safetensors")

import json
from dataclasses import replace
from pathlib import Path

import pytest

from anomaly_synth_aug.cache.layout import CacheLayout
from anomaly_synth_aug.cache.manifest import CacheHeader, ManifestEntry, drop_torn_tail, read_manifest
from anomaly_synth_aug.errors import CorruptFileError


def entry(sample_id: str = "dent/000000", **changes: object) -> ManifestEntry:
    defect_type = sample_id.split("/")[0]
    base = ManifestEntry(
        id=sample_id,
        image=CacheLayout.image_name(sample_id),
        mask=CacheLayout.mask_name(sample_id),
        defect_type=defect_type,
        source="/data/train/good/000.png",
        seed=12,
        generator="f" * 64,
        image_sha256="a" * 64,
        mask_sha256="b" * 64,
    )
    return replace(base, **changes)


def write_lines(layout: CacheLayout, *lines: str, end: str = "\n") -> None:
    layout.root.mkdir(parents=True, exist_ok=True)
    layout.manifest.write_text("\n".join(lines) + end)


def test_entries_round_trip(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path)
    entries = [entry("dent/000000"), entry("spot/000001")]
    write_lines(layout, *(e.to_json() for e in entries))
    result = read_manifest(layout)
    assert result.entries == entries and not result.problems and not result.torn_tail


def test_missing_manifest_reads_empty(tmp_path: Path) -> None:
    result = read_manifest(CacheLayout(tmp_path))
    assert result.entries == [] and result.problems == []


def test_bad_lines_are_reported_with_line_numbers(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path)
    good = entry()
    no_seed = {k: v for k, v in json.loads(good.to_json()).items() if k != "seed"}
    write_lines(
        layout,
        good.to_json(),
        "{not json",
        json.dumps(no_seed),
        json.dumps(json.loads(good.to_json()) | {"seed": "12"}),
        entry("dent/000001", image="/etc/passwd").to_json(),
        entry("dent/000002", mask="../../x_mask.png").to_json(),
        entry("dent/000003", image="images/dent/other.png").to_json(),
        entry("dent/000004", defect_type="spot").to_json(),
        entry(image_sha256="c" * 64).to_json(),
        good.to_json(),
        "",
    )
    result = read_manifest(layout)
    assert result.entries == [good]
    kinds = {problem.line: problem.kind for problem in result.problems}
    assert kinds == {
        2: "malformed",
        3: "malformed",
        4: "malformed",
        5: "unsafe",
        6: "unsafe",
        7: "malformed",
        8: "malformed",
        9: "duplicate",
        10: "duplicate",
        11: "malformed",
    }
    assert "missing field 'seed'" in str(result.problems[1])


def test_torn_tail_is_ignored_then_dropped(tmp_path: Path) -> None:
    layout = CacheLayout(tmp_path)
    first = entry().to_json()
    write_lines(layout, first, '{"id": "dent/0000', end="")
    result = read_manifest(layout)
    assert result.torn_tail and result.entries == [entry()] and not result.problems
    assert drop_torn_tail(layout.manifest)
    assert layout.manifest.read_text() == first + "\n"
    assert not drop_torn_tail(layout.manifest)


def make_header(**changes: object) -> CacheHeader:
    header = CacheHeader(
        generator_class="G",
        generator_fingerprint="g" * 64,
        config_fingerprint="c" * 64,
        data_fingerprint="d" * 64,
        samples_per_type=4,
        defect_types=("dent", "spot"),
        seed=0,
        num_sources=12,
        config={"category": "tile", "size": 64},
    )
    return replace(header, **changes)


def test_header_round_trip_and_identity(tmp_path: Path) -> None:
    header = make_header()
    header.write(tmp_path / "cache.json")
    loaded = CacheHeader.read(tmp_path / "cache.json")
    assert loaded == header and loaded.identity() == header.identity()
    assert loaded.expected_count == 8
    assert make_header(created="other time").identity() == header.identity()


def test_header_differences_name_fields_and_config_keys() -> None:
    old = make_header()
    new = make_header(
        generator_fingerprint="h" * 64, config_fingerprint="e" * 64, config={"category": "tile", "size": 32}
    )
    changes = old.differences(new)
    assert any(change.startswith("generator_fingerprint") for change in changes)
    assert "config: size: 64 -> 32" in changes
    assert not any("data_fingerprint" in change for change in changes)


@pytest.mark.parametrize("text", ["{broken", "[]", '{"generator_class": "G"}'])
def test_unreadable_header_is_corrupt_file_error(tmp_path: Path, text: str) -> None:
    path = tmp_path / "cache.json"
    path.write_text(text)
    with pytest.raises(CorruptFileError) as info:
        CacheHeader.read(path)
    assert str(path) in str(info.value) and "Fix:" in str(info.value)

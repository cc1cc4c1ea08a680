"""``benchmarks/compare_pools.py``: two pools of the same masks, compared item by item inside the mask."""

import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from shared_fixtures import load_script

from anomaly_synth_aug.cache.layout import CacheLayout
from anomaly_synth_aug.cache.manifest import ManifestEntry
from anomaly_synth_aug.errors import InvalidInputError


def _pool(root: Path, source: Path, change: int, mask_side: int = 8) -> Path:
    """A pool of two items per type, each the source with ``change`` grey levels added inside a square mask."""
    base = np.asarray(Image.open(source), dtype=np.int16)
    lines = []
    for defect_type in ("blob", "scratch"):
        for index in range(2):
            sample_id = CacheLayout.sample_id(defect_type, index)
            mask = np.zeros(base.shape, dtype=np.uint8)
            mask[4 : 4 + mask_side, 4 : 4 + mask_side] = 255
            image = np.clip(base + (mask > 0) * change, 0, 255).astype(np.uint8)
            for name, array in ((CacheLayout.image_name(sample_id), image), (CacheLayout.mask_name(sample_id), mask)):
                (root / name).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(array).save(root / name)
            entry = ManifestEntry(
                id=sample_id, image=CacheLayout.image_name(sample_id), mask=CacheLayout.mask_name(sample_id),
                defect_type=defect_type, source=str(source), seed=index, generator="g", image_sha256="x",
                mask_sha256=f"mask{mask_side}",
            )  # fmt: skip
            lines.append(entry.to_json())
    (root / "manifest.jsonl").write_text("\n".join(lines) + "\n")
    return root


@pytest.fixture
def source(tmp_path: Path) -> Path:
    path = tmp_path / "normal.png"
    Image.fromarray(np.full((32, 32), 100, dtype=np.uint8)).save(path)
    return path


def test_the_change_inside_the_mask_is_measured_per_pool_and_type(tmp_path: Path, source: Path) -> None:
    compare_pools = load_script("compare_pools")
    faint, strong = _pool(tmp_path / "faint", source, 5), _pool(tmp_path / "strong", source, 40)
    out, sheet = tmp_path / "numbers.json", tmp_path / "sheet.png"
    argv = [str(faint), str(strong), "--labels", "inversion", "repaint", "--out", str(out), "--sheet", str(sheet)]
    assert compare_pools.main(argv) == 0
    numbers = json.loads(out.read_text())["by_type"]
    assert numbers["inversion"]["blob"]["mean_abs_change"] == pytest.approx(5, abs=0.5)
    assert numbers["inversion"]["blob"]["changed_share"] == 0.0  # 5 grey levels: below the changed line
    assert numbers["repaint"]["scratch"]["mean_abs_change"] == pytest.approx(40, abs=0.5)
    assert numbers["repaint"]["scratch"]["changed_share"] == 1.0 and numbers["repaint"]["scratch"]["items"] == 2
    assert sheet.stat().st_size > 0


def test_pools_of_other_masks_are_refused(tmp_path: Path, source: Path) -> None:
    compare_pools = load_script("compare_pools")
    first, other = _pool(tmp_path / "a", source, 5), _pool(tmp_path / "b", source, 5, mask_side=6)
    with pytest.raises(InvalidInputError, match="another source or mask"):
        compare_pools.main([str(first), str(other)])
    with pytest.raises(InvalidInputError, match="no cached samples"):
        compare_pools.main([str(first), str(tmp_path)])


def test_labels_and_counts_are_checked_before_any_work(tmp_path: Path, source: Path) -> None:
    compare_pools = load_script("compare_pools")
    a, b, c = (_pool(tmp_path / name, source, 5) for name in "abc")
    with pytest.raises(InvalidInputError, match="different names"):
        compare_pools.main([str(a), str(b), str(c), "--labels", "x", "x", "y"])  # would drop a pool silently
    with pytest.raises(InvalidInputError, match="labels for 3 pools"):
        compare_pools.main([str(a), str(b), str(c), "--labels", "x", "y"])
    with pytest.raises(InvalidInputError, match="count items"):
        compare_pools.main([str(a), str(b), "--items", "0"])


def test_a_torn_manifest_is_named_not_read(tmp_path: Path, source: Path) -> None:
    compare_pools = load_script("compare_pools")
    torn = _pool(tmp_path / "torn", source, 5)
    manifest = torn / "manifest.jsonl"
    manifest.write_text(manifest.read_text() + '{"id": "blob/00')  # an append cut short
    with pytest.raises(InvalidInputError, match="torn last line"):
        compare_pools.main([str(_pool(tmp_path / "ok", source, 5)), str(torn)])

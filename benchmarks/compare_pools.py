"""How do two sampling variants differ on the same masks? Cached pools of one fit, compared item by item.

Pools that the downstream benchmark cached from the same fit and seed (``diffusion`` and
``diffusion_no_inversion``, say) hold, item by item, the same source normal and the same mask; only
the sampling differs. Per defect type this reports how much each pool changed the source inside the
mask: the mean |generated - source| in grey levels (0-255) and the share of mask pixels changed by
more than ``CHANGED`` grey levels. ``--sheet`` draws close crops of a few items per type: the source,
then each pool's defect, the mask outlined in red. Nothing here reads test data.

    python benchmarks/compare_pools.py runs/benchmark/mvtec_screw/full/cache/diffusion-seed2 \\
        runs/benchmark/mvtec_screw/full/cache/diffusion_no_inversion-seed2 \\
        --sheet benchmarks/results/diffusion_screw/inversion_vs_repaint.png \\
        --out benchmarks/results/diffusion_screw/inversion_vs_repaint.json
"""

from __future__ import annotations

import argparse
import json
import statistics
from collections import defaultdict
from pathlib import Path

import torch
import torch.nn.functional as F

from anomaly_synth_aug.cache.layout import CacheLayout
from anomaly_synth_aug.cache.manifest import ManifestEntry, read_manifest
from anomaly_synth_aug.data.io import load_image, load_mask
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.visualization.figures import save_figure

CHANGED = 8  # grey levels: below this a pixel counts as unchanged
CROP = 128  # pixels of every tile on the sheet


def read_pool(root: Path) -> dict[str, ManifestEntry]:
    """A pool's committed samples by id; a folder without any is refused with its name."""
    read = read_manifest(CacheLayout(root))
    if read.problems or read.torn_tail:
        raise InvalidInputError(
            f"its manifest has {len(read.problems)} bad lines" + (" and a torn last line" if read.torn_tail else ""),
            path=root / "manifest.jsonl",
            fix="let the benchmark finish or recover the pool (it verifies and repairs pools when it loads them)",
        )
    if not read.entries:
        raise InvalidInputError("holds no cached samples", path=root, fix="pass a pool folder (with manifest.jsonl)")
    return read.by_id()


def paired_ids(pools: dict[str, dict[str, ManifestEntry]], per_type: int) -> dict[str, list[str]]:
    """Up to ``per_type`` ids per defect type, evenly spaced, present in every pool with the same source and mask."""
    names = list(pools)
    common = sorted(set.intersection(*(set(entries) for entries in pools.values())))
    by_type: dict[str, list[str]] = defaultdict(list)
    for sample_id in common:
        first = pools[names[0]][sample_id]
        for name in names[1:]:
            other = pools[name][sample_id]
            if (other.source, other.mask_sha256) != (first.source, first.mask_sha256):
                raise InvalidInputError(
                    f"item {sample_id} has another source or mask in pool {name!r} than in pool {names[0]!r}",
                    fix="compare pools cached from the same fit and seed (they differ only in sampling options)",
                )
        by_type[first.defect_type].append(sample_id)
    if not by_type:
        raise InvalidInputError(f"the pools {names} share no item", fix="compare pools of the same fit and seed")
    return {t: ids[:: max(1, len(ids) // per_type)][:per_type] for t, ids in sorted(by_type.items())}


def change_inside_mask(image: torch.Tensor, source: torch.Tensor, mask: torch.Tensor) -> tuple[float, float]:
    """(mean |image - source| in grey levels, share of pixels changed by more than ``CHANGED``) inside ``mask``."""
    difference = (image.mean(0) - source.mean(0)).abs()[mask] * 255
    return float(difference.mean()), float((difference > CHANGED).float().mean())


SheetItem = tuple[str, torch.Tensor, torch.Tensor, list[torch.Tensor]]  # (type, source, mask, one image per pool)


def compare(
    pools: dict[str, Path], per_type: int, sheet_items: int = 0
) -> tuple[dict[str, dict[str, dict[str, float]]], list[SheetItem]]:
    """Per pool and type, the mean change inside the mask; and the first ``sheet_items`` items per type, loaded."""
    entries = {name: read_pool(root) for name, root in pools.items()}
    ids = paired_ids(entries, per_type)
    first_pool = next(iter(pools))
    numbers: dict[str, dict[str, dict[str, float]]] = {name: {} for name in pools}
    items: list[SheetItem] = []
    for defect_type, chosen in ids.items():
        changes: dict[str, list[tuple[float, float]]] = defaultdict(list)
        for position, sample_id in enumerate(chosen):
            entry = entries[first_pool][sample_id]
            source = load_image(entry.source)
            size = tuple(source.shape[-2:])
            mask = load_mask(pools[first_pool] / entry.mask, expected_size=size, require_defect=True)
            generated = [load_image(pools[name] / entries[name][sample_id].image) for name in pools]
            for name, image in zip(pools, generated, strict=True):
                changes[name].append(change_inside_mask(image, source, mask))
            if position < sheet_items:  # only these stay in memory
                items.append((defect_type, source, mask, generated))
        for name in pools:
            numbers[name][defect_type] = {
                "mean_abs_change": statistics.fmean(c[0] for c in changes[name]),
                "changed_share": statistics.fmean(c[1] for c in changes[name]),
                "items": len(changes[name]),
            }
    return numbers, items


def crop(image: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """A square crop twice the mask's box (at least ``CROP`` px), resized to ``CROP``, the mask outlined in red."""
    rows, cols = torch.nonzero(mask, as_tuple=True)
    side = max(CROP, 2 * int(max(rows.max() - rows.min(), cols.max() - cols.min())) + 1)
    top = int(rows.float().mean()) - side // 2
    left = int(cols.float().mean()) - side // 2
    height, width = mask.shape
    top, left = max(0, min(top, height - side)), max(0, min(left, width - side))
    window = image[:, top : top + side, left : left + side].clone()
    region = mask[top : top + side, left : left + side].float()[None, None]
    outline = (F.max_pool2d(region, 3, 1, 1) - region)[0, 0].bool()
    window[:, outline] = torch.tensor([1.0, 0.0, 0.0])[:, None]
    return F.interpolate(window[None], size=(CROP, CROP), mode="bilinear", antialias=True)[0].clamp(0, 1)


def draw_sheet(items: list[SheetItem], names: list[str], path: Path, per_row: int) -> Path:
    """One row per defect type: ``per_row`` items, each as source | pool 1 | pool 2 | ..."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    types = sorted({item[0] for item in items})
    columns = per_row * (1 + len(names))
    figure, axes = plt.subplots(len(types), columns, figsize=(1.3 * columns, 1.45 * len(types)), squeeze=False)
    for axis in axes.flat:
        axis.axis("off")
    for row, defect_type in enumerate(types):
        chosen = [item for item in items if item[0] == defect_type][:per_row]
        for index, (_, source, mask, generated) in enumerate(chosen):
            for offset, (label, image) in enumerate(zip(["source", *names], [source, *generated], strict=True)):
                axis = axes[row][index * (1 + len(names)) + offset]
                axis.imshow(crop(image, mask).permute(1, 2, 0).numpy())
                if row == 0:
                    axis.set_title(label, fontsize=7)
        axes[row][0].text(-0.1, 0.5, defect_type, transform=axes[row][0].transAxes, ha="right", va="center", fontsize=8)
    figure.tight_layout()
    return save_figure(figure, path, dpi=110)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("pools", type=Path, nargs="+", help="cached pool folders of one fit and seed")
    parser.add_argument("--items", type=int, default=30, help="items measured per defect type (default 30)")
    parser.add_argument("--sheet", type=Path, help="also draw close crops of a few items per type (PNG)")
    parser.add_argument("--sheet-items", type=int, default=3, help="items per type on the sheet (default 3)")
    parser.add_argument("--out", type=Path, help="also write the numbers as JSON")
    parser.add_argument("--labels", nargs="+", help="a short name per pool (default: the folder names)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    labels = args.labels or [path.name for path in args.pools]
    if len(labels) != len(args.pools):
        raise InvalidInputError(f"got {len(labels)} labels for {len(args.pools)} pools", fix="pass one per pool")
    if len(args.pools) < 2 or len(set(labels)) != len(labels):
        raise InvalidInputError(
            f"needs two or more pools with different names, got {labels}", fix="pass two pools, or distinct --labels"
        )
    if args.items < 1 or args.sheet_items < 1:
        raise InvalidInputError("--items and --sheet-items count items", fix="pass numbers of 1 or more")
    pools = dict(zip(labels, args.pools, strict=True))
    numbers, items = compare(pools, args.items, args.sheet_items if args.sheet is not None else 0)
    print(f"mean |generated - source| inside the mask, grey levels (share of mask pixels changed > {CHANGED})")
    for defect_type in next(iter(numbers.values())):
        cells = [f"{name}: {n[defect_type]['mean_abs_change']:5.1f} ({n[defect_type]['changed_share']:.2f})"
                 for name, n in numbers.items()]  # fmt: skip
        print(f"  {defect_type:20s} " + "   ".join(cells))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps({"pools": {n: str(p) for n, p in pools.items()}, "by_type": numbers}, indent=2))
    if args.sheet is not None:
        print(f"sheet: {draw_sheet(items, list(pools), args.sheet, args.sheet_items)}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

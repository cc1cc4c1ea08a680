"""The few-shot protocol: which real defects the generator may see, and which are held out.

Per defect type, the first ``shot_fraction`` of the anomalous test images (sorted
by file name, at least one) become generator *shots*; the rest of the anomalies
plus every test normal form the evaluation set. A shot is never evaluated on:
``FewShotSplit`` checks that the two sets are disjoint when it is built.
``max_shots_per_type`` keeps only the first few of each type's shots; the others are
used for nothing, so the evaluation set is the same whatever the cap (a curve in the
number of shots compares like with like).
"""

from __future__ import annotations

import logging
import math
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from anomaly_synth_aug.data.io import IMAGE_EXTENSIONS, MASK_THRESHOLD, load_sample
from anomaly_synth_aug.data.sample import AnomalySample
from anomaly_synth_aug.errors import InvalidInputError, MaskError

logger = logging.getLogger(__name__)

DEFAULT_SHOT_FRACTION = 1 / 3


@dataclass(frozen=True)
class DefectRecord:
    """A real defect image on disk: its path, its mask (or None) and its type."""

    image_path: Path
    mask_path: Path | None
    defect_type: str


def check_shot_fraction(shot_fraction: float) -> None:
    """Refuse a share of shots that leaves no shot or nothing to evaluate, naming the parameter."""
    if not 0.0 < shot_fraction < 1.0:
        raise InvalidInputError(
            f"shot_fraction must be in (0, 1), got {shot_fraction}",
            fix="use e.g. 1/3: the first third of each defect type trains the generator",
        )


def check_max_shots_per_type(max_shots_per_type: int | None) -> None:
    """Refuse a cap on the shots per type that leaves none, naming the parameter."""
    if max_shots_per_type is not None and max_shots_per_type < 1:
        raise InvalidInputError(
            f"max_shots_per_type must be >= 1 or None, got {max_shots_per_type}",
            fix="use e.g. 5 (the first five shots of each defect type), or None for every shot",
        )


def cap_shots(shots: Iterable[DefectRecord], max_shots_per_type: int | None) -> list[DefectRecord]:
    """The first ``max_shots_per_type`` shots of each type by file name (all of them for None), in type order.

    Example:
        >>> shots, held_out = split_records(records)
        >>> five_each = cap_shots(shots, 5)  # held_out stays the evaluation set
    """
    check_max_shots_per_type(max_shots_per_type)
    return [record for ordered in _by_type(shots).values() for record in ordered[:max_shots_per_type]]


def _by_type(records: Iterable[DefectRecord]) -> dict[str, list[DefectRecord]]:
    """Records grouped per defect type, types in name order, each type's records in file-name order."""
    by_type: dict[str, list[DefectRecord]] = defaultdict(list)
    for record in records:
        by_type[record.defect_type].append(record)
    return {t: sorted(by_type[t], key=lambda r: r.image_path.name) for t in sorted(by_type)}


def shot_count(total: int, shot_fraction: float) -> int:
    """How many of ``total`` images of one type are shots: ``floor(total * fraction)``, at least 1."""
    check_shot_fraction(shot_fraction)
    if total < 2:
        return total  # a lone image cannot be both shot and evaluation; keep it as a shot
    # rounded first: 100 * 0.29 is 28.999999999999996 in floating point, and its floor would lose a shot
    return min(total - 1, max(1, math.floor(round(total * shot_fraction, 9))))


def split_records(
    records: Iterable[DefectRecord], shot_fraction: float = DEFAULT_SHOT_FRACTION
) -> tuple[list[DefectRecord], list[DefectRecord]]:
    """Split defect records per type into (shots, held-out) by sorted file name."""
    shots: list[DefectRecord] = []
    held_out: list[DefectRecord] = []
    for defect_type, ordered in _by_type(records).items():
        k = shot_count(len(ordered), shot_fraction)
        shots.extend(ordered[:k])
        held_out.extend(ordered[k:])
        if k == len(ordered):
            _warn_nothing_held_out(defect_type, len(ordered))
    return shots, held_out


_warned_types: set[tuple[str, int]] = set()


def _warn_nothing_held_out(defect_type: str, count: int) -> None:
    """Once per type: a type whose every image is a shot is never tested (its detection goes unmeasured)."""
    if (defect_type, count) in _warned_types:
        return
    _warned_types.add((defect_type, count))
    logger.warning(
        "Defect type %r has %d image(s): all of them are generator shots and none is held out, so no test "
        "measures this type. Add more images of it to test/%s/ to evaluate it.",
        defect_type,
        count,
        defect_type,
    )


@dataclass
class FewShotSplit:
    """Shots for the generator, and the evaluation set that never contains them."""

    shots: list[DefectRecord]
    eval_anomalies: list[DefectRecord]
    eval_normals: list[Path]
    train_normals: list[Path] = field(default_factory=list)

    def __post_init__(self) -> None:
        overlap = {r.image_path.resolve() for r in self.shots} & {
            r.image_path.resolve() for r in self.eval_anomalies
        }
        if overlap:  # an invariant, not user input: fail loudly
            raise AssertionError(f"few-shot split leaks shots into evaluation: {sorted(overlap)[:3]}")

    @property
    def defect_types(self) -> list[str]:
        return sorted({r.defect_type for r in self.shots})

    @property
    def shot_paths(self) -> set[Path]:
        return {r.image_path.resolve() for r in self.shots}

    def load_shots(
        self,
        *,
        threshold: int = MASK_THRESHOLD,
        on_empty_mask: Literal["skip", "error"] = "skip",
    ) -> list[AnomalySample]:
        """Read the shots. Shots whose binarised mask is empty teach no location: skipped with a
        warning naming the file (``on_empty_mask="skip"``) or an error (``"error"``)."""
        return load_defect_records(self.shots, threshold=threshold, on_empty_mask=on_empty_mask)


def load_defect_records(
    records: Sequence[DefectRecord],
    *,
    threshold: int = MASK_THRESHOLD,
    on_empty_mask: Literal["skip", "error"] = "skip",
) -> list[AnomalySample]:
    """Read defect records into samples (see ``FewShotSplit.load_shots`` for the empty-mask rule).

    Records that all have empty masks are an error naming their folder, whatever ``on_empty_mask`` says.
    """
    samples: list[AnomalySample] = []
    for record in records:
        if record.mask_path is None:
            raise MaskError(
                "defect shot has no mask",
                path=record.image_path,
                fix="add <stem>_mask.png under ground_truth/<defect_type>/",
            )
        try:
            samples.append(
                load_sample(
                    record.image_path, record.mask_path, record.defect_type, threshold=threshold, require_defect=True
                )
            )
        except MaskError as exc:
            if on_empty_mask == "skip" and "empty" in exc.problem:
                logger.warning("Skipping shot with an empty mask: %s", record.mask_path)
                continue
            raise
    if records and not samples:  # else the first error would blame the caller for passing no shots
        raise MaskError(
            f"every one of the {len(records)} defect masks is empty after binarising at > {threshold}",
            path=records[0].mask_path.parent if records[0].mask_path else records[0].image_path,
            fix="draw the defect regions in the masks (white on black), or lower mask_threshold if they are fainter",
        )
    return samples


def few_shot_split(
    root: str | Path,
    shot_fraction: float = DEFAULT_SHOT_FRACTION,
    *,
    max_shots_per_type: int | None = None,
    extensions: Sequence[str] = IMAGE_EXTENSIONS,
) -> FewShotSplit:
    """Split an MVTec-layout folder (``train/good``, ``test/<type>``, ``ground_truth/<type>``).

    The files are found by ``scan_mvtec_folder`` (masks: ``ground_truth/<type>/<stem>_mask.*``); a
    defect image without a mask is recorded with ``mask_path=None`` (an error only if it becomes a
    loaded shot). ``max_shots_per_type`` keeps the first shots of each type (``cap_shots``).
    """
    from anomaly_synth_aug.data.mvtec_folder import (
        scan_mvtec_folder,  # imports anomalib: only when splitting
    )

    layout = scan_mvtec_folder(root, extensions=extensions, require_masks=False, decode=False)
    records = [
        DefectRecord(image, mask, defect_type)
        for defect_type, pairs in layout.defects.items()
        for image, mask in pairs
    ]
    shots, held_out = split_records(records, shot_fraction)
    return FewShotSplit(
        shots=cap_shots(shots, max_shots_per_type),
        eval_anomalies=held_out,
        eval_normals=layout.test_normals,
        train_normals=layout.train_normals,
    )

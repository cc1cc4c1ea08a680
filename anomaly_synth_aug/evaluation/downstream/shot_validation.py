"""Choosing among generator variants without test data: validation on held-back shots.

A benchmark's test set must never choose a setting, and the synthetic validation set cannot either:
each variant would be judged on its own defects. The shots are the user's own labelled data, so
``shot_validation_layout`` builds an MVTec-layout folder from the training side alone. Its
``test/<type>`` holds the category's shots (the first ``shot_fraction`` of each type by file name,
exactly those the benchmark gives the generator), its ``test/good`` an evenly spaced share of the
train normals, which leave ``train/good``. Run on it with a shot fraction of one half, the benchmark
fits every candidate on the first half of each type's shots (rounded down) and scores its detector
on the rest: real defects that no test image is among. Files are linked, never copied.

``choose_variant`` applies a rule fixed before any run: the first candidate (the default) stays
unless another one's mean validation pixel AP is higher by at least ``min_gain`` and its image
AUROC no lower than the default's by more than ``min_gain``; of several such, the highest pixel AP wins.
``judged_sources`` reads a recorded pick back, so that the benchmark's verdict judges the chosen variant.

Example:
    >>> layout = shot_validation_layout("../shared/data/mvtec_screw", "runs/shot_validation/mvtec_screw")
    >>> runs = ResultsStore("benchmarks/results/shot_validation/mvtec_screw/downstream_full.json").runs
    >>> choice = choose_variant(runs, ["diffusion_with_shots", "diffusion_no_inversion_with_shots"])
    >>> print(choice_markdown(choice))
"""

from __future__ import annotations

import json
import logging
import math
import shutil
import statistics
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from anomaly_synth_aug.data.fewshot import DEFAULT_SHOT_FRACTION, few_shot_split
from anomaly_synth_aug.data.mvtec_folder import MvtecLayout, scan_mvtec_folder
from anomaly_synth_aug.errors import InvalidInputError, MaskError
from anomaly_synth_aug.evaluation.downstream.generator_table import variant_counterparts
from anomaly_synth_aug.evaluation.source_verdict import FAMILIES, OPTIONAL, with_variant

logger = logging.getLogger(__name__)

#: Written at the layout's root: what it was built from (and the mark that it may be rebuilt).
MARKER = "SHOT_VALIDATION.json"
#: Written beside the validation runs by ``benchmarks/shot_validation.py``: the pick and what it was made on.
CHOICE_FILE = "choice.json"
#: Its readable twin, which the verdict's note points to.
CHOICE_REPORT = "choice.md"
#: Share of the train normals that become the validation set's normals.
NORMAL_SHARE = 0.15
#: Within this, pixel AP and image AUROC count as level: the default is kept.
MIN_GAIN = 0.01
#: The validation metric the rule ranks by, and the one it guards.
RANKED, GUARDED = "pixel_AUPR", "image_AUROC"


def held_back_normals(normals: Sequence[Path], share: float = NORMAL_SHARE) -> list[Path]:
    """An evenly spaced ``share`` of ``normals`` (sorted by name; at least one, never all of them)."""
    if not 0.0 < share < 1.0:
        raise InvalidInputError(f"normal share must be in (0, 1), got {share}", fix=f"use e.g. {NORMAL_SHARE}")
    ordered = sorted(normals, key=lambda p: p.name)
    if len(ordered) < 2:
        raise InvalidInputError(
            f"{len(ordered)} train normal(s): nothing to hold back for validation and still train on",
            fix="add normal images to train/good/",
        )
    count = min(len(ordered) - 1, max(1, round(len(ordered) * share)))
    step = len(ordered) / count
    return [ordered[int(i * step)] for i in range(count)]


def shot_validation_layout(
    data_root: str | Path,
    dest: str | Path,
    *,
    shot_fraction: float = DEFAULT_SHOT_FRACTION,
    normal_share: float = NORMAL_SHARE,
) -> MvtecLayout:
    """Link the training side of ``data_root`` into an MVTec-layout folder at ``dest`` (see the module doc).

    A folder that already holds this very layout (its ``SHOT_VALIDATION.json`` lists the same links) is
    left as it is, so a second run can start while a first one reads it; one holding another layout is
    rebuilt; any other existing folder is refused, never overwritten. The folder is built beside
    ``dest`` and renamed into place, so an interrupted build leaves no half layout.
    """
    data_root, dest = Path(data_root).resolve(), Path(dest)
    marker = dest / MARKER
    if dest.exists() and not marker.is_file():
        raise InvalidInputError(
            f"refusing to build a validation layout in a folder that holds something else (no {MARKER})",
            path=dest,
            fix="pass an empty or missing folder",
        )
    description = describe_layout(data_root, shot_fraction, normal_share)
    if marker.is_file() and json.loads(marker.read_text()) == description:
        return scan_mvtec_folder(dest, decode=False)
    staging = dest.with_name(f".{dest.name}.partial")
    shutil.rmtree(staging, ignore_errors=True)  # left by an interrupted build
    for link, source in description["links"].items():
        target = staging / link
        target.parent.mkdir(parents=True, exist_ok=True)
        target.symlink_to(source)
    (staging / MARKER).write_text(json.dumps(description, indent=2) + "\n")
    shutil.rmtree(dest, ignore_errors=True)  # an earlier layout (checked above): links only
    staging.replace(dest)
    return scan_mvtec_folder(dest, decode=False)


def describe_layout(data_root: Path, shot_fraction: float, normal_share: float) -> dict[str, Any]:
    """What the validation folder of ``data_root`` holds: its settings, counts and every link (path -> file)."""
    split = few_shot_split(data_root, shot_fraction)
    normals = held_back_normals(split.train_normals, normal_share)
    kept = set(normals)
    links: dict[str, str] = {}
    for normal in split.train_normals:
        links[f"{'test' if normal in kept else 'train'}/good/{normal.name}"] = str(normal.resolve())
    for record in split.shots:
        if record.mask_path is None:
            raise MaskError(
                "this shot has no mask", path=record.image_path, fix="add its mask under ground_truth/<defect_type>/"
            )
        links[f"test/{record.defect_type}/{record.image_path.name}"] = str(record.image_path.resolve())
        links[f"ground_truth/{record.defect_type}/{record.mask_path.name}"] = str(record.mask_path.resolve())
    return {
        "source": str(data_root),
        "shot_fraction": shot_fraction,
        "normal_share": normal_share,
        "shots_per_type": {name: sum(r.defect_type == name for r in split.shots) for name in split.defect_types},
        "validation_normals": len(normals),
        "links": dict(sorted(links.items())),
    }


@dataclass(frozen=True)
class Candidate:
    """One variant's validation numbers (means over its seeds)."""

    name: str
    seeds: int
    pixel_ap: float
    image_auroc: float


@dataclass(frozen=True)
class Choice:
    """The variant the rule picked, and every candidate it weighed (the default first)."""

    chosen: str
    candidates: list[Candidate] = field(default_factory=list)
    min_gain: float = MIN_GAIN


def choose_variant(
    runs: Sequence[dict[str, Any]],
    candidates: Sequence[str],
    detector: str = "segmenter_prior",
    min_gain: float = MIN_GAIN,
) -> Choice:
    """The rule of the module doc over ``runs`` (benchmark records on a validation layout).

    Only seeds that every candidate has are compared, so the means are paired.
    """
    if len(candidates) < 2:
        raise InvalidInputError("a choice needs at least two candidates", fix="list the default first, then others")
    metrics: dict[str, dict[int, dict[str, float]]] = {name: {} for name in candidates}
    for run in runs:
        if run.get("detector") == detector and run.get("generator") in metrics:
            metrics[run["generator"]][run["seed"]] = run["metrics"]
    seeds = set.intersection(*(set(by_seed) for by_seed in metrics.values()))
    if not seeds:
        missing = [name for name, by_seed in metrics.items() if not by_seed]
        raise InvalidInputError(
            "no seed on which every candidate was validated"
            + (f" (none at all for {missing})" if missing else " (each was run on other seeds)"),
            fix="run every candidate on the same seed first",
        )
    undefined = [
        f"{name} seed {seed} {metric}"
        for name in candidates
        for seed in sorted(seeds)
        for metric in (RANKED, GUARDED)
        if metrics[name][seed].get(metric) is None
    ]
    if undefined:  # NaN is stored as null: e.g. a validation set without a defect of some kind
        raise InvalidInputError(
            f"no value for {', '.join(undefined)}",
            fix="delete those runs from the validation results file and run them again, or leave the candidate out",
        )
    measured = [
        Candidate(
            name=name,
            seeds=len(seeds),
            pixel_ap=statistics.fmean(metrics[name][s][RANKED] for s in seeds),
            image_auroc=statistics.fmean(metrics[name][s][GUARDED] for s in seeds),
        )
        for name in candidates
    ]
    default = measured[0]
    better = [
        c
        for c in measured[1:]
        if c.pixel_ap >= default.pixel_ap + min_gain and c.image_auroc >= default.image_auroc - min_gain
    ]
    chosen = max(better, key=lambda c: c.pixel_ap).name if better else default.name
    return Choice(chosen=chosen, candidates=measured, min_gain=min_gain)


@dataclass(frozen=True)
class RecordedChoice:
    """A pick as ``benchmarks/shot_validation.py`` stored it: on which category and detector it was made."""

    choice: Choice
    detector: str
    source: Path
    #: The benchmark's shot split the validation folder was built from (its shots are that split's).
    shot_fraction: float = DEFAULT_SHOT_FRACTION

    @property
    def default(self) -> str:
        """The candidate the pick was weighed against (listed first)."""
        return self.choice.candidates[0].name

    def mismatch(self, data: str | Path, detector: str, shot_fraction: float) -> str:
        """Why this pick does not apply to a benchmark of ``data`` for ``detector`` ("" when it does).

        It applies only to the very folder whose training side it was made on, for the same detector and
        shot split: with another split some of its held-back shots would be test images.
        """
        if self.detector != detector:
            return f"made for {self.detector}, not {detector}"
        if self.source.resolve() != Path(data).resolve():
            return f"made on {self.source}, not {data}"
        if not math.isclose(self.shot_fraction, shot_fraction):
            return f"made with shot fraction {self.shot_fraction:g}, the benchmark uses {shot_fraction:g}"
        return ""


def read_choice(path: str | Path) -> RecordedChoice:
    """The ``choice.json`` at ``path``; a clear error when it is not one."""
    path = Path(path)
    try:
        record = json.loads(path.read_text())
        candidates = [Candidate(**c) for c in record["candidates"]]
        choice = Choice(chosen=record["chosen"], candidates=candidates, min_gain=record["min_gain"])
        layout = record["layout"]
        shot_fraction = float(layout.get("shot_fraction", DEFAULT_SHOT_FRACTION))
        recorded = RecordedChoice(choice, record["detector"], Path(layout["source"]), shot_fraction)
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise InvalidInputError(
            f"not a readable choice record ({error.__class__.__name__}: {error})",
            path=path,
            fix="rewrite it with benchmarks/shot_validation.py --report-only, or move it aside",
        ) from error
    if not candidates or choice.chosen not in {c.name for c in candidates}:
        raise InvalidInputError(
            f"the pick {choice.chosen!r} is not among its candidates", path=path, fix="rewrite it with --report-only"
        )
    return recorded


def _families_with_pick(
    default: str, chosen: str
) -> tuple[dict[str, tuple[str, ...]], dict[str, tuple[str, ...]], dict[str, str]]:
    """The verdict's families and shown recipes with ``chosen``'s generator in place of ``default``'s, and the
    family's other recipes that moved with it (raises ``InvalidInputError`` when the pick cannot stand in)."""
    counterparts = variant_counterparts(default, chosen)
    return (*with_variant(FAMILIES, OPTIONAL, default, chosen, counterparts), counterparts)


def unusable_pick(default: str, chosen: str) -> str:
    """Why the benchmark's verdict cannot judge ``chosen`` in place of ``default`` ("" when it can).

    Any variants may be validated; only a pick that can stand in a verdict recipe changes the verdict.
    """
    try:
        _families_with_pick(default, chosen)
    except InvalidInputError as error:
        return str(error)
    return ""


@dataclass(frozen=True)
class JudgedSources:
    """The recipes a verdict judges on one dataset, those it shows without judging, and a note on the pick
    made on held-back shots ("" when none applies)."""

    families: Mapping[str, Sequence[str]] = field(default_factory=lambda: dict(FAMILIES))
    unjudged: Mapping[str, Sequence[str]] = field(default_factory=lambda: dict(OPTIONAL))
    note: str = ""
    #: (default, chosen) when a variant was chosen in place of its default.
    replaced: tuple[str, str] | None = None
    #: The family's other recipes on the default generator -> the same on the chosen one, judged in their place.
    counterparts: Mapping[str, str] = field(default_factory=dict)


def judged_sources(
    data: str | Path | None,
    choices: Path | None,
    detector: str,
    *,
    shot_fraction: float = DEFAULT_SHOT_FRACTION,
    root: Path | None = None,
) -> JudgedSources:
    """The default families, with the variant picked on ``data``'s held-back shots in place of its default.

    The pick is ``<choices>/<data's name>/choice.json``. One made on another folder (the validation
    layout's own results), for another detector or another shot split is ignored (logged), and so is an
    unusable record (with a warning): a report is never lost to it. ``root``: the note's path is shown
    relative to it.

    Example:
        >>> judged = judged_sources("../shared/data/magnetic_tile", Path("benchmarks/results/shot_validation"),
        ...                         "segmenter_prior")
    """
    path = None if choices is None or data is None else choices / Path(data).name / CHOICE_FILE
    if path is None or not path.is_file():
        return JudgedSources()
    try:
        recorded = read_choice(path)
        families, unjudged, counterparts = _families_with_pick(recorded.default, recorded.choice.chosen)
    except InvalidInputError as error:
        logger.warning("Ignoring the variant choice: %s", error)
        return JudgedSources()
    if reason := recorded.mismatch(data, detector, shot_fraction):
        logger.info("The variant choice %s does not apply here: %s.", path, reason)
        return JudgedSources()
    default, chosen = recorded.default, recorded.choice.chosen
    shown = path.with_name(CHOICE_REPORT)
    if root is not None and shown.resolve().is_relative_to(root.resolve()):
        shown = shown.resolve().relative_to(root.resolve())
    if chosen == default:
        note = f"`{default}` was kept against the other variants on held-back shots (`{shown}`)."
    else:
        note = (
            f"`{chosen}` is judged in place of `{default}`: the rule of `{shown}` chose it on held-back shots, "
            "with no test image."
        )
        if counterparts:
            others = ", ".join(f"`{new}` in place of `{old}`" for old, new in counterparts.items())
            note += f" The pick chose the generator, so the family's other recipes are judged on it too: {others}."
    replaced = None if chosen == default else (default, chosen)
    return JudgedSources(families, unjudged, note, replaced, counterparts)


def choice_markdown(choice: Choice) -> str:
    """The candidates' validation numbers as a table, and the rule's pick."""
    lines = [
        "| candidate | seeds | validation pixel AP | validation image AUROC |",
        "|---|---|---|---|",
    ]
    for index, c in enumerate(choice.candidates):
        name = f"{c.name} (default)" if index == 0 else c.name
        name = f"**{name}**" if c.name == choice.chosen else name
        lines.append(f"| {name} | {c.seeds} | {c.pixel_ap:.3f} | {c.image_auroc:.3f} |")
    rule = (
        f"Rule: the default stays unless a candidate's pixel AP is higher by >= {choice.min_gain} and its image "
        f"AUROC is not lower by more than {choice.min_gain}. Chosen: **{choice.chosen}**."
    )
    return "\n".join(lines) + "\n\n" + rule + "\n"

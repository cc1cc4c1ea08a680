"""Benchmark results on disk (resumable JSON) and their summaries (markdown tables).

The JSON keeps *every* run, never only aggregates, so any table can be recomputed. It is
rewritten atomically after each run, so an interrupted benchmark loses at most the run in
progress and resumes by skipping the runs already recorded.

Gains are *paired by seed*: seed ``s`` of a generator is compared with seed ``s`` of ``"none"``
(same validation hold-out and initialisation), and the table shows the mean ± standard deviation
of those per-seed differences.
"""

from __future__ import annotations

import json
import math
import os
import statistics
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from filelock import FileLock

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.evaluation.metrics import LABELS_AT_THRESHOLD, THRESHOLD_METRICS

BASELINE = "none"
#: Columns of the detection table, in order, with their display names.
DETECTION_COLUMNS: dict[str, str] = {
    "image_AUROC": "image AUROC",
    "image_AUPR": "image AP",
    "pixel_AUROC": "pixel AUROC",
    "pixel_AUPR": "pixel AP",
    "pixel_AUPRO": "pixel AUPRO",
    "image_F1Score": "image F1 @val thr.",
    "pixel_F1Score": "pixel F1 @val thr.",
}
#: Metrics whose gain over the baseline is tabulated and plotted.
GAIN_METRICS: tuple[str, ...] = ("image_AUROC", "pixel_AUPRO")
#: Metrics whose change is tabulated for an ablation against the generator it switches one mechanism off in.
ABLATION_METRICS: tuple[str, ...] = ("image_AUROC", "image_AUPR", "pixel_AUPR", "pixel_AUPRO")


class ResultsStore:
    """The results JSON: ``{"meta": {...}, "runs": [...], "quality": [...]}``.

    A run is identified by (preset, generator, detector, seed), a quality record by
    (preset, generator, seed). ``add_*`` replaces a record with the same key and saves at once.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.meta: dict[str, Any] = {}
        self.runs: list[dict[str, Any]] = []
        self.quality: list[dict[str, Any]] = []
        self._added: set[tuple] = set()  # keys this process recorded: they win over the file when merging
        if self.path.is_file():
            content = self._read()
            self.meta = content.get("meta", {})
            self.runs = content.get("runs", [])
            self.quality = content.get("quality", [])

    def _read(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text())
        except json.JSONDecodeError as exc:
            raise InvalidInputError(
                f"results file is not valid JSON ({exc})",
                path=self.path,
                fix="move it aside to start over (each write is atomic, so this file was edited by hand)",
            ) from exc

    @staticmethod
    def run_key(record: dict[str, Any]) -> tuple[str, str, str, int]:
        return (record["preset"], record["generator"], record["detector"], int(record["seed"]))

    @staticmethod
    def quality_key(record: dict[str, Any]) -> tuple[str, str, int]:
        return (record["preset"], record["generator"], int(record["seed"]))

    def has_run(self, preset: str, generator: str, detector: str, seed: int) -> bool:
        return any(self.run_key(r) == (preset, generator, detector, seed) for r in self.runs)

    def preset_runs(self, preset: str) -> list[dict[str, Any]]:
        """The runs recorded under ``preset`` (a results file may hold several presets' runs)."""
        return [r for r in self.runs if r["preset"] == preset]

    def has_quality(self, preset: str, generator: str, seed: int) -> bool:
        return any(self.quality_key(r) == (preset, generator, seed) for r in self.quality)

    def add_run(self, record: dict[str, Any]) -> None:
        key = self.run_key(record)
        self.runs = [r for r in self.runs if self.run_key(r) != key] + [record]
        self._added.add(("run", *key))
        self.save()

    def add_quality(self, record: dict[str, Any]) -> None:
        key = self.quality_key(record)
        self.quality = [r for r in self.quality if self.quality_key(r) != key] + [record]
        self._added.add(("quality", *key))
        self.save()

    def save(self) -> Path:
        """Merge with the file on disk and write atomically, under a lock.

        Two benchmark processes may share a results file (the learning curve's default budget is the
        main benchmark's): whatever another process saved since this one read the file is kept, and
        only the records this process added replace those of the same key. The write goes through a temporary file and
        a rename, so a crash never leaves half a file.
        """
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with FileLock(self.path.with_name(f".{self.path.name}.lock")):
            if self.path.is_file():
                on_disk = self._read()
                self.runs = self._merged(on_disk.get("runs", []), self.runs, "run", self.run_key)
                self.quality = self._merged(on_disk.get("quality", []), self.quality, "quality", self.quality_key)
            payload = {"meta": self.meta, "runs": self.runs, "quality": self.quality}
            tmp = self.path.with_name(f"{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(json_safe(payload), indent=2, allow_nan=False) + "\n")
            tmp.replace(self.path)
        return self.path

    def _merged(
        self,
        on_disk: Sequence[dict[str, Any]],
        mine: Sequence[dict[str, Any]],
        kind: str,
        key: Callable[[dict[str, Any]], tuple],
    ) -> list[dict[str, Any]]:
        """The file's records, with the ones this process added in place of theirs (and any the file lacks)."""
        added = [record for record in mine if (kind, *key(record)) in self._added]
        replaced = {key(record) for record in added}
        kept = [record for record in on_disk if key(record) not in replaced]
        known = {key(record) for record in kept} | replaced
        return kept + [record for record in mine if key(record) not in known] + added


def json_safe(value: Any) -> Any:
    """Strict JSON: NaN becomes null, infinities become the strings ``"inf"`` / ``"-inf"``."""
    if isinstance(value, float):
        if math.isnan(value):
            return None
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return value
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v) for v in value]
    return value


# ------------------------------------------------------------------------------- statistics
def mean_std(values: Sequence[float]) -> tuple[float | None, float | None]:
    """Mean and sample standard deviation (None for no values; std None for one value)."""
    if not values:
        return None, None
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else None


def per_seed(runs: Iterable[dict[str, Any]], detector: str, generator: str, metric: str) -> dict[int, float]:
    """``{seed: value}`` of one metric for one (detector, generator); missing values left out.

    F1 of runs recorded before labels used the validation threshold (``LABELS_AT_THRESHOLD``) is
    left out too: it was measured at raw score 0.5.
    """
    return {
        int(r["seed"]): r["metrics"][metric]
        for r in runs
        if r["detector"] == detector
        and r["generator"] == generator
        and r["metrics"].get(metric) is not None
        and (metric not in THRESHOLD_METRICS or r.get(LABELS_AT_THRESHOLD, False))
    }


def paired_differences(ours: Mapping[int, float], theirs: Mapping[int, float]) -> list[float]:
    """``ours[s] - theirs[s]`` for every seed ``s`` both have, in seed order (``per_seed`` values)."""
    return [ours[s] - theirs[s] for s in sorted(ours.keys() & theirs.keys())]


def paired_gain(
    runs: Sequence[dict[str, Any]], detector: str, generator: str, metric: str, baseline: str = BASELINE
) -> tuple[float | None, float | None, int]:
    """Mean and std of ``metric(generator, s) - metric(baseline, s)`` over seeds present in both."""
    ours, base = per_seed(runs, detector, generator, metric), per_seed(runs, detector, baseline, metric)
    differences = paired_differences(ours, base)
    mean, std = mean_std(differences)
    return mean, std, len(differences)


def ordered(values: Iterable[str], order: Sequence[str]) -> list[str]:
    values = set(values)
    return [v for v in order if v in values] + sorted(values - set(order))


# --------------------------------------------------------------------------------- markdown
def format_cell(mean: float | None, std: float | None, *, signed: bool = False) -> str:
    if mean is None:
        return "n/a"
    text = f"{mean:+.3f}" if signed else f"{mean:.3f}"
    return text + (f" ± {std:.3f}" if std is not None else "")


def detection_markdown(
    runs: Sequence[dict[str, Any]], generator_order: Sequence[str] = (), detector_order: Sequence[str] = ()
) -> str:
    """One table per detector: mean ± std over seeds per generator, and the paired gain vs ``none``."""
    lines: list[str] = []
    for detector in ordered({r["detector"] for r in runs}, detector_order):
        mine = [r for r in runs if r["detector"] == detector]
        seeds = sorted({int(r["seed"]) for r in mine})
        lines += [f"### {detector}", "", f"Seeds: {', '.join(map(str, seeds))}. Mean ± sample std over seeds.", ""]
        headers = ["generator", "runs", *DETECTION_COLUMNS.values()]
        headers += [f"Δ {DETECTION_COLUMNS[m]} vs none" for m in GAIN_METRICS]
        lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
        for generator in ordered({r["generator"] for r in mine}, generator_order):
            count = sum(r["generator"] == generator for r in mine)
            cells = [generator, str(count)]
            for metric in DETECTION_COLUMNS:
                cells.append(format_cell(*mean_std(list(per_seed(mine, detector, generator, metric).values()))))
            for metric in GAIN_METRICS:
                if generator == BASELINE:
                    cells.append("—")
                    continue
                mean, std, _ = paired_gain(mine, detector, generator, metric)
                cells.append(format_cell(mean, std, signed=True))
            lines.append("| " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def headline_markdown(
    runs: Sequence[dict[str, Any]],
    rows: Sequence[tuple[str, str, str]],
    *,
    anchors: Sequence[tuple[str, str]] = (),
    fit_seconds: Mapping[tuple[str, int], float] | None = None,
) -> str:
    """The first table of a dataset: chosen (detector, source) rows, their gain over the best anchor, their cost.

    Args:
        runs: run records of one dataset and preset.
        rows: (detector, generator, label) in display order; rows without runs are left out.
        anchors: (detector, generator) of the one-class anchors. Each other row's Δ is paired by seed
            against the anchor with the higher mean image AUROC; a Δ over fewer seeds than its row names
            how many were paired.
        fit_seconds: (generator, seed) -> seconds its generator's fit took, wherever it was fitted (a run
            that loaded the fit records 0): the cost column charges every row its generator's fit.
    """
    present = [row for row in rows if per_seed(runs, row[0], row[1], "image_AUROC")]
    if not present:
        return ""
    best_anchor = max(
        (a for a in anchors if per_seed(runs, a[0], a[1], "image_AUROC")),
        key=lambda a: statistics.fmean(per_seed(runs, a[0], a[1], "image_AUROC").values()),
        default=None,
    )
    headers = ["detector", "training defects", "seeds", *DETECTION_COLUMNS.values()]
    if best_anchor is not None:
        headers += [f"Δ {DETECTION_COLUMNS[m]} vs {best_anchor[0]}" for m in ("image_AUROC", "pixel_AUPR")]
    headers.append("minutes: fit + train + test")
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for detector, generator, label in present:
        seeds = per_seed(runs, detector, generator, "image_AUROC")
        cells = [detector, label, str(len(seeds))]
        cells += [
            format_cell(*mean_std(list(per_seed(runs, detector, generator, m).values()))) for m in DETECTION_COLUMNS
        ]
        if best_anchor is not None:
            for metric in ("image_AUROC", "pixel_AUPR"):
                if (detector, generator) == best_anchor:
                    cells.append("—")
                    continue
                ours, theirs = per_seed(runs, detector, generator, metric), per_seed(runs, *best_anchor, metric)
                differences = paired_differences(ours, theirs)
                cell = format_cell(*mean_std(differences), signed=True)
                if differences and len(differences) < len(ours):
                    # Fewer pairs than the row's seeds: say so, or the Δ reads as the row's mean.
                    cell += f" ({len(differences)} of {len(ours)} seeds paired)"
                cells.append(cell)
        cells.append(_minutes(runs, detector, generator, fit_seconds or {}))
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _minutes(
    runs: Sequence[dict[str, Any]], detector: str, generator: str, fit_seconds: Mapping[tuple[str, int], float]
) -> str:
    """Mean over seeds of generator fit + detector training + test, in minutes ("n/a" without timings)."""
    totals = []
    for run in runs:
        timings = run.get("timings")
        if run["detector"] != detector or run["generator"] != generator or not timings:
            continue
        # a run that fitted paid its own fit; one that loaded is charged the fit it loaded
        fit = timings.get("generator_fit_s", 0.0) or fit_seconds.get((generator, int(run["seed"])), 0.0)
        totals.append((fit + timings.get("train_s", 0.0) + timings.get("test_s", 0.0)) / 60)
    if not totals:
        return "n/a"
    return f"{statistics.fmean(totals):.0f}"


def per_type_markdown(runs: Sequence[dict[str, Any]], detector: str, generator_order: Sequence[str] = ()) -> str:
    """Image AUROC of each defect type against the test normals, per source of defects (mean over seeds).

    Shows which defect types a source teaches a detector to find; runs recorded before the per-type
    scores were kept are left out.
    """
    by_source: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        scores = run.get("image_AUROC_by_type")
        if run.get("detector") != detector or not scores:
            continue
        for name, value in scores.items():
            by_source.setdefault(run["generator"], {}).setdefault(name, []).append(value)
    if not by_source:
        return ""
    types = sorted({name for scores in by_source.values() for name in scores})
    headers = ["training defects", "seeds", *types]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for source in ordered(by_source, generator_order):
        scores = by_source[source]
        seeds = max(len(values) for values in scores.values())
        cells = [source, str(seeds), *(format_cell(*mean_std(scores.get(name, []))) for name in types)]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def prior_components_markdown(runs: Sequence[dict[str, Any]], generator_order: Sequence[str] = ()) -> str:
    """Image AUROC of a fused ``NormalPrior`` score beside that of each of its parts, per source (mean over seeds).

    Answers whether the sum of the segmenter's and the memory's standard scores beats both parts, or
    just follows one of them. Runs recorded before the parts were kept are left out.
    """
    by_source: dict[str, dict[str, list[float]]] = {}
    for run in runs:
        parts = run.get("prior_components")
        if not parts:
            continue
        values = by_source.setdefault(f"{run['detector']} | {run['generator']}", {})
        values.setdefault("fused", []).append(run["metrics"]["image_AUROC"])
        for name, part in parts.items():
            values.setdefault(name, []).append(part["image_AUROC"])
    if not by_source:
        return ""
    names = ["fused", *sorted({name for values in by_source.values() for name in values} - {"fused"})]
    headers = ["detector", "training defects", "seeds", *(f"image AUROC: {name}" for name in names)]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    order = [key for generator in generator_order for key in by_source if key.endswith(f"| {generator}")]
    for key in ordered(by_source, order):
        values = by_source[key]
        means = (format_cell(*mean_std(values.get(name, []))) for name in names)
        cells = [*key.split(" | "), str(len(values["fused"])), *means]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def ablation_markdown(
    runs: Sequence[dict[str, Any]],
    ablations: Mapping[str, tuple[str, str]],
    detector_order: Sequence[str] = (),
    *,
    headings: bool = True,
) -> str:
    """Per detector, what switching one mechanism off changes: ablation minus its reference, paired by seed.

    The main table compares everything with ``none``; an ablation's question is how it differs from
    the full generator, and the seed-to-seed spread of the detector would hide that difference unless
    the two are paired.

    Args:
        runs: run records.
        ablations: ablation name -> (reference generator, what the ablation switches off).
        detector_order: detectors in this order first.
        headings: a ``### <detector>`` heading above each table (off for one detector's table in a README).
    """
    lines: list[str] = []
    for detector in ordered({r["detector"] for r in runs}, detector_order):
        mine = [r for r in runs if r["detector"] == detector]
        rows: list[str] = []
        for ablation, (reference, switched_off) in ablations.items():
            gains = {m: paired_gain(mine, detector, ablation, m, baseline=reference) for m in ABLATION_METRICS}
            paired = max(count for _, _, count in gains.values())
            if paired == 0:
                continue
            cells = [ablation, switched_off, reference, str(paired)]
            cells += [format_cell(mean, std, signed=True) for mean, std, _ in gains.values()]
            rows.append("| " + " | ".join(cells) + " |")
        if not rows:
            continue
        headers = ["ablation", "switched off", "vs", "seeds paired"]
        headers += [f"Δ {DETECTION_COLUMNS[m]}" for m in ABLATION_METRICS]
        lines += [f"### {detector}", ""] if headings else []
        lines += ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers), *rows, ""]
    return "\n".join(lines)


def quality_markdown(quality: Sequence[dict[str, Any]], generator_order: Sequence[str] = ()) -> str:
    """Generation quality per generator: mean ± std over seeds."""
    columns = {
        "c2st_auroc": "C2ST AUROC (0.5 = indistinguishable)",
        "diversity_generated": "diversity generated",
        "diversity_real": "diversity real",
        "diversity_ratio": "diversity ratio gen/real",
        "images_per_s": "images/s",
    }
    headers = ["generator", "seeds", *columns.values(), "background outside mask"]
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    for generator in ordered({q["generator"] for q in quality}, generator_order):
        mine = [q for q in quality if q["generator"] == generator]
        cells = [generator, str(len(mine))]
        for key in columns:
            cells.append(format_cell(*mean_std([q[key] for q in mine if q.get(key) is not None])))
        exact = min(q["background_bit_exact_share"] for q in mine)
        worst = min(float(q["background_psnr_min_db"]) for q in mine)  # "inf" parses as infinity
        cells.append("bit-exact (PSNR ∞)" if exact == 1.0 else f"min PSNR {worst:.1f} dB, {exact:.0%} bit-exact")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def contrast_markdown(quality: Sequence[dict[str, Any]], generator_order: Sequence[str] = ()) -> str:
    """Mean |contrast| of each defect type: the shots, the held-out real defects, then each generator's.

    A generator that learns from the shots draws defects as visible as *they* are; when the held-out
    defects are more (or less) visible than the shots, this table shows it beside the detector's scores.
    Empty when no record carries the shots' contrast (records made before it was measured).
    """
    with_shots = [q for q in quality if "shots" in q.get("contrast_by_type", {})]
    if not with_shots:
        return ""
    types = sorted(with_shots[0]["contrast_by_type"]["shots"])
    lines = ["| defects | " + " | ".join(types) + " |", "|" + "---|" * (len(types) + 1)]

    def row(label: str, tables: Sequence[Mapping[str, float]]) -> str:
        cells = [format_cell(*mean_std([t[name] for t in tables if name in t])) for name in types]
        return "| " + " | ".join([label, *cells]) + " |"

    per_seed = {q["seed"]: q["contrast_by_type"] for q in with_shots}  # the same for every generator of a seed
    lines.append(row("shots (what generators learn from)", [t["shots"] for t in per_seed.values()]))
    lines.append(row("held-out real (the test)", [t["real"] for t in per_seed.values()]))
    for generator in ordered({q["generator"] for q in with_shots}, generator_order):
        mine = [q["contrast_by_type"]["generated"] for q in with_shots if q["generator"] == generator]
        if any(name in table for table in mine for name in types):
            lines.append(row(generator, mine))
    return "\n".join(lines) + "\n"

"""The demo: the whole few-shot workflow on one category, end to end, in minutes on a laptop CPU.

1. data: a given MVTec-layout folder, or the embedded DEMO dataset (scikit-image textures
   with drawn defects, see ``textures.py``), built offline;
2. fine-tune the diffusion generator on the few-shot split (a step budget; the fit is kept in a
   ``FitStore``, the one ``GeneratorFineTuneCallback`` uses, and reused by the next run on the same data);
3. generate a sample cache from it and save a grid of samples with their masks;
4. train the ``DefectSegmenter`` on normals only, with the diffusion defects, and with a
   classic baseline, each through the benchmark's ``run_experiment``, and test each on the
   held-out real defects;
5. print the AUROC/AP table and the time of every stage; write ``results.json``.

Every step uses the package's public pieces, the same ones the CLI subcommands use.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from anomaly_synth_aug.cache import CacheLayout, ManifestEntry, generate_cache
from anomaly_synth_aug.data.mvtec_datamodule import mvtec_datamodule
from anomaly_synth_aug.data.io import load_image, load_mask
from anomaly_synth_aug.demo.textures import build_texture_dataset
from anomaly_synth_aug.demo.timing import StageTimer
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.evaluation.downstream import Preset, run_experiment
from anomaly_synth_aug.generators.fit_store import FitStore
from anomaly_synth_aug.generators.diffusion import DiffusionAnomalyGenerator
from anomaly_synth_aug.data.sample import AnomalySample
from anomaly_synth_aug.visualization.type_sheet import TypeRow, save_type_sheet

#: Metrics shown in the table: anomalib metric name -> column title.
TABLE_METRICS: dict[str, str] = {
    "image_AUROC": "image AUROC",
    "image_AUPR": "image AP",
    "pixel_AUROC": "pixel AUROC",
    "pixel_AUPR": "pixel AP",
    "pixel_AUPRO": "pixel AUPRO",
}
#: The benchmark's detectors the demo may train: the ``DefectSegmenter`` variants.
DEMO_DETECTORS: tuple[str, ...] = ("segmenter_prior", "segmenter", "segmenter_image_only", "segmenter_scratch")
ARM_TITLES: dict[str, str] = {"none": "normals only", "diffusion": "+ diffusion defects (few-shot)"}


@dataclass(frozen=True)
class DemoSettings:
    """Sizes and budgets of one demo run.

    Every budget is a number of steps (the generator's ``diffusion["max_steps"]``, the detector's
    ``detector.max_steps``), so the demo's numbers do not depend on how busy the machine is.
    ``quick()`` is for tests.

    Args:
        image_size: side of the DEMO dataset's square images.
        n_train: DEMO training normals.
        n_test_good: DEMO test normals.
        n_per_defect: DEMO images per defect type (a third become shots, the rest are test anomalies).
        diffusion: ``DiffusionAnomalyGenerator`` arguments (model size, training budget, sampling).
        samples_per_type: cached samples generated per defect type.
        grid_samples: generated samples per defect type shown in the sample sheet (beside two real shots).
        classic_baseline: benchmark name of the classic generator to compare with (None: skip).
        detector_name: benchmark name of the detector; ``segmenter_prior`` is ``DefectSegmenter``'s default
            (the supervised map plus its normal memory's verdict), so the demo shows what a user gets.
        detector: the ``DefectSegmenter`` runs' preset (size, epochs, batches).
    """

    image_size: int = 128
    n_train: int = 60
    n_test_good: int = 12
    n_per_defect: int = 9
    diffusion: dict[str, Any] = field(
        default_factory=lambda: {
            "patch_size": 32,
            "block_out_channels": (16, 32, 64),
            "batch_size": 16,
            "max_steps": 600,
            "max_minutes": None,  # a step budget: the demo's numbers must not depend on how busy the machine is
            "num_inference_steps": 10,
            "max_retries": 1,
        }
    )
    samples_per_type: int = 12
    grid_samples: int = 3
    classic_baseline: str | None = "real_paste"
    detector_name: str = "segmenter_prior"
    detector: Preset = field(
        default_factory=lambda: Preset(
            name="demo",
            crop_size=128,
            image_size=128,
            max_steps=150,
            val_every_steps=50,
            train_batch_size=8,
            train_mode="online",
            max_fit_normals=48,
        )
    )

    @classmethod
    def quick(cls) -> DemoSettings:
        """Tiny sizes and a few steps: the whole pipeline in well under a minute (for tests)."""
        return cls(
            image_size=64,
            n_train=10,
            n_test_good=4,
            n_per_defect=3,
            diffusion={
                "patch_size": 16,
                "block_out_channels": (16, 32),
                "attention": False,
                "batch_size": 4,
                "max_steps": 3,
                "max_minutes": None,
                "num_inference_steps": 2,
                "max_retries": 0,
            },
            samples_per_type=2,
            grid_samples=2,
            detector=Preset(
                name="demo-quick",
                crop_size=64,
                image_size=64,
                max_steps=2,
                val_every_steps=1,
                train_batch_size=4,
                train_mode="online",
                max_fit_normals=8,
            ),
        )


@dataclass
class DemoResult:
    """What a demo run produced: the dataset, the files written, metrics per arm and seconds per stage."""

    data: Path
    is_demo_dataset: bool
    generator_dir: Path
    cache_dir: Path
    grid_path: Path
    results_path: Path
    records: dict[str, dict[str, Any]]
    stage_seconds: dict[str, float]

    @property
    def total_seconds(self) -> float:
        return sum(self.stage_seconds.values())


def run_demo(
    output: str | Path,
    *,
    data: str | Path | None = None,
    texture: str = "brick",
    settings: DemoSettings | None = None,
    seed: int = 0,
    console: Console | None = None,
) -> DemoResult:
    """Run the demo into ``output`` and return what it produced (see the module docstring for the steps)."""
    settings = settings or DemoSettings()
    if settings.detector_name not in DEMO_DETECTORS:
        raise InvalidInputError(
            f"the demo trains a DefectSegmenter; {settings.detector_name!r} is not one",
            fix=f"use one of {list(DEMO_DETECTORS)}",
        )
    console = console or Console()
    output = Path(output)
    timer = StageTimer(console)

    with timer.stage("1/4 data"):
        root, is_demo = _dataset(output, data, texture, settings, seed)
        if is_demo:
            console.print(
                Panel.fit(
                    f"[bold yellow]DEMO DATASET[/] {root}\nscikit-image '{texture}' texture with drawn scratches, "
                    "blobs and cracks -- a toy stand-in for a product, not real inspection data.",
                    border_style="yellow",
                )
            )

    with timer.stage("2/4 fine-tune the diffusion generator"):
        generator = DiffusionAnomalyGenerator(category=root.name, **settings.diffusion)
        datamodule = mvtec_datamodule(  # the split and fit settings the detector runs use
            root,
            generator,
            seed=seed,
            max_fit_normals=settings.detector.max_fit_normals,
            val_split_ratio=settings.detector.val_split_ratio,
        )
        store = FitStore(output / "generators")
        fit_data = datamodule.fit_data()
        action = store.fit_or_load(generator, fit_data)
        generator_dir = store.folder_for(generator, fit_data)
        console.print(f"generator {action} ({len(datamodule.shot_records)} shots): {generator_dir}")

    with timer.stage("3/4 generate samples"):
        cache_dir = output / "cache" / root.name
        entries = generate_cache(
            cache_dir,
            generator,
            datamodule.train_normal_paths(),
            samples_per_type=settings.samples_per_type,
            seed=seed,
            trainer_kwargs={"accelerator": "cpu", "enable_progress_bar": True},
        )
        grid_path = save_type_sheet(
            _sheet_rows(cache_dir, entries, datamodule.load_shots(), settings.grid_samples),
            output / f"samples_{root.name}.png",
            title=f"{root.name}: real shots and diffusion defects, per defect type",
        )
        console.print(f"{len(entries)} samples in {cache_dir}; sample sheet: {grid_path}")

    records: dict[str, dict[str, Any]] = {}
    arms = ["none", "diffusion"] + ([settings.classic_baseline] if settings.classic_baseline else [])
    preset = replace(settings.detector, diffusion=dict(settings.diffusion))
    with timer.stage("4/4 train and test the detector"):
        for arm in arms:
            console.print(f"DefectSegmenter, trained on {arm_title(arm)} ...")
            records[arm] = run_experiment(
                root,
                arm,
                settings.detector_name,
                seed,
                preset,
                fit_store=store,
                work_dir=output / "detectors" / arm,
                progress=True,
            )

    console.print(results_table(records, title=_title(root, is_demo)))
    console.print(stage_table(timer.seconds))
    results_path = output / "results.json"
    summary = {
        "data": str(root),
        "demo_dataset": is_demo,
        "settings": asdict(settings),
        "records": records,
        "stage_seconds": timer.seconds,
    }
    results_path.write_text(json.dumps(summary, indent=2, default=str))
    return DemoResult(
        data=root,
        is_demo_dataset=is_demo,
        generator_dir=generator_dir,
        cache_dir=cache_dir,
        grid_path=grid_path,
        results_path=results_path,
        records=records,
        stage_seconds=dict(timer.seconds),
    )


def _dataset(
    output: Path, data: str | Path | None, texture: str, settings: DemoSettings, seed: int
) -> tuple[Path, bool]:
    if data is not None:
        root = Path(data)
        if not root.is_dir():
            raise InvalidInputError("data folder not found", path=root, fix="pass an MVTec-layout category folder")
        return root, False
    root = build_texture_dataset(
        output / "data",
        texture,
        image_size=settings.image_size,
        n_train=settings.n_train,
        n_test_good=settings.n_test_good,
        n_per_defect=settings.n_per_defect,
        seed=seed,
    )
    return root, True


def _sheet_rows(
    cache_dir: Path, entries: list[ManifestEntry], shots: list[AnomalySample], per_type: int
) -> list[TypeRow]:
    """Per defect type: two of its real shots and up to ``per_type`` cached generated samples."""
    layout = CacheLayout(cache_dir)
    rows = []
    for defect_type in sorted({entry.defect_type for entry in entries}):
        generated = [e for e in entries if e.defect_type == defect_type][:per_type]
        rows.append(
            TypeRow(
                defect_type,
                shots=[(s.image, s.mask) for s in shots if s.defect_type == defect_type][:2],
                generated=[(load_image(layout.resolve(e.image)), load_mask(layout.resolve(e.mask))) for e in generated],
            )
        )
    return rows


def _title(root: Path, is_demo: bool) -> str:
    label = "DEMO dataset (toy textures, not real data)" if is_demo else "dataset"
    return f"DefectSegmenter on held-out real defects -- {label}: {root.name}"


def arm_title(arm: str) -> str:
    """Row title of a training arm: what the detector saw besides the training normals."""
    return ARM_TITLES.get(arm, f"+ {arm} defects (classic)")


def results_table(records: dict[str, dict[str, Any]], title: str) -> Table:
    """AUROC/AP/AUPRO per training arm, captioned with the test set's size (held-out defects, test normals)."""
    sizes = next(iter(records.values()))["data"] if records else {}
    caption = (
        f"test set: {sizes.get('test_anomalies', '?')} held-out defect images and {sizes.get('test_normals', '?')} "
        f"normal images; the {sizes.get('shots', '?')} shots are never tested on"
    )
    table = Table(title=title, caption=caption)
    table.add_column("trained on")
    for column in TABLE_METRICS.values():
        table.add_column(column, justify="right")
    table.add_column("train s", justify="right")
    for arm, record in records.items():
        values = [record["metrics"].get(name) for name in TABLE_METRICS]
        cells = ["n/a" if value is None else f"{value:.3f}" for value in values]
        table.add_row(arm_title(arm), *cells, f"{record['timings']['train_s']:.0f}")
    return table


def stage_table(seconds: dict[str, float]) -> Table:
    """Seconds per stage and in total."""
    table = Table(title="time per stage")
    table.add_column("stage")
    table.add_column("seconds", justify="right")
    for name, value in seconds.items():
        table.add_row(name, f"{value:.1f}")
    table.add_row("[bold]total", f"[bold]{sum(seconds.values()):.1f}")
    return table



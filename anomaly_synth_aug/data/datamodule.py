"""``SyntheticAnomalyDataModule``: any anomalib image datamodule, plus synthetic defects in training.

The wrapped datamodule (``Folder``, ``MVTecAD``, ``Visa``, ...) finds the files and makes its
splits; this wrapper then applies the few-shot protocol and replaces the datasets:

* **shots**: per defect type the first ``shot_fraction`` of the real anomalies (sorted by file
  name) become generator shots and are removed from test and validation data;
* **train**: ``SyntheticAnomalyDataset``, the train normals of which ``anomaly_ratio`` get a
  generated defect (label 1 + mask) online, at native resolution, inside the DataLoader workers;
* **val**: by default held-back train normals with fixed synthetic anomalies (``val_split``), so
  checkpoint and threshold selection never look at real test data;
* **test**: the wrapped test set minus the shots, with masks binarised at ``mask_threshold``.

Example (CLI)::

    anomalib fit --model Supersimplenet \\
        --data anomaly_synth_aug.SyntheticAnomalyDataModule \\
        --data.datamodule Folder --data.datamodule.name magnetic_tile ... \\
        --data.generator anomaly_synth_aug.generators.RealShotPasteGenerator
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch
from anomalib import TaskType
from anomalib.data import AnomalibDataModule
from torch.utils.data import DataLoader, Dataset, Subset
from torchvision.transforms.v2 import Transform

from anomaly_synth_aug.data.cached_dataset import build_cached_train_dataset
from anomaly_synth_aug.data.datamodule_options import (
    TrainMode,
    ValSplit,
    check_init_args,
    check_shot_share,
    is_cached,
)
from anomaly_synth_aug.data.dataset import (
    EvaluationDataset,
    SyntheticAnomalyDataset,
    SyntheticValidationDataset,
)
from anomaly_synth_aug.data.fewshot import (
    DEFAULT_SHOT_FRACTION,
    DefectRecord,
    cap_shots,
    check_max_shots_per_type,
    load_defect_records,
    split_records,
)
from anomaly_synth_aug.data.io import MASK_THRESHOLD, load_image
from anomaly_synth_aug.data.mvtec_folder import check_folder_masks, check_folder_root
from anomaly_synth_aug.data.real_anomalies import (
    check_real_test_split,
    check_test_masks,
    real_anomaly_records,
    resolved,
    warn_if_batches_stretch,
)
from anomaly_synth_aug.data.sample import ANOMALOUS_LABEL, AnomalySample
from anomaly_synth_aug.data.samplers import training_sampler
from anomaly_synth_aug.data.shots_dataset import ShotMixedDataset, ShotsTrainDataset
from anomaly_synth_aug.data.validation_split import hold_back_normals, release_wrapped_val_split
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators.base import AnomalyGenerator, resolve_generator
from anomaly_synth_aug.generators.fit_store import FitData
from anomaly_synth_aug.utils.choices import parse_choice
from anomaly_synth_aug.utils.random import make_generator, mixed_seed

if TYPE_CHECKING:
    from anomalib.data.datasets.base.image import AnomalibDataset
    from lightning.pytorch.utilities.types import EVAL_DATALOADERS, TRAIN_DATALOADERS

logger = logging.getLogger(__name__)


def _default_generator() -> AnomalyGenerator:
    from anomaly_synth_aug.generators.perlin import (
        PerlinGenerator,  # lazy: optional heavy imports
    )

    return PerlinGenerator()


class SyntheticAnomalyDataModule(AnomalibDataModule):
    """Wrap an anomalib image datamodule and inject generated defects into its training data.

    Args:
        datamodule: the anomalib datamodule that finds the files. Its test split is kept; a validation
            split that takes images (``from_test``, ``from_train``, ``synthetic``) only with
            ``val_split="wrapped"``: otherwise it is set to ``none``, so no test image is held back
            unevaluated and no train normal is taken away (``same_as_test`` and ``from_dir`` take nothing).
        generator: the anomaly generator, or a packaged generator's class name (built with its defaults);
            default ``PerlinGenerator()``.
        anomaly_ratio: share of training normals turned into synthetic anomalies, in [0, 1].
            Use 0 with models that synthesise their own anomalies (Draem, Glass adapters).
        mode: ``"online"`` generates in the DataLoader workers; ``"cached"`` generates
            ``samples_per_type`` samples per defect type once into ``cache_dir`` and trains from them;
            ``"shots"`` synthesises nothing and trains on the augmented real shots themselves (the
            baseline any synthesis must beat; the generator then makes only the synthetic validation set).
        shot_fraction: share of real anomalies per type given to the generator (and removed from evaluation).
        val_split: ``"synthetic"`` (held-back train normals + fixed synthetic anomalies),
            ``"wrapped"`` (the wrapped datamodule's val set minus the shots) or ``"none"``.
        val_split_ratio: share of train normals held back for the synthetic validation set (at least 2).
        mask_threshold: real masks are defect where pixel > this (of 255); soft masks are binarised.
        max_fit_normals: at most this many train normals are given to ``generator.fit``.
        cache_dir: folder of the on-disk cache (``mode="cached"``); MVTec layout + ``manifest.jsonl``.
        samples_per_type: cached samples generated per defect type.
        cache_trainer_kwargs: ``Trainer`` arguments for cache generation (e.g. ``devices=2, strategy="ddp"``).
        cache_batch_size: images per generator call while filling the cache. A learned generator runs its
            network once per call, so larger batches fill the cache faster (each sample is the same either way).
        train_batch_size: default: the wrapped datamodule's.
        eval_batch_size: default: the wrapped datamodule's.
        num_workers: default: the wrapped datamodule's.
        seed: fixes the validation hold-out, the anomaly selection and the generated defects; an unseeded wrapped
            datamodule gets it too, so its own splits are the same at every setup.
        shot_share: in the online and cached modes, the share of the anomalous training items that are
            augmented real shots instead of generated defects (``ShotMixedDataset``); 0 trains on
            generated defects alone.
        max_shots_per_type: keep only the first shots of each type (None: all); the others are not
            evaluated on either, so the evaluation set does not change with it (how many shots are needed?).
        shot_transform: applied to each real shot drawn for training (``mode="shots"`` and ``shot_share``),
            image and mask together, before the training augmentations; default ``shot_augmentations()``
            (flips, turns that keep the shot's shape, intensity jitter).
    """

    def __init__(
        self,
        datamodule: AnomalibDataModule,
        generator: AnomalyGenerator | str | None = None,
        anomaly_ratio: float = 0.5,
        mode: TrainMode = TrainMode.online,
        shot_fraction: float = DEFAULT_SHOT_FRACTION,
        val_split: ValSplit = ValSplit.synthetic,
        val_split_ratio: float = 0.2,
        mask_threshold: int = MASK_THRESHOLD,
        max_fit_normals: int = 64,
        cache_dir: str | Path | None = None,
        samples_per_type: int = 100,
        cache_trainer_kwargs: dict[str, Any] | None = None,
        cache_batch_size: int = 32,
        train_batch_size: int | None = None,
        eval_batch_size: int | None = None,
        num_workers: int | None = None,
        seed: int = 0,
        shot_share: float = 0.0,
        max_shots_per_type: int | None = None,
        shot_transform: Transform | None = None,
    ) -> None:
        if not isinstance(datamodule, AnomalibDataModule):
            raise InvalidInputError(
                f"datamodule must be an anomalib AnomalibDataModule, got {type(datamodule).__name__}",
                fix="wrap an anomalib image datamodule such as anomalib.data.Folder or anomalib.data.MVTecAD",
            )
        check_init_args(
            anomaly_ratio, mode, shot_fraction, val_split, val_split_ratio, mask_threshold, max_fit_normals, seed
        )
        check_shot_share(shot_share, mode, anomaly_ratio)
        check_max_shots_per_type(max_shots_per_type)
        if is_cached(mode) and cache_dir is None:
            raise InvalidInputError(
                "mode='cached' needs a cache_dir", fix="pass cache_dir=<folder for the generated samples>"
            )
        if cache_batch_size < 1:
            raise InvalidInputError(
                f"cache_batch_size must be >= 1, got {cache_batch_size}", fix="use e.g. 32 images per generator call"
            )
        if samples_per_type < 1:
            raise InvalidInputError(
                f"samples_per_type must be >= 1, got {samples_per_type}", fix="use e.g. 100 cached samples per type"
            )
        check_folder_root(datamodule)
        super().__init__(
            train_batch_size=datamodule.train_batch_size if train_batch_size is None else train_batch_size,
            eval_batch_size=datamodule.eval_batch_size if eval_batch_size is None else eval_batch_size,
            num_workers=datamodule.num_workers if num_workers is None else num_workers,
            train_augmentations=datamodule.train_augmentations,
            val_augmentations=datamodule.val_augmentations,
            test_augmentations=datamodule.test_augmentations,
            seed=seed,
        )
        if datamodule.seed is None:
            # the wrapper sets the wrapped datamodule up again at the trainer's setup; unseeded, anomalib's splits
            # (test normals from train, from_train/from_test validation) would draw other images each time
            datamodule.seed = seed
        self.datamodule = datamodule
        self.generator = resolve_generator(generator) if generator is not None else _default_generator()
        self.anomaly_ratio = anomaly_ratio
        self.mode = parse_choice(TrainMode, mode, "mode")
        self.shot_share = shot_share
        self.shot_fraction = shot_fraction
        self.max_shots_per_type = max_shots_per_type
        self.shot_transform = shot_transform
        self.val_split = parse_choice(ValSplit, val_split, "val_split")
        self.val_split_ratio = val_split_ratio
        self.mask_threshold = mask_threshold
        self.max_fit_normals = max_fit_normals
        self.cache_dir = cache_dir
        self.samples_per_type = samples_per_type
        self.cache_trainer_kwargs = cache_trainer_kwargs
        self.cache_batch_size = cache_batch_size
        self.seed = seed
        self.shot_records: list[DefectRecord] = []

    # ------------------------------------------------------------- delegation
    @property
    def name(self) -> str:
        return self.datamodule.name

    @property
    def category(self) -> str:
        return self.datamodule.category

    @category.setter
    def category(self, category: str) -> None:
        self.datamodule.category = category

    @property
    def task(self) -> TaskType:
        return self.datamodule.task

    def prepare_data(self) -> None:
        self.datamodule.prepare_data()  # MVTecAD and the like download here; a Folder was checked at construction

    # ------------------------------------------------------------------ setup
    def _setup(self, _stage: str | None = None) -> None:
        check_folder_masks(self.datamodule)  # before anomalib pairs them and fails without naming a file
        check_real_test_split(self.datamodule)  # before anomalib replaces the real test anomalies
        release_wrapped_val_split(self.datamodule, self.val_split)
        self.datamodule.setup(_stage)
        shots, _ = split_records(real_anomaly_records(self.datamodule), self.shot_fraction)
        self.shot_records = cap_shots(shots, self.max_shots_per_type)
        shot_paths = {resolved(record.image_path) for record in shots}  # capped-out shots: not evaluated either

        self.test_data = self._evaluation_dataset(self.datamodule.test_data, shot_paths)
        if not getattr(self, "_checked_test_masks", False):
            check_test_masks(self.test_data, mask_threshold=self.mask_threshold)
            warn_if_batches_stretch(self.test_data, batch_size=self.eval_batch_size)
            self._checked_test_masks = True  # only once it passed: a second setup must fail as the first did
        train_normals = self.datamodule.train_data
        if self.val_split == "synthetic":
            train_normals, val_normals = hold_back_normals(train_normals, self.val_split_ratio, seed=self.seed)
            self.val_data = SyntheticValidationDataset(
                val_normals, self.generator, seed=self.seed, mask_threshold=self.mask_threshold
            )
        elif self.val_split == "wrapped":
            wrapped_val = getattr(self.datamodule, "val_data", None)
            if wrapped_val is None:
                raise InvalidInputError(
                    f"val_split='wrapped' but {type(self.datamodule).__name__} has no validation set",
                    fix="set the wrapped datamodule's val_split_mode (e.g. 'from_test') or use val_split='synthetic'",
                )
            self.val_data = self._evaluation_dataset(wrapped_val, shot_paths)
        self._train_normals = train_normals
        # the cached mode's pool needs a fitted generator: it is built with the loader, not while splitting
        self.train_data = None if self.mode == TrainMode.cached else self._build_train_dataset(train_normals)

    def _create_test_split(self) -> None:
        """No-op: the wrapped datamodule already made its test split."""

    def _create_val_split(self) -> None:
        """No-op: ``_setup`` builds validation data according to ``val_split``."""

    def _build_train_dataset(self, train_normals: AnomalibDataset) -> Dataset:
        """The training dataset for ``mode``, with ``shot_share`` of its defects swapped for real shots."""
        generated = self._build_generated_dataset(train_normals)
        if self.shot_share == 0.0 or self.mode == "shots":
            return generated
        return ShotMixedDataset(
            generated, self.load_shots(), shot_share=self.shot_share, shot_transform=self.shot_transform
        )

    def _build_generated_dataset(self, train_normals: AnomalibDataset) -> SyntheticAnomalyDataset:
        """The training dataset of ``mode`` alone (the seam where the cached mode plugs in)."""
        if self.mode == "online":
            return SyntheticAnomalyDataset(
                train_normals,
                self.generator,
                anomaly_ratio=self.anomaly_ratio,
                seed=self.seed,
                mask_threshold=self.mask_threshold,
            )
        if self.mode == "shots":
            return ShotsTrainDataset(
                train_normals,
                self.load_shots(),
                self.generator,
                shot_transform=self.shot_transform,
                anomaly_ratio=self.anomaly_ratio,
                seed=self.seed,
                mask_threshold=self.mask_threshold,
            )
        return build_cached_train_dataset(
            train_normals,
            self.generator,
            self.cache_dir,
            samples_per_type=self.samples_per_type,
            anomaly_ratio=self.anomaly_ratio,
            seed=self.seed,
            trainer_kwargs=self.cache_trainer_kwargs,
            batch_size=self.cache_batch_size,
            mask_threshold=self.mask_threshold,
        )

    def _evaluation_dataset(self, dataset: AnomalibDataset, shot_paths: set[str]) -> Dataset:
        """``dataset`` without the shots; masks binarised when the dataset has masks."""
        keep = [i for i, path in enumerate(dataset.samples.image_path) if resolved(path) not in shot_paths]
        subset = dataset.subsample(keep)
        masks = subset.task != TaskType.CLASSIFICATION  # no masks to read, but images read as in training
        return EvaluationDataset(subset, mask_threshold=self.mask_threshold, masks=masks)

    def _ensure_setup(self) -> None:
        if not hasattr(self, "_train_normals"):
            self.setup()

    # ---------------------------------------------------- generator and shots
    def train_normal_paths(self) -> list[Path]:
        """Paths of the training normals (after the validation hold-out), sorted."""
        self._ensure_setup()
        samples = self._train_normals.samples
        return sorted(Path(p) for p in samples.loc[samples.label_index != ANOMALOUS_LABEL, "image_path"])

    def load_shots(self) -> list[AnomalySample]:
        """The real defect shots with binarised masks; shots whose mask is empty are skipped (logged)."""
        self._ensure_setup()
        return load_defect_records(self.shot_records, threshold=self.mask_threshold)

    def fit_normal_paths(self) -> list[Path]:
        """The train normals a learned generator is fitted on: up to ``max_fit_normals``, drawn with ``seed``."""
        paths = self.train_normal_paths()
        order = torch.randperm(len(paths), generator=torch.Generator().manual_seed(mixed_seed(self.seed, 2)))
        return [paths[i] for i in order[: self.max_fit_normals].tolist()]

    def fit_data(self) -> FitData:
        """What the generator is fitted on (``FitStore`` keys its fits by it): the fit normals, the shots, the seed."""
        normal_paths = self.fit_normal_paths()

        def load() -> tuple[list[torch.Tensor], list[AnomalySample]]:
            return [load_image(path) for path in normal_paths], self.load_shots()

        return FitData(
            category=self.category or self.name,
            normal_paths=normal_paths,
            shots=[(r.defect_type, r.image_path, r.mask_path) for r in self.shot_records],
            seed=self.seed,
            load=load,
            settings={"mask_threshold": self.mask_threshold},
        )

    def prepare_generator(self) -> None:
        """Fit a learned generator on up to ``max_fit_normals`` train normals and the shots, once.

        Called lazily by the dataloaders; a callback or a ``FitStore`` may have fitted or loaded it before.
        """
        if not self.generator.requires_fit or self.generator.is_fitted:
            return
        data = self.fit_data()
        normals, shots = data.load()
        logger.info("Fitting %s on %d normals and %d shots.", type(self.generator).__name__, len(normals), len(shots))
        self.generator.fit(normals, shots, generator=make_generator(data.seed))

    def prepare_train_data(self) -> Dataset:
        """Fit the generator if it is not fitted yet, and build the training set.

        ``setup`` only splits the data; the cached mode fills (or reuses, or resumes) its pool here,
        because the pool is keyed by the fitted generator. ``train_dataloader`` calls this.
        """
        self._ensure_setup()
        self.prepare_generator()
        if self.train_data is None:
            self.train_data = self._build_train_dataset(self._train_normals)
            self._update_augmentations()  # what anomalib's setup does for the datasets it saw
        return self.train_data

    # ------------------------------------------------------------ dataloaders
    def train_dataloader(self) -> TRAIN_DATALOADERS:
        dataset = self.prepare_train_data()
        trainer = self.trainer  # under DDP each rank samples its share, and new defects every epoch
        world_size, rank = getattr(trainer, "world_size", 1), getattr(trainer, "global_rank", 0)
        return DataLoader(
            dataset=dataset,
            sampler=training_sampler(dataset, world_size=world_size, rank=rank, seed=self.seed),
            batch_size=self.train_batch_size,
            num_workers=self.num_workers,
            collate_fn=self.external_collate_fn or dataset.collate_fn,
        )

    def normal_dataloader(self) -> DataLoader:
        """The training normals, whole and unaugmented, one image per batch, in file order.

        What a model keeping a memory of normal surface is built from (``DefectSegmenter``'s normal
        memory, as PatchCore builds its own): training batches carry crops and defects, and features
        near a crop's border are not those of the same surface inside a whole image.
        """
        self._ensure_setup()
        dataset = EvaluationDataset(self._train_normals, mask_threshold=self.mask_threshold)
        return DataLoader(
            dataset, batch_size=1, shuffle=False, num_workers=self.num_workers, collate_fn=dataset.collate_fn
        )

    def val_dataloader(self) -> EVAL_DATALOADERS:
        if self.val_split == "none":
            return []
        if self.val_split == "synthetic":
            self.prepare_generator()
        return super().val_dataloader()

    def validation_normal_dataloader(self) -> DataLoader | None:
        """The validation set's normal images alone, as ``val_dataloader`` gives them, with no generator fit.

        What ``DefectSegmenter`` calibrates its normal prior on before a test: a model reloaded in a new
        session must not fit a learned generator again only to read normal images. None without validation.
        """
        self._ensure_setup()
        data = None if self.val_split == "none" else getattr(self, "val_data", None)
        if data is None:
            return None
        synthetic = getattr(data, "is_synthetic", lambda index: False)
        labels = data.samples.label_index.tolist()
        normal = Subset(data, [i for i, label in enumerate(labels) if label != ANOMALOUS_LABEL and not synthetic(i)])
        batches = {"batch_size": self.eval_batch_size, "num_workers": self.num_workers, "collate_fn": data.collate_fn}
        return DataLoader(normal, **batches)

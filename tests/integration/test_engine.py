"""One short anomalib ``Engine.fit`` + ``Engine.test`` through the wrapper on the real Magnetic Tile data."""

from pathlib import Path

import pytest
import torch
from anomalib.engine import Engine
from shared_fixtures import make_folder_datamodule, assert_ranking_metrics
from lightning.pytorch import Callback, LightningModule, Trainer

from anomaly_synth_aug.data.datamodule import SyntheticAnomalyDataModule
from anomaly_synth_aug.generators.real_paste import RealShotPasteGenerator
from anomaly_synth_aug.models import SupervisedSupersimplenet

pytestmark = pytest.mark.integration


class BatchLabelRecorder(Callback):
    """Keeps the labels of every training batch the model actually received."""

    def __init__(self) -> None:
        self.labels: list[torch.Tensor] = []

    def on_train_batch_start(self, trainer: Trainer, pl_module: LightningModule, batch, batch_idx: int) -> None:
        self.labels.append(batch.gt_label.cpu())


@pytest.mark.slow
def test_fit_and_test_supersimplenet_on_injected_defects(magnetic_tile_root: Path, tmp_path: Path) -> None:
    # One defect type keeps the run short; its held-out images sort before test/good, so the
    # limited test batches still hold both classes.
    folder = make_folder_datamodule(
        magnetic_tile_root, defect_types=["fray"], train_batch_size=8, eval_batch_size=16, num_workers=2
    )
    datamodule = SyntheticAnomalyDataModule(folder, generator=RealShotPasteGenerator(), anomaly_ratio=0.5)
    model = SupervisedSupersimplenet(
        backbone="resnet18",
        pre_trained=False,
        pre_processor=SupervisedSupersimplenet.configure_pre_processor((128, 128)),
        visualizer=False,
    )
    recorder = BatchLabelRecorder()
    engine = Engine(
        callbacks=[recorder],
        max_epochs=1,
        limit_train_batches=3,
        limit_val_batches=2,
        limit_test_batches=3,
        accelerator="cpu",
        default_root_dir=tmp_path,
        enable_progress_bar=False,
    )
    engine.fit(model, datamodule=datamodule)
    (results,) = engine.test(model, datamodule=datamodule)

    labels = torch.cat(recorder.labels)
    assert len(recorder.labels) == 3 and 0 < int(labels.sum()) < len(labels)  # injected defects reached training
    assert {r.defect_type for r in datamodule.shot_records} == {"fray"} and len(datamodule.shot_records) == 10
    assert_ranking_metrics(results, ("image_AUROC", "pixel_AUROC"))
    assert Path(engine.best_model_path).is_file()

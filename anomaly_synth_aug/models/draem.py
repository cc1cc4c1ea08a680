"""``GeneratorDraem``: DRÆM trained on defects from any ``AnomalyGenerator``, offline.

anomalib's ``Draem`` corrupts each training batch with ``PerlinAnomalyGenerator`` over DTD
textures and downloads DTD when ``dtd_dir`` is missing. This subclass hands it an empty
temporary folder (so nothing downloads) and then swaps the augmenter for a
``GeneratorAugmenter``. Use it with ``SyntheticAnomalyDataModule(anomaly_ratio=0)``: DRÆM
needs clean inputs because it reconstructs them.
"""

from __future__ import annotations

import tempfile

from anomalib.metrics import Evaluator
from anomalib.models import Draem
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer

from anomaly_synth_aug.generators.base import AnomalyGenerator
from anomaly_synth_aug.models.augmenter import GeneratorAugmenter
from anomaly_synth_aug.models.hparams import NON_HPARAM_ARGS


class GeneratorDraem(Draem):
    """DRÆM whose training anomalies come from ``generator``.

    Args:
        generator: anomaly generator (a learned one must be fitted before training, e.g. by the
            datamodule when the same instance is passed to both).
        probability: chance that each training image is corrupted (anomalib's default 0.5).
        enable_sspcab: see ``Draem``.
        sspcab_lambda: see ``Draem``.
    """

    def __init__(
        self,
        generator: AnomalyGenerator,
        probability: float = 0.5,
        enable_sspcab: bool = False,
        sspcab_lambda: float = 0.1,
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        with tempfile.TemporaryDirectory(prefix="no_dtd_") as no_textures:
            super().__init__(
                dtd_dir=no_textures,
                enable_sspcab=enable_sspcab,
                sspcab_lambda=sspcab_lambda,
                pre_processor=pre_processor,
                post_processor=post_processor,
                evaluator=evaluator,
                visualizer=visualizer,
            )
        self.augmenter = GeneratorAugmenter(generator, probability=probability)
        # Own arguments only: Draem's dtd_dir was a temporary folder, its beta blended Perlin textures.
        self.save_hyperparameters(ignore=[*NON_HPARAM_ARGS, "dtd_dir", "beta"])

"""``GeneratorDraem``: DRÆM trained on defects from any ``AnomalyGenerator``, offline.

anomalib's ``Draem`` corrupts each training batch with ``PerlinAnomalyGenerator`` over DTD
textures and downloads DTD when ``dtd_dir`` is missing. This subclass hands it an empty
temporary folder (so nothing downloads) and then swaps the augmenter for a
``GeneratorAugmenter``. ``base_width`` narrows both sub-networks: anomalib's widths (128 and 64)
make each CPU training step about two orders of magnitude slower than width 16 (benchmarks/README.md).
Use it with ``SyntheticAnomalyDataModule(anomaly_ratio=0)``: DRÆM
needs clean inputs because it reconstructs them.
"""

from __future__ import annotations

import tempfile

from anomalib.metrics import Evaluator
from anomalib.models import Draem
from anomalib.models.image.draem.torch_model import DiscriminativeSubNetwork, ReconstructiveSubNetwork
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer

from anomaly_synth_aug.errors import InvalidInputError
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
        base_width: width of the reconstructive sub-network; the discriminative one gets half, as in
            anomalib (128 and 64 there).
    """

    #: anomalib's reconstructive width (its discriminative sub-network has half).
    DEFAULT_BASE_WIDTH = 128

    def __init__(
        self,
        generator: AnomalyGenerator,
        probability: float = 0.5,
        enable_sspcab: bool = False,
        sspcab_lambda: float = 0.1,
        base_width: int = DEFAULT_BASE_WIDTH,
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        if base_width < 2 or base_width % 2:
            raise InvalidInputError(
                f"base_width must be an even number >= 2, got {base_width}",
                fix=f"use {self.DEFAULT_BASE_WIDTH} (anomalib's DRÆM) or a smaller even width such as 16 on CPU",
            )
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
        if base_width != self.DEFAULT_BASE_WIDTH:
            self.model.reconstructive_subnetwork = ReconstructiveSubNetwork(base_width=base_width, sspcab=enable_sspcab)
            self.model.discriminative_subnetwork = DiscriminativeSubNetwork(
                in_channels=6, out_channels=2, base_width=base_width // 2
            )
            if enable_sspcab:  # Draem hooked the SSPCAB block of the network just replaced
                self.setup_sspcab()
        self.augmenter = GeneratorAugmenter(generator, probability=probability)
        # Own arguments only: Draem's dtd_dir was a temporary folder, its beta blended Perlin textures.
        self.save_hyperparameters(ignore=[*NON_HPARAM_ARGS, "dtd_dir", "beta"])

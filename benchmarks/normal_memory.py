"""Does the segmenter's normal memory tell defects from normals as well as PatchCore does? Validation data only.

The segmenter's ``NormalPatchMemory`` is PatchCore's memory on the same frozen ImageNet features. Its
first design built it differently: from random 256 px crops of the training normals, into a fixed
4096-patch coreset; this script is how the default became every training normal, whole.
Its image verdict is half of ``segmenter_prior``'s image score, so it should be as good as PatchCore's.
This script builds the memory several ways from one seed's training normals and scores each on that
seed's *synthetic validation set* (held-back training normals, half of them with a real shot pasted
in: the set the benchmark picks checkpoints and thresholds on). The memory never learns from
defects, so pasted shots are a fair stand-in for unseen ones, and no test image is read.

Variants (``--variants``; default all):

* ``crops128_4096``: the segmenter's first design, 128 normal crops, 4096-patch coreset;
* ``crops512_4096``: 512 crops, 4096 patches;
* ``whole_4096``: every training normal, whole, 4096 patches (``DefectSegmenter``'s default now);
* ``whole_1pct``: every training normal, whole, a 1 % coreset (PatchCore-1 %, the anchors' ratio).

Each is scored two ways: the mean of the upsampled map's top 0.1 % (the prior's image score) and
the highest patch distance (PatchCore's, without its re-weighting).

Usage:
    python benchmarks/normal_memory.py --data ../shared/data/magnetic_tile ../shared/data/mvtec_screw
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import torch
from torch.nn import functional as F
from torchvision.transforms.v2 import Normalize
from tqdm import tqdm

from anomaly_synth_aug.backbones.imagenet_weights import IMAGENET_MEAN, IMAGENET_STD
from anomaly_synth_aug.data.io import load_image
from anomaly_synth_aug.data.transforms import DefectCentredRandomCrop
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.evaluation.downstream.datamodules import fit_generator, synthetic_datamodule
from anomaly_synth_aug.evaluation.downstream.generator_table import build_generator
from anomaly_synth_aug.evaluation.downstream.presets import resolve_preset
from anomaly_synth_aug.evaluation.metrics import image_auroc
from anomaly_synth_aug.models.normal_memory import NormalPatchMemory
from anomaly_synth_aug.models.normal_prior import top_fraction_mean
from anomaly_synth_aug.models.segmenter_network import SegmenterModel

PROJECT_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATA = [PROJECT_ROOT.parent / "shared" / "data" / name for name in ("magnetic_tile", "mvtec_screw")]
#: name: (normal crops, or None for whole images; coreset size, or a ratio of the collected patches when < 1)
VARIANTS: dict[str, tuple[int | None, float]] = {
    "crops128_4096": (128, 4096),
    "crops512_4096": (512, 4096),
    "whole_4096": (None, 4096),
    "whole_1pct": (None, 0.01),
}
CROP = 256
TOP_FRACTION = 0.001

logger = logging.getLogger("benchmarks.normal_memory")
normalize = Normalize(mean=IMAGENET_MEAN, std=IMAGENET_STD)


def rgb(path: str | Path) -> torch.Tensor:
    """``[3, H, W]`` float image in [0, 1] (grey images promoted to RGB)."""
    return load_image(path)


def normal_inputs(paths: list[Path], crops: int | None, seed: int) -> Iterator[torch.Tensor]:
    """Whole normal images, or ``crops`` random crops of them (cycling through the images in a seeded order)."""
    if crops is None:
        for path in paths:
            yield rgb(path).unsqueeze(0)
        return
    generator = torch.Generator().manual_seed(seed)
    cropper = DefectCentredRandomCrop(CROP)
    order = torch.randperm(len(paths), generator=generator).tolist()
    torch.manual_seed(seed)  # the crop positions
    for index in range(crops):
        yield cropper(rgb(paths[order[index % len(paths)]])).unsqueeze(0)


def build_memory(model: SegmenterModel, inputs: Iterable[torch.Tensor], size: float) -> NormalPatchMemory:
    memory = NormalPatchMemory()
    patches = 0
    for image in inputs:
        features = model.memory_features(normalize(image))
        memory.collect(features)
        patches += features[0].shape[-2] * features[0].shape[-1]
    memory.build(int(size) if size >= 1 else max(1, round(patches * size)))
    return memory


@torch.no_grad()
def image_scores(model: SegmenterModel, memory: NormalPatchMemory, image: torch.Tensor) -> tuple[float, float]:
    """(top 0.1 % of the upsampled distance map, highest patch distance) of one ``[1, 3, H, W]`` image."""
    padded, (height, width) = model._prepare(normalize(image))
    distance = memory.distance_map(model.memory_features(padded))
    upsampled = F.interpolate(distance, size=padded.shape[-2:], mode="bilinear", align_corners=False)
    upsampled = upsampled[..., :height, :width]
    return float(top_fraction_mean(upsampled, TOP_FRACTION)), float(distance.max())


def run_dataset(root: Path, variants: list[str], seed: int) -> dict[str, object]:
    preset = resolve_preset("full")
    datamodule = synthetic_datamodule(
        root, build_generator("real_paste", preset, root.name), preset, seed, inject=False
    )
    fit_generator(datamodule)
    normals = [Path(p) for p in datamodule.train_normal_paths()]
    validation = [(item.image.unsqueeze(0), int(item.gt_label)) for item in datamodule.val_data]
    labels = torch.tensor([label for _, label in validation])
    if labels.numel() == 0 or labels.min() == labels.max():
        raise InvalidInputError(
            f"the validation set of {root} holds {int(labels.sum())} anomalous of {labels.numel()} images, so no "
            "AUROC can be measured on it",
            fix="use a category with more training normals (15 % of them, at least 2, are held back; half get a pasted shot)",
        )
    model = SegmenterModel().eval()
    record: dict[str, object] = {"train_normals": len(normals), "val_images": len(validation),
                                 "val_anomalous": int(labels.sum()), "variants": {}}
    for name in variants:
        crops, size = VARIANTS[name]
        start = time.perf_counter()
        memory = build_memory(model, tqdm(normal_inputs(normals, crops, seed), desc=f"{root.name} {name}",
                                          total=crops or len(normals)), size)
        built = time.perf_counter() - start
        scores = [image_scores(model, memory, image) for image, _ in validation]
        top = torch.tensor([s[0] for s in scores])
        peak = torch.tensor([s[1] for s in scores])
        record["variants"][name] = {  # type: ignore[index]
            "memory_patches": len(memory.memory_bank),
            "build_s": round(built, 1),
            "val_image_AUROC_top0.001": round(image_auroc(top, labels), 4),
            "val_image_AUROC_max_patch": round(image_auroc(peak, labels), 4),
        }
        logger.info("%s %s: %s", root.name, name, record["variants"][name])  # type: ignore[index]
    return record


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, nargs="+", default=DEFAULT_DATA)
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=2, help="torch intra-op threads")
    parser.add_argument("--out", type=Path, default=PROJECT_ROOT / "benchmarks" / "results" / "normal_memory")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    torch.set_num_threads(args.threads)
    args.out.mkdir(parents=True, exist_ok=True)
    for root in args.data:
        if not root.is_dir():
            logger.warning("skipping %s: no such folder", root)
            continue
        path = args.out / f"{root.name}_seed{args.seed}.json"
        record = run_dataset(root.resolve(), args.variants, args.seed)
        path.write_text(json.dumps(record, indent=2) + "\n")
        logger.info("wrote %s", path)


if __name__ == "__main__":
    main()

"""How real do generated defects look, without pretrained networks (so no FID or LPIPS)?

Three measurements, each answering one question:

* **realism** — ``classifier_two_sample_test``: a small CNN trained *from scratch* to tell real
  defect crops from generated ones; its AUROC on crops it never trained on is 0.5 when the two
  are indistinguishable to it and 1.0 when trivially separable (Lopez-Paz & Oquab, 2017). Real
  crops must come from held-out anomalies, never from the generator's shots.
* **diversity** — ``mean_pairwise_distance``: the mean RMS pixel distance between defect crops
  of one type (pixels outside the mask zeroed), to compare generated against real spread; a
  generator that copies its shots scores low.
* **background fidelity** — ``background_psnr``: PSNR outside the mask between the normal
  image and its anomalous version; infinite when the background is bit-exact.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn import functional as F
from torchmetrics.functional.image import peak_signal_noise_ratio
from torchvision.ops import masks_to_boxes
from torchvision.transforms.v2 import functional as TF

from anomaly_synth_aug.data.sample import to_bool_mask, to_rgb_float
from anomaly_synth_aug.errors import InvalidInputError, MaskError
from anomaly_synth_aug.evaluation.metrics import image_auroc
from anomaly_synth_aug.generators.diffusion.calibration import signed_contrast

#: Side of the square crops the realism classifier and the diversity measure look at.
CROP_SIZE = 32


def defect_crops(
    images: Sequence[torch.Tensor],
    masks: Sequence[torch.Tensor],
    *,
    size: int = CROP_SIZE,
    context: float = 0.5,
    zero_outside: bool = False,
) -> torch.Tensor:
    """Square crops ``[N, 3, size, size]`` around each mask's bounding box.

    Args:
        images: float ``[3, H, W]`` (or grayscale) images in [0, 1].
        masks: one non-empty bool ``[H, W]`` mask per image.
        size: output side in pixels.
        context: the crop's side is the box's longer side times ``1 + context`` (surrounding
            surface lets the classifier judge how the defect meets its background).
        zero_outside: set pixels outside the mask to 0 (for comparing the defects themselves).
    """
    if len(images) != len(masks):
        raise InvalidInputError(f"got {len(images)} images but {len(masks)} masks", fix="pass one mask per image")
    crops = []
    for index, (image, mask) in enumerate(zip(images, masks, strict=True)):
        image, mask = to_rgb_float(image), to_bool_mask(mask)
        if not bool(mask.any()):
            raise MaskError(f"mask {index} is empty: no defect to crop", fix="drop samples whose mask is empty")
        if zero_outside:
            image = image * mask
        left, top, right, bottom = masks_to_boxes(mask[None])[0].tolist()
        side = max(right - left + 1, bottom - top + 1) * (1 + context)
        center_y, center_x = (top + bottom + 1) / 2, (left + right + 1) / 2
        crop_top, crop_left = round(center_y - side / 2), round(center_x - side / 2)
        side = max(1, round(side))
        # crop() pads with zeros where the square reaches past the border
        crop = TF.crop(image, crop_top, crop_left, side, side)
        crops.append(TF.resize(crop, [size, size], antialias=True))
    if not crops:
        return torch.empty(0, 3, size, size)
    return torch.stack(crops)


# ----------------------------------------------------------------------------------- realism
@dataclass(frozen=True)
class TwoSampleResult:
    """Outcome of the classifier two-sample test."""

    auroc: float  #: on the held-out crops: 0.5 indistinguishable, 1.0 trivially separable
    train_size: int  #: crops per class the classifier trained on
    test_size: int  #: crops per class it was scored on


class CropClassifier(nn.Sequential):
    """A deliberately small CNN (about 15k weights) so the test has power with a few hundred crops."""

    def __init__(self, width: int = 16) -> None:
        def block(in_channels: int, out_channels: int) -> list[nn.Module]:
            return [
                nn.Conv2d(in_channels, out_channels, 3, padding=1),
                nn.BatchNorm2d(out_channels),
                nn.ReLU(inplace=True),
                nn.MaxPool2d(2),
            ]

        super().__init__(
            *block(3, width),
            *block(width, 2 * width),
            *block(2 * width, 2 * width),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(2 * width, 1),
        )


def classifier_two_sample_test(
    real: torch.Tensor,
    generated: torch.Tensor,
    *,
    test_fraction: float = 0.5,
    epochs: int = 30,
    batch_size: int = 32,
    learning_rate: float = 3e-3,
    seed: int = 0,
) -> TwoSampleResult:
    """Train ``CropClassifier`` to separate real from generated crops; AUROC on a held-out split.

    Both sets are subsampled to the same size (so 0.5 is chance), shuffled and split with
    ``seed``; the classifier trains from scratch with random flips (defects have no
    orientation) and is scored on crops it never saw.

    Args:
        real: ``[N, 3, S, S]`` real defect crops (from held-out anomalies, never the shots).
        generated: ``[M, 3, S, S]`` generated defect crops.
        test_fraction: share of each class kept for scoring.
        epochs: passes over the training crops.
        batch_size: crops per optimisation step.
        learning_rate: Adam learning rate.
        seed: fixes the subsampling, the split, the initialisation and the batches.
    """
    count = min(len(real), len(generated))
    test_size = round(count * test_fraction)
    if test_size < 2 or count - test_size < 2:
        raise InvalidInputError(
            f"need at least 4 crops per class for a two-sample test, got {len(real)} real and {len(generated)} generated",
            fix="generate more samples, or evaluate on a dataset with more held-out anomalies",
        )
    rng = torch.Generator().manual_seed(seed)
    real = real[torch.randperm(len(real), generator=rng)[:count]]
    generated = generated[torch.randperm(len(generated), generator=rng)[:count]]
    train_x = torch.cat([real[test_size:], generated[test_size:]])
    train_y = torch.cat([torch.ones(count - test_size), torch.zeros(count - test_size)])
    test_x = torch.cat([real[:test_size], generated[:test_size]])
    test_y = torch.cat([torch.ones(test_size), torch.zeros(test_size)]).long()

    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = CropClassifier()
    optimizer = torch.optim.Adam(model.parameters(), lr=learning_rate)
    model.train()
    for _ in range(epochs):
        for batch in torch.randperm(len(train_x), generator=rng).split(batch_size):
            if len(batch) < 2:
                continue  # BatchNorm needs two samples
            x = _random_flips(train_x[batch], rng)
            loss = F.binary_cross_entropy_with_logits(model(x).squeeze(1), train_y[batch])
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
    model.eval()
    with torch.no_grad():
        scores = model(test_x).squeeze(1)
    auroc = image_auroc(scores, test_y)  # raw logits: no sigmoid to saturate
    return TwoSampleResult(auroc=auroc, train_size=count - test_size, test_size=test_size)


def _random_flips(images: torch.Tensor, rng: torch.Generator) -> torch.Tensor:
    flip_x = torch.rand(len(images), generator=rng) < 0.5
    flip_y = torch.rand(len(images), generator=rng) < 0.5
    images = torch.where(flip_x[:, None, None, None], images.flip(-1), images)
    return torch.where(flip_y[:, None, None, None], images.flip(-2), images)


# --------------------------------------------------------------------------------- diversity
def mean_pairwise_distance(crops: torch.Tensor) -> float:
    """Mean RMS pixel distance over all pairs of crops (NaN for fewer than two)."""
    if len(crops) < 2:
        return math.nan
    flat = crops.flatten(1).double()
    return float(torch.pdist(flat).mean() / math.sqrt(flat.shape[1]))


def diversity_by_type(crops: torch.Tensor, defect_types: Sequence[str]) -> dict[str, float]:
    """``mean_pairwise_distance`` within each defect type (types with one crop are left out)."""
    if len(crops) != len(defect_types):
        raise InvalidInputError(
            f"got {len(crops)} crops but {len(defect_types)} defect types", fix="pass one type per crop"
        )
    by_type: dict[str, list[int]] = defaultdict(list)
    for index, defect_type in enumerate(defect_types):
        by_type[defect_type].append(index)
    return {
        defect_type: mean_pairwise_distance(crops[indices])
        for defect_type, indices in sorted(by_type.items())
        if len(indices) > 1
    }


# ----------------------------------------------------------------------- background fidelity
def background_psnr(source: torch.Tensor, generated: torch.Tensor, mask: torch.Tensor) -> float:
    """PSNR (dB, data range 1) of ``generated`` vs ``source`` outside ``mask``; ``inf`` when bit-exact."""
    source, generated, mask = to_rgb_float(source), to_rgb_float(generated), to_bool_mask(mask)
    if source.shape != generated.shape or mask.shape != source.shape[-2:]:
        raise InvalidInputError(
            f"sizes differ: source {tuple(source.shape)}, generated {tuple(generated.shape)}, mask {tuple(mask.shape)}",
            fix="pass the normal image, its anomalous version and the returned mask",
        )
    outside = ~mask.expand_as(source)
    if not bool(outside.any()):
        return math.inf  # no background at all: nothing can have drifted
    return float(peak_signal_noise_ratio(generated[outside], source[outside], data_range=1.0))


def defect_contrast(image: torch.Tensor, mask: torch.Tensor, ring: int = 7) -> float:
    """|mean grey level inside the mask - mean over a ``ring``-px band around it| (``signed_contrast``'s size).

    How visible a defect is against its own surroundings. Generated defects far fainter than real
    ones teach a detector to flag faint texture; C2ST and diversity do not show that directly.
    """
    return abs(signed_contrast(image, mask, ring))


def contrast_by_type(
    images: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], defect_types: Sequence[str]
) -> dict[str, float]:
    """Mean ``defect_contrast`` per defect type (NaN values, from full-image masks, left out)."""
    values: dict[str, list[float]] = defaultdict(list)
    for image, mask, name in zip(images, masks, defect_types, strict=True):
        value = defect_contrast(image, mask)
        if value == value:
            values[name].append(value)
    return {name: sum(v) / len(v) for name, v in sorted(values.items()) if v}

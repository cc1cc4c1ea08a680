"""Guidance chosen on the shots: per defect type, the scale whose defects are as visible as the shots.

Normal-token guidance decides how strongly a fit draws its defects, and how strongly it should
depends on the fit (a longer one draws more strongly) and on the type (a faint "uneven" surface and
a dark crack differ). ``calibrate_guidance`` draws the same placements at every candidate scale and,
per type, keeps the scale whose mean *signed* contrast (grey level inside the defect minus a band
around it) is closest to that of the type's shots: as visible as the real ones, and in the same
direction (a crack is darker than its surface, not brighter). With strength matching, the rule is
instead the lowest scale that is at least as visible as the shots (``lowest_reaching_scale``), and
``attenuation`` scales the change down to the shots' contrast. It needs the shots only, never test data.

Example:
    >>> reference = contrast_by_type([s.image for s in shots], [s.mask for s in shots], [s.defect_type for s in shots])
    >>> best, gaps, generated = calibrate_guidance(sample, reference, candidates=(1.0, 2.0, 3.0, 5.0))
    >>> attenuation(reference["uneven"], generated["uneven"][best["uneven"]])
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence

import torch
from torch.nn import functional as F

from anomaly_synth_aug.data.sample import to_bool_mask, to_rgb_float
from anomaly_synth_aug.errors import InvalidInputError, MaskError

#: Width in pixels of the band around a defect it is compared with.
RING = 7

Sampler = Callable[[float], tuple[list[torch.Tensor], list[torch.Tensor], list[str]]]


def signed_contrast(image: torch.Tensor, mask: torch.Tensor, ring: int = RING) -> float:
    """Mean grey level inside ``mask`` minus the mean over a ``ring``-px band around it (NaN: no band).

    Negative for a defect darker than its surroundings, positive for a brighter one.
    """
    mask = to_bool_mask(mask)
    if not bool(mask.any()):
        raise MaskError("a defect's contrast needs a non-empty mask", fix="skip normal samples")
    grey = to_rgb_float(image).mean(0)
    grown = F.max_pool2d(mask[None, None].float(), 2 * ring + 1, stride=1, padding=ring)[0, 0] > 0
    band = grown & ~mask
    if not bool(band.any()):  # the mask covers the whole image: nothing to compare against
        return float("nan")
    return float(grey[mask].mean() - grey[band].mean())


def contrast_by_type(
    images: Sequence[torch.Tensor], masks: Sequence[torch.Tensor], defect_types: Sequence[str]
) -> dict[str, float]:
    """Mean ``signed_contrast`` per defect type (NaN values, from whole-image masks, left out)."""
    values: dict[str, list[float]] = defaultdict(list)
    for image, mask, name in zip(images, masks, defect_types, strict=True):
        value = signed_contrast(image, mask)
        if value == value:
            values[name].append(value)
    return {name: sum(v) / len(v) for name, v in sorted(values.items()) if v}


def calibrate_guidance(
    sample: Sampler, reference: Mapping[str, float], candidates: Sequence[float]
) -> tuple[dict[str, float], dict[str, dict[float, float]], dict[str, dict[float, float]]]:
    """Per defect type, the candidate scale whose samples' mean signed contrast is closest to ``reference``.

    ``sample(scale)`` returns generated images, masks and types, with the same placements for every
    scale. Returns the chosen scale per type, per type each candidate's distance to the reference
    (types without a reference, or without samples, get the first candidate), and per type each
    candidate's mean signed contrast.
    """
    if not candidates:
        raise InvalidInputError("no guidance scales to choose from", fix="pass e.g. guidance_candidates=(1, 2, 3, 5)")
    gaps: dict[str, dict[float, float]] = {}
    contrast: dict[str, dict[float, float]] = {}
    for scale in candidates:
        generated = contrast_by_type(*sample(float(scale)))
        for name, value in generated.items():
            if name in reference:
                gaps.setdefault(name, {})[float(scale)] = abs(value - reference[name])
                contrast.setdefault(name, {})[float(scale)] = value
    best = {name: min(by_scale, key=by_scale.__getitem__) for name, by_scale in gaps.items()}
    for name in reference:
        best.setdefault(name, float(candidates[0]))
    return best, gaps, contrast


def lowest_reaching_scale(contrast: Mapping[float, float], reference: float) -> float:
    """The lowest scale whose defects are at least as visible as the shots, in their direction (else the closest).

    With ``attenuation`` to bring a stronger defect down to the shots' contrast, a higher scale buys
    nothing but the artefacts of over-guidance (pitted, blotchy textures); so take the least guidance
    that is enough.

    Example:
        >>> lowest_reaching_scale({1.0: -0.02, 3.0: -0.08, 5.0: -0.2}, reference=-0.05)
        3.0
    """
    reaching = [
        scale for scale, value in sorted(contrast.items()) if value * reference > 0 and abs(value) >= abs(reference)
    ]
    return reaching[0] if reaching else min(contrast, key=lambda scale: abs(contrast[scale] - reference))


def attenuation(reference: float, generated: float) -> float:
    """How much to scale a type's generated change so it is no more visible than its shots (in (0, 1]).

    ``reference / generated`` where both go the same way and the generated defects are the stronger;
    1 otherwise: weaker defects are not amplified (that would amplify the patch's noise with them), and
    a defect drawn the wrong way is not fixed by scaling.

    Example:
        >>> attenuation(0.05, 0.10)
        0.5
    """
    if reference * generated <= 0 or abs(generated) <= abs(reference):
        return 1.0
    return reference / generated


__all__ = ["RING", "attenuation", "calibrate_guidance", "contrast_by_type", "lowest_reaching_scale", "signed_contrast"]

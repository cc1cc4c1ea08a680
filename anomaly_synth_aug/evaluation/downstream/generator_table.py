"""The benchmark's sources of training defects, by name: none, the real shots, classic and diffusion.

``"none"`` trains on normals only. ``"shots_only"`` trains on the augmented real shots themselves
(``SyntheticAnomalyDataModule(mode="shots")``): what anyone with a few labelled defects tries
first. Every other name is a generator. ``"diffusion"`` is the product's default diffusion
generator; each ablation switches exactly one mechanism off. ``"diffusion_perlin"`` mixes its
defects with Perlin's (in the cached pool, Perlin is one type beside diffusion's, so it makes
one sample in (number of shot types + 1)). Variants that change only sampling options share the fit of
``"diffusion"`` through the ``FitStore`` (its key leaves sampling options out), so each differs
from it in exactly that switch, not also in a second training run. ``"<source>_with_shots"`` trains on
that source's defects and the augmented real shots together, half and half (``shot_share``): what a
user who has the shots would run. It shares its source's fit and cached pool. At a fixed step budget
it also shows the segmenter half as many real defects as ``"shots_only"``; ``"shots_plus_<source>"``
gives the shots the same expected share of the training items as ``"shots_only"`` and the source's
defects half of the items that ``"shots_only"`` leaves normal (so the normals' share halves too):
what synthetic defects add when they displace no real one.

Example:
    >>> generator = build_generator("perlin", "full", "magnetic_tile")
"""

from __future__ import annotations

import importlib
from collections.abc import Callable

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.evaluation.downstream.presets import Preset, resolve_preset
from anomaly_synth_aug.generators.base import AnomalyGenerator

GeneratorFactory = Callable[[Preset, str], AnomalyGenerator]


def _diffusion(**overrides: object) -> GeneratorFactory:
    def build(preset: Preset, category: str) -> AnomalyGenerator:
        from anomaly_synth_aug.generators.diffusion import DiffusionAnomalyGenerator  # heavy import

        options = {"progress": False, **preset.diffusion, **overrides}  # product defaults otherwise
        return DiffusionAnomalyGenerator(category=category, **options)

    return build


def _classic(module: str, class_name: str, **options: object) -> GeneratorFactory:
    def build(preset: Preset, category: str) -> AnomalyGenerator:
        del preset, category  # classic generators have no budget and no category state
        return getattr(importlib.import_module(module), class_name)(**options)

    return build


def _mixture(first: GeneratorFactory, second: GeneratorFactory, weights: tuple[float, float]) -> GeneratorFactory:
    def build(preset: Preset, category: str) -> AnomalyGenerator:
        from anomaly_synth_aug.generators.mixture import MixtureGenerator

        return MixtureGenerator([first(preset, category), second(preset, category)], weights=list(weights))

    return build


_REAL_PASTE = _classic("anomaly_synth_aug.generators.real_paste", "RealShotPasteGenerator")
_PERLIN = _classic("anomaly_synth_aug.generators.perlin", "PerlinGenerator")

#: Benchmark name -> factory(preset, category); None: no defects at all.
GENERATORS: dict[str, GeneratorFactory | None] = {
    "none": None,
    # trains on the shots; the real-shot paste generator only makes its synthetic validation set
    "shots_only": _REAL_PASTE,
    "perlin": _PERLIN,
    "cutpaste": _classic("anomaly_synth_aug.generators.cutpaste", "CutPasteGenerator"),
    "poisson": _classic("anomaly_synth_aug.generators.poisson", "PoissonBlendGenerator"),
    "real_paste": _REAL_PASTE,
    "real_paste_context": _classic(
        "anomaly_synth_aug.generators.real_paste", "RealShotPasteGenerator", context_placement=True
    ),
    "diffusion": _diffusion(),
    "diffusion_perlin": _mixture(_diffusion(), _PERLIN, (0.5, 0.5)),
    "diffusion_no_disentangle": _diffusion(background_disentangle=False),
    "diffusion_no_inversion": _diffusion(mode="repaint"),
    "diffusion_no_filter": _diffusion(quality_filter=False),
    "diffusion_no_detail": _diffusion(keep_fine_detail=False),
    "diffusion_full_strength": _diffusion(match_contrast=False),
    "diffusion_strength_jitter": _diffusion(strength_jitter=1.0),
    "diffusion_windows": _diffusion(window_scale=2.0),
    "diffusion_realism": _diffusion(realism_filter=True),
    "diffusion_visible": _diffusion(visibility_filter=True),
    "diffusion_refined": _diffusion(refine_masks=True),
    "diffusion_context": _diffusion(context_placement=True),
    "diffusion_no_guidance": _diffusion(guidance_scale=1.0),
    "diffusion_guidance_5": _diffusion(guidance_scale=5.0),
    "diffusion_7_steps": _diffusion(num_inference_steps=7),
}
#: The ablations that are also run next to the shots, on the strong detector (the disentanglement loss, inversion,
#: the filters, guidance and the new levers): each is compared with diffusion next to the shots.
ABLATIONS_WITH_SHOTS = (
    "diffusion_no_disentangle",
    "diffusion_no_inversion",
    "diffusion_no_filter",
    "diffusion_guidance_5",
    "diffusion_windows",
    "diffusion_visible",
    "diffusion_refined",
    "diffusion_context",
)
#: ``<source>_with_shots`` -> its source: the source's defects plus the real shots (``WITH_SHOTS_SHARE`` of the
#: anomalous items, a half fixed before any run, not tuned).
WITH_SHOTS: dict[str, str] = {
    f"{source}_with_shots": source
    for source in (
        "perlin", "cutpaste", "poisson", "real_paste", "real_paste_context", "diffusion", *ABLATIONS_WITH_SHOTS
    )
}
WITH_SHOTS_SHARE = 0.5
#: ``shots_plus_<source>`` -> its source: the real shots in as many items as ``shots_only`` gives them (the
#: preset's ``anomaly_ratio``), and the source's defects in ``SHOTS_PLUS_EXTRA`` of the items left normal (fixed
#: before any run, not tuned).
SHOTS_PLUS: dict[str, str] = {f"shots_plus_{source}": source for source in ("real_paste", "diffusion")}
SHOTS_PLUS_EXTRA = 0.5
#: The same on top of the shots for diffusion's variants: in no matrix of their own, they are what a variant picked
#: on held-back shots in place of ``diffusion`` runs on top of the shots (``variant_counterparts``).
SHOTS_PLUS_VARIANTS: dict[str, str] = {f"shots_plus_{source}": source for source in ABLATIONS_WITH_SHOTS}
#: Every source that mixes the real shots with another source's defects -> that source (its fit and pool).
MIXED_WITH_SHOTS: dict[str, str] = WITH_SHOTS | SHOTS_PLUS | SHOTS_PLUS_VARIANTS
GENERATORS.update({name: GENERATORS[source] for name, source in MIXED_WITH_SHOTS.items()})
#: Sources whose training items are not generated: the datamodule mode they train in.
TRAIN_MODE_OVERRIDES: dict[str, str] = {"shots_only": "shots"}
#: Ablation -> (the generator it is compared with, the mechanism it switches off): the ablation table.
ABLATIONS: dict[str, tuple[str, str]] = {
    "diffusion_no_disentangle": ("diffusion", "background-disentanglement loss (fitted without it)"),
    "diffusion_no_inversion": ("diffusion", "DDIM inversion of the target (RePaint-style sampling)"),
    "diffusion_no_filter": ("diffusion", "quality filter, pixel and realism checks (first draw kept)"),
    "diffusion_no_detail": ("diffusion", "the surface's fine detail under large defects (upscaled patch only)"),
    "diffusion_full_strength": ("diffusion", "strength matched to the shots (the whole generated change kept)"),
    "diffusion_realism": ("diffusion", "nothing: it switches the realism filter ON (off by default)"),
    "diffusion_visible": ("diffusion", "nothing: it switches the visibility filter ON (off by default)"),
    "diffusion_context": ("diffusion", "nothing: context placement ON, on the surface its type's shots sit on (off by default)"),
    "diffusion_refined": ("diffusion", "nothing: masks refined to where the image changed ON (off by default)"),
    "diffusion_strength_jitter": ("diffusion", "nothing: it switches strength jitter ON (x0.5 to x2, off by default)"),
    "diffusion_windows": ("diffusion", "nothing: patch scale follows the defect (2x windows, <= 4; off by default)"),
    "diffusion_no_guidance": ("diffusion", "normal-token guidance (scale 1 instead of the calibrated scale)"),
    "diffusion_guidance_5": ("diffusion", "guidance calibrated on the shots (fixed scale 5, the old default)"),
    "diffusion_7_steps": ("diffusion", "3 of the 10 DDIM steps (7: 21 UNet passes per image, not 30)"),
}
ABLATIONS.update(
    {
        f"{name}_with_shots": ("diffusion_with_shots", f"{ABLATIONS[name][1]}, next to the shots")
        for name in ABLATIONS_WITH_SHOTS
    }
)
#: The baseline's own placement switch, so that context placement is judged on pasted shots as well.
ABLATIONS["real_paste_context"] = ("real_paste", "nothing: context placement ON for pasted shots (off by default)")
ABLATIONS["real_paste_context_with_shots"] = (
    "real_paste_with_shots",
    f"{ABLATIONS['real_paste_context'][1]}, next to the shots",
)


def generates(generator_name: str) -> bool:
    """Whether the source has generated defects of its own to measure (not ``none``, the shots, or the shots mixed
    with another source's defects)."""
    return (
        GENERATORS.get(generator_name) is not None
        and generator_name not in TRAIN_MODE_OVERRIDES
        and pool_source(generator_name) == generator_name
    )


def pool_source(generator_name: str) -> str:
    """The source whose cached pool ``generator_name`` trains from (a row that mixes in the shots reuses its source's)."""
    return MIXED_WITH_SHOTS.get(generator_name, generator_name)


def variant_counterparts(default: str, chosen: str) -> dict[str, str]:
    """The other recipes of ``default``'s source -> the same recipes on ``chosen``'s source, where both exist.

    A variant picked on held-back shots (``chosen`` in place of ``default``) is a choice of generator for the
    dataset, so every recipe that trains on the default generator's defects takes the chosen one's: alone,
    next to the shots, on top of the shots.

    Example:
        >>> variant_counterparts("diffusion_with_shots", "diffusion_no_inversion_with_shots")
        {'diffusion': 'diffusion_no_inversion', 'shots_plus_diffusion': 'shots_plus_diffusion_no_inversion'}
    """
    old, new = pool_source(default), pool_source(chosen)
    if old == new:
        return {}
    pairs = {old: new, f"{old}_with_shots": f"{new}_with_shots", f"shots_plus_{old}": f"shots_plus_{new}"}
    return {a: b for a, b in pairs.items() if a != default and a in GENERATORS and b in GENERATORS}


def training_options(generator_name: str, preset: str | Preset) -> dict[str, object]:
    """``synthetic_datamodule`` options of the source: its train mode, or how the real shots are mixed in.

    A ``shots_plus_`` source raises the share of defective items from the preset's ``anomaly_ratio`` r to
    r + ``SHOTS_PLUS_EXTRA`` (1 - r), of which r are shots: the shots' share of all items stays r.
    """
    if generator_name in TRAIN_MODE_OVERRIDES:
        return {"train_mode": TRAIN_MODE_OVERRIDES[generator_name]}
    if generator_name in WITH_SHOTS:
        return {"shot_share": WITH_SHOTS_SHARE}
    if generator_name in SHOTS_PLUS or generator_name in SHOTS_PLUS_VARIANTS:
        ratio = resolve_preset(preset).anomaly_ratio
        raised = ratio + SHOTS_PLUS_EXTRA * (1.0 - ratio)
        return {"anomaly_ratio": raised, "shot_share": ratio / raised}  # raised >= SHOTS_PLUS_EXTRA > 0
    return {}


def check_generator_name(name: str) -> None:
    """A clear error listing the benchmark's sources when ``name`` is none of them."""
    if name not in GENERATORS:
        raise InvalidInputError(f"unknown generator {name!r}", fix=f"use one of {list(GENERATORS)}")


def build_generator(name: str, preset: str | Preset, category: str) -> AnomalyGenerator | None:
    """A fresh (unfitted) generator by benchmark name; None for ``"none"``."""
    check_generator_name(name)
    factory = GENERATORS[name]
    return None if factory is None else factory(resolve_preset(preset), category)

"""The benchmark's matrices: which (source of defects, detector) pairs each preset and ``--matrix`` runs.

Kept apart from ``downstream.py`` (which runs them and writes the reports) so that the choice of runs reads
in one place.

Example:
    >>> matrix_pairs("full", None, ["segmenter_prior"], "prior_sources")[:2]
"""

from __future__ import annotations

from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.evaluation.downstream import ABLATIONS, SHOTS_PLUS, WITH_SHOTS

#: The one-class anchors: what a user runs without generating anything. Their thresholds come from a
#: synthetic validation set of pasted real shots (no synthesis), their ranking metrics from normals only.
#: ``_native``: the same at the category's own scale (512 px on screw), so that thin defects are not thinned out
#: by the resize; the headline's gains are paired against whichever anchor is best.
ANCHORS: list[tuple[str, str]] = [
    ("real_paste", "patchcore"),
    ("real_paste", "padim"),
    ("real_paste", "patchcore_native"),
    ("real_paste", "padim_native"),
]
#: The anchors as ``(detector, generator)``, the order the tables take them in.
ANCHOR_PAIRS: list[tuple[str, str]] = [(detector, generator) for generator, detector in ANCHORS]
SOURCES = [
    "none",
    "shots_only",
    "perlin",
    "cutpaste",
    "poisson",
    "real_paste",
    "diffusion",
    "diffusion_perlin",
    *(name for name, source in WITH_SHOTS.items() if source not in ABLATIONS),  # ablations have their own table
]
Pair = tuple[str, str]  # (generator, detector)
#: The full preset's matrices (--matrix). ``core``, the default, answers the headline question in the
#: fewest runs that fit a few hours per seed on 2 cores: is the product's strongest supervised detector
#: (``segmenter_prior``: the segmenter with PatchCore's verdict added, its memory of every training normal)
#: trained on the shots alone, on pasted shots plus the shots, or on diffusion defects plus the shots better
#: than the one-class anchors, and which of the three is best? ``segmenter`` runs the plain segmenter (no
#: prior; the 128-crop memory its committed rows were measured with) on the same sources. ``sources`` adds
#: those and every other source of defects on the plain segmenter (pasted shots and diffusion alone, the
#: diffusion and Perlin mixture, none, the classic generators alone and next to the shots): the whole
#: comparison table. ``prior`` is the core without its anchors. ``prior_sources`` adds to the core the
#: other sources on ``segmenter_prior``: none, the classic generators next to the shots, and pasted shots
#: and diffusion on top of the shots' own exposure (``shots_plus_``). ``prior_ablations`` runs the diffusion
#: ablations, and context placement for pasted shots, next to the shots on ``segmenter_prior``. ``all`` adds
#: those and the other ablations (the plain ones on the plain segmenter), the detector ablations (the
#: segmenter without its normal memory, the from-scratch U-Net) and SuperSimpleNet.
BASE_SOURCES = ("shots_only", "real_paste", "diffusion")
CORE_SOURCES = ("shots_only", "real_paste_with_shots", "diffusion_with_shots")
FULL_MATRICES: dict[str, list[Pair]] = {
    "core": [*ANCHORS, *((source, "segmenter_prior") for source in CORE_SOURCES)],
    "segmenter": [(source, "segmenter") for source in CORE_SOURCES],
    "prior": [(source, "segmenter_prior") for source in CORE_SOURCES],  # the core without its anchors
}
PRIOR_EXTRA_SOURCES = ("none", "perlin_with_shots", "cutpaste_with_shots", "poisson_with_shots", *SHOTS_PLUS)
FULL_MATRICES["prior_sources"] = [
    *FULL_MATRICES["core"],
    *((source, "segmenter_prior") for source in PRIOR_EXTRA_SOURCES),
]
FULL_MATRICES["sources"] = [
    *FULL_MATRICES["core"],
    *FULL_MATRICES["segmenter"],
    *((source, "segmenter") for source in ("real_paste", "diffusion")),
    *((source, "segmenter") for source in ("diffusion_perlin", "none", "perlin", "cutpaste", "poisson")),
    *((source, "segmenter") for source in SOURCES if source in WITH_SHOTS and source not in CORE_SOURCES),
]
#: The ablations next to the shots on the strong detector: diffusion's, each paired with ``diffusion_with_shots``,
#: and context placement for pasted shots, paired with ``real_paste_with_shots``.
FULL_MATRICES["prior_ablations"] = [(name, "segmenter_prior") for name in ABLATIONS if name in WITH_SHOTS]
FULL_MATRICES["all"] = [
    *FULL_MATRICES["sources"],
    *((name, "segmenter") for name in ABLATIONS if name not in WITH_SHOTS),
    *FULL_MATRICES["prior_ablations"],
    *((source, detector) for detector in ("segmenter_image_only", "segmenter_scratch") for source in BASE_SOURCES),
    *((source, "supersimplenet") for source in BASE_SOURCES),
]
#: What the other presets run.
PRESET_MATRICES: dict[str, list[Pair]] = {
    "quick": [*ANCHORS, *((source, "segmenter") for source in ("none", "shots_only", "perlin", "real_paste"))],
    "smoke": [("none", "segmenter"), ("perlin", "segmenter")],
}
DEFAULT_SEEDS = {"full": [0, 1, 2], "quick": [0], "smoke": [0]}


def matrix_pairs(
    preset: str, generators: list[str] | None, detectors: list[str] | None, matrix: str = "core"
) -> list[Pair]:
    """The (generator, detector) runs per seed.

    With both ``--generators`` and ``--detectors``: their cross product. With one of them: the
    preset's matrix limited to it. With neither: the preset's matrix.
    """
    if generators and detectors:
        return [(g, d) for g in generators for d in detectors]
    pairs = FULL_MATRICES[matrix] if preset == "full" else PRESET_MATRICES[preset]
    chosen = [(g, d) for g, d in pairs if (not generators or g in generators) and (not detectors or d in detectors)]
    if not chosen and (generators or detectors):  # or the run would do nothing and report success
        where = f"the {matrix!r} matrix" if preset == "full" else f"the {preset!r} preset's matrix"
        raise InvalidInputError(
            f"{where} has no run of generators {generators or 'any'} with detectors {detectors or 'any'}",
            fix="name both --generators and --detectors (their cross product runs), or pick a --matrix that has them",
        )
    return chosen

"""``MixtureGenerator``: each defect comes from one of several generators, drawn with given weights.

Realism and variety may each teach a detector something: learned defects look like the real ones,
Perlin blobs cover shapes and contrasts the shots never showed. A mixture gives a detector both
without choosing. Which generator makes a defect is drawn from that image's own seed stream, so
a sample does not depend on its batch, and the same seed gives the same mixture.

An untyped request draws the component by ``weights``. A typed request (``defect_types=["crack"]``)
is a request for that type: it is drawn among the components that make it (their weights,
renormalised), so the defect comes back with the type asked for, which a sample cache relies on.
A cache plans the same number of samples for every type, so in a cached pool each component's
share follows its number of types (diffusion's five types and Perlin's one: a sixth is Perlin);
``weights`` set the shares where requests are untyped, as in online mode.

Example:
    >>> mixture = MixtureGenerator([DiffusionAnomalyGenerator(), PerlinGenerator()], weights=[0.5, 0.5])
    >>> mixture.fit(normals, shots)  # fits the components that need it
    >>> batch = mixture.generate(images, generator=0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import torch

from anomaly_synth_aug.data.sample import AnomalySample
from anomaly_synth_aug.errors import InvalidInputError
from anomaly_synth_aug.generators.base import (
    AnomalyGenerator,
    build_from_config,
    generator_class,
    resolve_generator,
)
from anomaly_synth_aug.generators.batch import GeneratedBatch
from anomaly_synth_aug.utils.random import derive_seed

#: Sub-folder of a saved mixture that holds component ``i``.
COMPONENT_DIR = "component_{index}"

ComponentSpec = AnomalyGenerator | str | Mapping[str, Any]


def _component(spec: ComponentSpec) -> AnomalyGenerator:
    """A generator from an instance, a class name, or the ``{"class": ..., "config": ...}`` a saved mixture holds."""
    if isinstance(spec, Mapping):
        name = spec.get("class")
        config = spec.get("config", {})
        if not isinstance(name, str) or not isinstance(config, Mapping):
            raise InvalidInputError(
                f"a mixture component must look like {{'class': name, 'config': {{...}}}}, got {dict(spec)!r}",
                fix="pass generator instances or class names",
            )
        return build_from_config(generator_class(name), config)
    return resolve_generator(spec)


class MixtureGenerator(AnomalyGenerator):
    """Draws each defect from one of ``generators``, chosen per image with probability ``weights``.

    Args:
        generators: the components: generator instances or packaged class names (e.g. ``"PerlinGenerator"``).
        weights: one non-negative weight per component (normalised; default: equal).
    """

    per_sample_generators: ClassVar[bool] = True
    sampling_options: ClassVar[frozenset[str]] = frozenset({"weights"})

    def __init__(self, generators: Sequence[ComponentSpec], weights: Sequence[float] | None = None) -> None:
        components = [_component(spec) for spec in generators]
        if not components:
            raise InvalidInputError("a mixture needs at least one generator", fix="pass e.g. [PerlinGenerator()]")
        weights = [1.0] * len(components) if weights is None else [float(w) for w in weights]
        if len(weights) != len(components) or any(w < 0 for w in weights) or sum(weights) <= 0:
            raise InvalidInputError(
                f"got weights {weights} for {len(components)} generators",
                fix="pass one non-negative weight per generator, not all zero",
            )
        self.components = components
        self.weights = weights
        self.requires_fit = any(c.requires_fit for c in components)  # type: ignore[misc]
        super().__init__()

    @property
    def generators(self) -> list[dict[str, Any]]:
        """The components as ``{"class", "config"}`` records (what ``get_config`` saves)."""
        return [{"class": type(c).__name__, "config": c.get_config()} for c in self.components]

    def fingerprint_config(self) -> dict[str, Any]:
        """The components' fingerprint configs, so a component's neutral option is left out here too."""
        config = super().fingerprint_config()
        config["generators"] = [{"class": type(c).__name__, "config": c.fingerprint_config()} for c in self.components]
        return config

    @property
    def defect_types(self) -> list[str]:
        names: list[str] = []
        for component in self.components:
            names += [name for name in component.defect_types if name not in names]
        return names

    @property
    def is_fitted(self) -> bool:
        return all(c.is_fitted for c in self.components)

    # -------------------------------------------------------------------- fit
    def _fit(
        self, normal_images: list[torch.Tensor], shots: list[AnomalySample], generator: torch.Generator | None
    ) -> None:
        """Fit every component that needs it and is not fitted yet (a loaded one is kept as it is).

        Each learned component draws its seed in order whether it is fitted or not, so that its fit
        does not depend on which others arrived fitted.
        """
        for component in self.components:
            if not component.requires_fit:
                continue
            stream = torch.Generator().manual_seed(derive_seed(generator))
            if not component.is_fitted:
                component.fit(normal_images, shots, generator=stream)

    # --------------------------------------------------------------- generate
    def _generate(
        self,
        images: list[torch.Tensor],
        masks: list[torch.Tensor | None],
        defect_types: list[str | None],
        generator: torch.Generator | list[torch.Generator] | None,
    ) -> GeneratedBatch:
        chosen: list[int] = []
        streams: list[torch.Generator] = []
        for index in range(len(images)):
            source = generator[index] if isinstance(generator, list) else generator
            rng = torch.Generator().manual_seed(derive_seed(source))
            chosen.append(int(torch.multinomial(self._probabilities(defect_types[index]), 1, generator=rng)))
            streams.append(torch.Generator().manual_seed(derive_seed(rng)))
        parts: dict[int, GeneratedBatch] = {}
        positions: dict[int, list[int]] = {}
        for k, component in enumerate(self.components):
            members = [i for i, c in enumerate(chosen) if c == k]
            if not members:
                continue
            parts[k] = component.generate(
                [images[i] for i in members],
                [masks[i] for i in members],
                [defect_types[i] for i in members],  # None, or a type this component makes
                generator=[streams[i] for i in members],
            )
            positions[k] = members
        order = sorted((i, k, j) for k, members in positions.items() for j, i in enumerate(members))
        batch = GeneratedBatch(
            images=[parts[k].images[j] for _, k, j in order],
            masks=[parts[k].masks[j] for _, k, j in order],
            defect_types=[parts[k].defect_types[j] for _, k, j in order],
        )
        batch.stats = GeneratedBatch.concat(list(parts.values())).stats
        batch.stats["components"] = {type(self.components[k]).__name__: len(m) for k, m in positions.items()}
        return batch

    def _probabilities(self, defect_type: str | None) -> torch.Tensor:
        """The components' draw weights for one request: all of them, or those that make ``defect_type``."""
        weights = torch.tensor(self.weights, dtype=torch.float64)
        if defect_type is None:
            return weights
        makes = torch.tensor([defect_type in c.defect_types for c in self.components])
        if not bool((weights * makes).sum() > 0):
            raise InvalidInputError(
                f"no component with a non-zero weight makes {defect_type!r} "
                f"(weights {self.weights}, types {[c.defect_types for c in self.components]})",
                fix="ask for one of the types of the weighted components, or give the component that makes it a weight",
            )
        return weights * makes

    # ------------------------------------------------------------ persistence
    def get_config(self) -> dict[str, Any]:
        return {"generators": self.generators, "weights": list(self.weights)}

    def state_fingerprint(self) -> str:
        return "|".join(c.fingerprint() for c in self.components)

    def _save_state(self, directory: Path) -> None:
        for index, component in enumerate(self.components):
            component.save(directory / COMPONENT_DIR.format(index=index))

    def _load_state(self, directory: Path) -> None:
        self.components = [
            AnomalyGenerator.load(directory / COMPONENT_DIR.format(index=index)) for index in range(len(self.components))
        ]


__all__ = ["MixtureGenerator"]

"""``captures_config``: every constructor argument becomes an attribute, defaults included, without copying."""

from __future__ import annotations

from collections.abc import Sequence

import torch

from anomaly_synth_aug.generators.base import AnomalyGenerator, GeneratedBatch
from anomaly_synth_aug.generators.config import captures_config
from anomaly_synth_aug.generators.diffusion import DiffusionAnomalyGenerator


class KnobGenerator(AnomalyGenerator):
    @captures_config
    def __init__(self, size: int = 8, blocks: Sequence[int] = (1, 2), name: str = "knob") -> None:
        super().__init__()
        self.blocks = tuple(blocks)  # the body may convert what the decorator set

    @property
    def defect_types(self) -> list[str]:
        return ["knob"]

    def _generate(self, images, masks, defect_types, generator) -> GeneratedBatch:  # noqa: ANN001
        raise NotImplementedError


def test_arguments_and_defaults_become_attributes_and_the_config() -> None:
    knob = KnobGenerator(3, blocks=[4, 5])
    assert (knob.size, knob.blocks, knob.name) == (3, (4, 5), "knob")
    assert knob.get_config() == {"size": 3, "blocks": [4, 5], "name": "knob"}


def test_the_diffusion_generator_records_every_argument_it_takes() -> None:
    """It used to copy 31 arguments by hand; a forgotten one would silently drop out of saved configs."""
    generator = DiffusionAnomalyGenerator(max_steps=7, mode="repaint", guidance_scale=2, progress=False)
    config = generator.get_config()
    assert config["max_steps"] == 7 and config["mode"] == "repaint" and config["guidance_scale"] == 2.0
    assert DiffusionAnomalyGenerator(**config).get_config() == config  # what save/load relies on
    assert isinstance(generator.mode, str) and generator.block_out_channels == (32, 64, 64)
    assert torch.get_num_threads() > 0  # construction leaves the thread count alone

"""benchmarks/diffusion_generator.py: the speed measurement leaves the generator as it was configured."""

import pytest
import torch
from shared_fixtures import load_script

from anomaly_synth_aug.generators.base import GeneratedBatch


class ModeRecorder:
    """Stands in for a fitted diffusion generator: marks one pixel per image, remembers each call's mode."""

    def __init__(self, mode: str, fail_in: str | None = None) -> None:
        self.mode = mode
        self.fail_in = fail_in
        self.calls: list[str] = []

    def generate(self, images: list[torch.Tensor], generator: torch.Generator | None = None) -> GeneratedBatch:
        self.calls.append(self.mode)
        if self.mode == self.fail_in:
            raise RuntimeError("sampling failed")
        masks = [torch.zeros(img.shape[-2:], dtype=torch.bool) for img in images]
        outputs = [img.clone() for img in images]
        for out, mask in zip(outputs, masks, strict=True):
            mask[0, 0] = True
            out[:, 0, 0] = 1.0 - out[:, 0, 0]
        return GeneratedBatch(outputs, masks, ["blob"] * len(images), stats={"rejected": 0})


def test_speed_by_mode_times_both_modes_and_restores_the_configured_one() -> None:
    script = load_script("diffusion_generator")
    generator = ModeRecorder(mode="inversion")

    speed, violations = script.speed_by_mode(generator, [torch.rand(3, 8, 8) for _ in range(3)], seed=0)

    assert generator.calls == ["repaint", "inversion"]
    assert set(speed) == {"repaint", "inversion"} and speed["repaint"]["images"] == 3
    assert violations == 0
    # the sample grids are drawn next: they must show the configured mode (the script used to leave RePaint)
    assert generator.mode == "inversion"


def test_speed_by_mode_restores_the_mode_when_sampling_fails() -> None:
    script = load_script("diffusion_generator")
    generator = ModeRecorder(mode="inversion", fail_in="repaint")

    with pytest.raises(RuntimeError, match="sampling failed"):
        script.speed_by_mode(generator, [torch.rand(3, 8, 8)], seed=0)

    assert generator.mode == "inversion"


def test_set_options_are_parsed_as_json_or_kept_as_text() -> None:
    script = load_script("diffusion_generator")
    assert script.options(["context_placement=true", "mode=repaint", "max_retries=3"]) == {
        "context_placement": True,
        "mode": "repaint",
        "max_retries": 3,
    }
    assert script.options(["context_placement=False", "window_scale=None"]) == {
        "context_placement": False,
        "window_scale": None,
    }
    with pytest.raises(SystemExit, match="OPTION=VALUE"):
        script.options(["context_placement"])
    with pytest.raises(SystemExit, match="max-steps"):
        script.options(["max_steps=10"])

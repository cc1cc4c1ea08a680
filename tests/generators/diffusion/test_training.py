"""Training: the loss mechanisms (each would fail its test if removed), budget and resumption."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from diffusion_helpers import TINY, normals, shots

from anomaly_synth_aug.errors import CheckpointMismatchError, InvalidInputError
from anomaly_synth_aug.generators.diffusion.model import DefectDenoiser
from anomaly_synth_aug.generators.diffusion.patch_source import PatchBatch, PatchSource
from anomaly_synth_aug.generators.diffusion.training import (
    LossSwitches,
    TrainingCheckpoint,
    TrainingSettings,
    expected_total_steps,
    make_noise_scheduler,
    to_model_space,
    train_denoiser,
    training_loss,
)

TYPES = ["dent", "streak"]


def _source(augment: bool = True) -> PatchSource:
    return PatchSource(shots(), normals(), TYPES, patch_size=TINY["patch_size"], fill=0.5, augment=augment)


def _model() -> DefectDenoiser:
    torch.manual_seed(0)
    return DefectDenoiser(len(TYPES), patch_size=TINY["patch_size"], block_out_channels=TINY["block_out_channels"])


def _settings(**overrides: object) -> TrainingSettings:
    values = {"max_steps": 3, "max_minutes": None, "batch_size": 4, "progress": False, "warmup_steps": 1}
    values.update(overrides)
    return TrainingSettings(**values)


# --------------------------------------------------------------------- loss
def _defect_only_batch() -> PatchBatch:
    return _source(augment=False).draw(4, 0.0, torch.Generator().manual_seed(2))


def _loss(model: DefectDenoiser, batch: PatchBatch, switches: LossSwitches, x0: torch.Tensor | None = None):
    return training_loss(model, make_noise_scheduler(), batch, switches, torch.Generator().manual_seed(3), x0=x0)


def test_background_term_never_sees_the_defect_pixels() -> None:
    """Cho et al.: the background term's gradient w.r.t. input pixels inside the defect mask is zero."""
    model, batch = _model(), _defect_only_batch()
    x0 = to_model_space(batch.images).requires_grad_(True)
    with_background, _ = _loss(model, batch, LossSwitches(True, True, 0.0), x0)
    defect_only, _ = _loss(model, batch, LossSwitches(True, False, 0.0), x0)
    (grad,) = torch.autograd.grad(with_background - defect_only, x0)
    inside = batch.masks.expand_as(grad)
    assert grad[inside].abs().max() < 1e-6
    assert grad[~inside].abs().max() > 1e-4  # it does learn from the background


def _output_gradient(model: DefectDenoiser, batch: PatchBatch, switches: LossSwitches) -> torch.Tensor:
    """Gradient of the loss w.r.t. the UNet's main-batch output (the defect term's view of the prediction)."""
    captured: list[torch.Tensor] = []
    forward = model.forward

    def spy(*args: torch.Tensor) -> torch.Tensor:
        out = forward(*args)
        out.retain_grad()
        captured.append(out)
        return out

    model.forward = spy  # type: ignore[method-assign]
    loss, _ = _loss(model, batch, switches)
    loss.backward()
    return captured[0].grad[: batch.images.shape[0]]


def test_masked_loss_binds_defect_token_only_to_the_mask() -> None:
    batch = _defect_only_batch()
    masked = _output_gradient(_model(), batch, LossSwitches(True, False, 0.0))
    outside = ~batch.masks.expand_as(masked)
    assert masked[outside].abs().max() == 0 and masked[~outside].abs().max() > 0
    whole = _output_gradient(_model(), batch, LossSwitches(False, False, 0.0))
    assert whole[outside].abs().max() > 0


def test_normal_patches_are_trained_on_the_whole_patch_with_the_normal_token() -> None:
    batch = _source().draw(4, 0.5, torch.Generator().manual_seed(4))
    grad = _output_gradient(_model(), batch, LossSwitches())
    normal_rows = ~batch.is_defect
    assert bool((grad[normal_rows].abs().flatten(1) > 0).all())


def test_adaptive_weighting_emphasises_badly_predicted_mask_pixels() -> None:
    """Re-weighting towards high-error pixels can only raise the weighted mean error."""
    model, batch = _model(), _defect_only_batch()
    uniform, _ = _loss(model, batch, LossSwitches(True, False, 0.0))
    adaptive, _ = _loss(model, batch, LossSwitches(True, False, 1.0))
    assert adaptive > uniform


def test_disentangling_without_masked_loss_is_rejected() -> None:
    with pytest.raises(InvalidInputError, match="masked_loss"):
        LossSwitches(masked_loss=False, background_disentangle=True)


# ----------------------------------------------------------------- training
def test_training_runs_to_max_steps_and_leaves_ema_weights() -> None:
    model = _model()
    before = [p.detach().clone() for p in model.parameters()]
    report = train_denoiser(model, _source(), _settings(), generator=torch.Generator().manual_seed(0))
    assert report.steps == 3 and not model.training
    assert any(not torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))


def test_time_budget_stops_training() -> None:
    report = train_denoiser(_model(), _source(), _settings(max_steps=None, max_minutes=0.0))
    assert report.steps == 0


def test_progress_total_follows_the_time_budget_when_it_binds() -> None:
    """The bar's total (and so its ETA) was max_steps even when the time budget would end the fit far earlier."""
    timed = _settings(max_steps=4000, max_minutes=9.0)
    assert expected_total_steps(timed, step=100, elapsed=108.0) == 500  # 1.08 s/step over 540 s
    assert expected_total_steps(timed, step=100, elapsed=1.0) == 4000  # max_steps binds
    assert expected_total_steps(_settings(max_steps=None, max_minutes=1.0), step=10, elapsed=30.0) == 20
    assert expected_total_steps(timed, step=0, elapsed=0.0) == 4000


def test_progress_bar_is_given_the_expected_total(monkeypatch: pytest.MonkeyPatch) -> None:
    from anomaly_synth_aug.generators.diffusion import training

    totals: list[int | None] = []

    class RecordingBar(training.tqdm):  # type: ignore[misc, valid-type]
        def update(self, n: float = 1) -> bool | None:
            totals.append(self.total)
            return super().update(n)

    monkeypatch.setattr(training, "tqdm", RecordingBar)
    train_denoiser(_model(), _source(), _settings(max_steps=3, max_minutes=60.0, progress=True))
    assert len(totals) == 3 and all(total == 3 for total in totals)  # fast steps: max_steps binds


def test_settings_need_a_budget() -> None:
    with pytest.raises(InvalidInputError, match="budget"):
        TrainingSettings(max_steps=None, max_minutes=None)


def test_resumed_training_equals_uninterrupted_training(tmp_path: Path) -> None:
    straight = _model()
    train_denoiser(straight, _source(), _settings(max_steps=4), generator=torch.Generator().manual_seed(5))

    resumed = _model()
    settings = _settings(max_steps=2, checkpoint_dir=tmp_path)
    train_denoiser(resumed, _source(), settings, generator=torch.Generator().manual_seed(5))
    resumed = _model()  # a fresh process: weights come only from the checkpoint
    report = train_denoiser(
        resumed, _source(), _settings(max_steps=4, checkpoint_dir=tmp_path), generator=torch.Generator()
    )
    assert report.resumed_from_step == 2 and report.steps == 4
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_interrupt_saves_progress_and_reraises(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    source = _source()
    draw = source.draw
    calls = {"n": 0}

    def interrupted(*args: object, **kwargs: object) -> PatchBatch:
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return draw(*args, **kwargs)

    monkeypatch.setattr(source, "draw", interrupted)
    with pytest.raises(KeyboardInterrupt):
        train_denoiser(_model(), source, _settings(max_steps=10, checkpoint_dir=tmp_path))
    state = TrainingCheckpoint(tmp_path, {}).load()
    assert state["step"] == 2


def test_a_step_interrupted_after_its_draw_is_drawn_again_on_resume(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The random state was saved after the cut step's batch was drawn, with the weights from before it: the
    resumed fit drew that step from an advanced stream and ended elsewhere than an uninterrupted one."""
    import anomaly_synth_aug.generators.diffusion.training as training

    straight = _model()
    train_denoiser(straight, _source(), _settings(max_steps=4), generator=torch.Generator().manual_seed(5))
    loss = training.training_loss
    calls = {"n": 0}

    def cut_after_the_draw(*args: object, **kwargs: object):
        result = loss(*args, **kwargs)  # this step's batch and noise are drawn
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return result

    monkeypatch.setattr(training, "training_loss", cut_after_the_draw)
    with pytest.raises(KeyboardInterrupt):
        settings = _settings(max_steps=4, checkpoint_dir=tmp_path)
        train_denoiser(_model(), _source(), settings, generator=torch.Generator().manual_seed(5))
    monkeypatch.setattr(training, "training_loss", loss)
    resumed = _model()
    report = train_denoiser(resumed, _source(), _settings(max_steps=4, checkpoint_dir=tmp_path))
    assert report.resumed_from_step == 2 and report.steps == 4
    for a, b in zip(straight.parameters(), resumed.parameters(), strict=True):
        assert torch.allclose(a, b, atol=1e-6)


def test_a_ctrl_c_during_the_update_is_held_until_the_step_is_whole() -> None:
    """Between optimizer.step() and the step count, a Ctrl-C saved weights one step ahead of their count."""
    import os
    import signal

    from anomaly_synth_aug.generators.diffusion.training import interrupt_after_block

    finished = []
    with pytest.raises(KeyboardInterrupt):
        with interrupt_after_block():
            os.kill(os.getpid(), signal.SIGINT)
            finished.append("update")
    assert finished == ["update"] and signal.getsignal(signal.SIGINT) is signal.default_int_handler


def test_a_checkpoint_past_the_step_budget_is_refused_not_returned(tmp_path: Path) -> None:
    """max_steps=2 over a 3-step checkpoint returned the 3-step weights, reported as steps=3."""
    train_denoiser(_model(), _source(), _settings(max_steps=3, checkpoint_dir=tmp_path))
    with pytest.raises(CheckpointMismatchError, match="at step 3, past this fit's max_steps=2"):
        train_denoiser(_model(), _source(), _settings(max_steps=2, checkpoint_dir=tmp_path))
    assert train_denoiser(_model(), _source(), _settings(max_steps=3, checkpoint_dir=tmp_path)).steps == 3


def test_a_checkpoint_with_windows_is_not_resumed_by_a_fit_without_them(tmp_path: Path) -> None:
    """An identity leaves window_scale out while it is None: a windowed checkpoint resumed a fit without windows."""
    windowed = {"category": "a", "window_scale": 1.0, "max_windows": 8}
    train_denoiser(_model(), _source(), _settings(max_steps=1, checkpoint_dir=tmp_path), identity=windowed)
    with pytest.raises(CheckpointMismatchError, match="window_scale: checkpoint has 1.0, this fit has None"):
        train_denoiser(_model(), _source(), _settings(max_steps=2, checkpoint_dir=tmp_path), identity={"category": "a"})


def test_checkpoint_of_another_setup_is_refused(tmp_path: Path) -> None:
    train_denoiser(_model(), _source(), _settings(max_steps=1, checkpoint_dir=tmp_path), identity={"category": "a"})
    with pytest.raises(CheckpointMismatchError, match="category"):
        train_denoiser(_model(), _source(), _settings(max_steps=2, checkpoint_dir=tmp_path), identity={"category": "b"})

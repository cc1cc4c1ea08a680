"""Training the denoiser from scratch on few-shot defect patches and normal patches, on CPU, within a budget.

Each batch (``patch_source.PatchSource``) mixes defect patches cut around each shot's mask,
labelled with their type's token only (SeaS decoupled anomaly alignment), and normal patches at
the same scales with the NORMAL token, trained on the whole patch (SeaS normal alignment).

The loss combines the mechanisms in ``losses.py`` (masked defect loss, adaptive
mask re-weighting, background disentanglement), each switchable in
``TrainingSettings``. Training is resumable: the full state is checkpointed to
``checkpoint_dir`` periodically, on Ctrl-C and at the end, and a new ``fit``
with the same folder continues where it stopped.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from diffusers import DDPMScheduler
from diffusers.optimization import get_scheduler
from diffusers.training_utils import EMAModel
from tqdm.auto import tqdm

from anomaly_synth_aug.errors import CheckpointMismatchError, InvalidInputError
from anomaly_synth_aug.generators.diffusion.losses import (
    adaptive_mask_weights,
    background_disentangled_loss,
    denoising_loss,
    mask_out_defect,
    masked_denoising_loss,
)
from anomaly_synth_aug.generators.diffusion.model import NORMAL_TOKEN, DefectDenoiser
from anomaly_synth_aug.generators.diffusion.patch_source import PatchBatch, PatchSource
from anomaly_synth_aug.generators.diffusion.training_checkpoint import (
    TrainingCheckpoint,
)

logger = logging.getLogger(__name__)



def make_noise_scheduler(num_train_timesteps: int = 1000) -> DDPMScheduler:
    """The training noise schedule; cosine betas suit small patches (linear betas destroy them too early)."""
    return DDPMScheduler(
        num_train_timesteps=num_train_timesteps,
        beta_schedule="squaredcos_cap_v2",
        prediction_type="epsilon",
        clip_sample=True,
    )


@dataclass
class LossSwitches:
    """Which training mechanisms are on (each maps to a paper mechanism; see ``losses.py``)."""

    masked_loss: bool = True
    background_disentangle: bool = True
    adaptive_weighting: float = 1.0  # strength; 0 disables the re-weighting

    def __post_init__(self) -> None:
        if self.background_disentangle and not self.masked_loss:
            raise InvalidInputError(
                "background_disentangle needs masked_loss: its defect term is the masked loss",
                fix="set masked_loss=True, or background_disentangle=False",
            )
        if self.adaptive_weighting < 0:
            raise InvalidInputError(
                f"adaptive_weighting must be >= 0, got {self.adaptive_weighting}", fix="use 0 (off) or e.g. 1.0"
            )


def to_model_space(images: torch.Tensor) -> torch.Tensor:
    """[0, 1] -> [-1, 1], the range the noise schedule assumes."""
    return images * 2.0 - 1.0


def masked_context(x0: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The conditioning image: the clean patch with the mask region blanked (0 in model space)."""
    return x0 * (1.0 - mask.to(x0.dtype))


def training_loss(
    model: DefectDenoiser,
    noise_scheduler: DDPMScheduler,
    batch: PatchBatch,
    switches: LossSwitches,
    generator: torch.Generator | None = None,
    x0: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, float]]:
    """The combined loss of one batch, in ONE UNet call.

    Normal patches: whole-patch noise loss with the normal token. Defect patches:
    masked (optionally adaptively weighted) loss with their type token, plus — with
    ``background_disentangle`` — the background loss on the defect-masked-out input
    with the normal token (those extra rows are appended to the same UNet batch).
    ``x0`` may be passed (model space) so tests can differentiate w.r.t. the input.
    """
    x0 = to_model_space(batch.images) if x0 is None else x0
    mask = batch.masks.to(x0.dtype)
    context = masked_context(x0, mask)
    noise = torch.randn(x0.shape, generator=generator)
    steps = torch.randint(noise_scheduler.config.num_train_timesteps, (x0.shape[0],), generator=generator)
    noisy = noise_scheduler.add_noise(x0, noise, steps)
    tokens = model.token(batch.tokens)
    defect = batch.is_defect
    n_defect = int(defect.sum())

    inputs = [noisy, context, mask, steps, tokens]
    if switches.background_disentangle and n_defect:
        replacement = torch.randn(noisy[defect].shape, generator=generator)
        blind = mask_out_defect(noisy[defect], mask[defect], replacement)
        normal_tokens = model.token(torch.full((n_defect,), NORMAL_TOKEN))
        extra = [blind, context[defect], mask[defect], steps[defect], normal_tokens]
        inputs = [torch.cat([a, b]) for a, b in zip(inputs, extra, strict=True)]
    prediction = model(*inputs)
    main, background = prediction[: x0.shape[0]], prediction[x0.shape[0] :]

    parts: dict[str, float] = {}
    total = x0.new_zeros(())
    if n_defect:
        pred_d, noise_d, mask_d = main[defect], noise[defect], mask[defect]
        weights = (
            adaptive_mask_weights(pred_d, noise_d, mask_d, switches.adaptive_weighting)
            if switches.masked_loss and switches.adaptive_weighting > 0
            else None
        )
        if switches.background_disentangle:
            defect_loss = background_disentangled_loss(noise_d, pred_d, background, mask_d, weights)
        elif switches.masked_loss:
            defect_loss = masked_denoising_loss(pred_d, noise_d, mask_d, weights)
        else:
            defect_loss = denoising_loss(pred_d, noise_d)
        total = total + defect_loss * n_defect / x0.shape[0]
        parts["defect"] = float(defect_loss.detach())
    if n_defect < x0.shape[0]:
        normal_loss = denoising_loss(main[~defect], noise[~defect])
        total = total + normal_loss * (x0.shape[0] - n_defect) / x0.shape[0]
        parts["normal"] = float(normal_loss.detach())
    return total, parts


@dataclass
class TrainingSettings:
    """Budget and optimisation settings. Training stops at ``max_steps`` or ``max_minutes``, whichever comes first."""

    max_steps: int | None = 2000
    max_minutes: float | None = 9.0
    batch_size: int = 32
    learning_rate: float = 1e-3
    warmup_steps: int = 50
    normal_fraction: float = 0.25
    ema_power: float = 0.75
    checkpoint_dir: Path | None = None
    checkpoint_every_minutes: float = 2.0
    progress: bool = True
    switches: LossSwitches = field(default_factory=LossSwitches)

    def __post_init__(self) -> None:
        if self.max_steps is None and self.max_minutes is None:
            raise InvalidInputError(
                "training has no budget: max_steps and max_minutes are both None", fix="set at least one of them"
            )
        if self.max_steps is not None and self.max_steps < 0:
            raise InvalidInputError(f"max_steps must be >= 0, got {self.max_steps}", fix="use e.g. 2000")
        if not 0.0 <= self.normal_fraction < 1.0:
            raise InvalidInputError(
                f"normal_fraction must be in [0, 1), got {self.normal_fraction}", fix="use e.g. 0.25"
            )


@dataclass
class TrainingReport:
    """What a ``train_denoiser`` call did (cumulative over resumed sessions)."""

    steps: int
    seconds: float
    last_loss: float
    resumed_from_step: int = 0


def expected_total_steps(settings: TrainingSettings, step: int, elapsed: float) -> int | None:
    """Steps the fit will end at: ``max_steps``, or fewer when, at the pace so far, ``max_minutes`` ends it first."""
    if settings.max_minutes is None or step <= 0 or elapsed <= 0:
        return settings.max_steps
    by_time = max(step, math.ceil(step * settings.max_minutes * 60.0 / elapsed))
    return by_time if settings.max_steps is None else min(settings.max_steps, by_time)


@contextmanager
def interrupt_after_block() -> Iterator[None]:
    """Hold a Ctrl-C (SIGINT) until the block has run, then raise it.

    A ``KeyboardInterrupt`` between ``optimizer.step()`` and the step count would save weights one
    step ahead of their count. Only the main thread receives signals; elsewhere the block runs as is.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: received.append(signum))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        raise KeyboardInterrupt


def train_denoiser(
    model: DefectDenoiser,
    source: PatchSource,
    settings: TrainingSettings,
    *,
    noise_scheduler: DDPMScheduler | None = None,
    generator: torch.Generator | None = None,
    identity: dict[str, Any] | None = None,
) -> TrainingReport:
    """Train ``model`` in place; on return it holds the EMA weights (what sampling should use)."""
    noise_scheduler = noise_scheduler or make_noise_scheduler()
    generator = generator or torch.Generator().manual_seed(int(torch.randint(2**62, ()).item()))
    optimizer = torch.optim.AdamW(model.parameters(), lr=settings.learning_rate, weight_decay=0.0)
    lr_schedule = get_scheduler("constant_with_warmup", optimizer, num_warmup_steps=settings.warmup_steps)
    ema = EMAModel(model.parameters(), decay=0.9995, use_ema_warmup=True, power=settings.ema_power, foreach=True)
    checkpoint = TrainingCheckpoint(settings.checkpoint_dir, identity or {}) if settings.checkpoint_dir else None

    step, elapsed, last_loss = 0, 0.0, math.nan
    if checkpoint is not None and checkpoint.exists():
        state = checkpoint.load()
        saved_step = int(state["step"])
        if settings.max_steps is not None and saved_step > settings.max_steps:
            raise CheckpointMismatchError(
                f"{checkpoint.directory}: the training checkpoint is at step {saved_step}, past this fit's "
                f"max_steps={settings.max_steps}; its weights would be returned as a {settings.max_steps}-step fit. "
                f"Fix: set max_steps to at least {saved_step}, or point checkpoint_dir to a fresh folder."
            )
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        lr_schedule.load_state_dict(state["lr_schedule"])
        ema.load_state_dict(state["ema"])
        generator.set_state(state["generator"])
        step, elapsed, last_loss = int(state["step"]), float(state["elapsed"]), float(state["loss"])
        logger.info("Resuming diffusion training from %s at step %d", checkpoint.directory, step)
    resumed_from = step

    #: the random state before the step under way: a step cut short is drawn again, the same way, on resume
    step_start_rng: torch.Tensor | None = None

    def snapshot() -> dict[str, Any]:
        return {
            "model": model.state_dict(),
            "optimizer": optimizer.state_dict(),
            "lr_schedule": lr_schedule.state_dict(),
            "ema": ema.state_dict(),
            "generator": generator.get_state() if step_start_rng is None else step_start_rng,
            "step": step,
            "elapsed": elapsed,
            "loss": last_loss,
        }

    def budget_left() -> bool:
        steps_ok = settings.max_steps is None or step < settings.max_steps
        time_ok = settings.max_minutes is None or elapsed < settings.max_minutes * 60.0
        return steps_ok and time_ok

    model.train()
    started = time.monotonic() - elapsed
    last_save = time.monotonic()
    bar = tqdm(total=settings.max_steps, initial=step, desc="diffusion fit", unit="step", disable=not settings.progress)
    try:
        while budget_left():
            step_start_rng = generator.get_state()
            batch = source.draw(settings.batch_size, settings.normal_fraction, generator)
            loss, _ = training_loss(model, noise_scheduler, batch, settings.switches, generator)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            with interrupt_after_block():  # the update is taken whole: weights, schedule, EMA and count agree
                optimizer.step()
                lr_schedule.step()
                ema.step(model.parameters())
                step += 1
                step_start_rng = None
            elapsed = time.monotonic() - started
            value = float(loss.detach())
            last_loss = value if math.isnan(last_loss) else 0.95 * last_loss + 0.05 * value
            bar.total = expected_total_steps(settings, step, elapsed)  # so the bar's ETA follows the time budget
            bar.update(1)
            bar.set_postfix(loss=f"{last_loss:.4f}", minutes=f"{elapsed / 60:.1f}", refresh=False)
            if checkpoint is not None and time.monotonic() - last_save > settings.checkpoint_every_minutes * 60:
                checkpoint.save(snapshot())
                last_save = time.monotonic()
    except KeyboardInterrupt:
        if checkpoint is not None:
            checkpoint.save(snapshot())
            logger.warning("Interrupted at step %d; state saved to %s (fit again to resume)", step, checkpoint.directory)
        raise
    finally:
        bar.close()
    if checkpoint is not None and step > resumed_from:
        checkpoint.save(snapshot())
    ema.copy_to(model.parameters())
    model.eval()
    return TrainingReport(steps=step, seconds=elapsed, last_loss=last_loss, resumed_from_step=resumed_from)

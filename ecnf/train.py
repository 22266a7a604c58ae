"""The training loop: ``fit(config, callbacks)``, used by the CLI, the studio, notebooks, demo.

Reads top to bottom: set up (device, distributed, resume or start afresh: see
:func:`ecnf._run.start_run`), then per step draw a pair of noise and data, take the optimiser
step (loss, backward, clipping, AdamW, EMA), and now and then log, preview and checkpoint.
Stopping (Ctrl-C, SIGTERM or a callback) saves the full state; resuming restores model, EMA,
optimizer, step, data order and every random generator, so a resumed run continues exactly
as if it had never stopped.

Multi-GPU and multi-node: launch the same command with ``torchrun``; each process trains on
its share of the global batch and DDP averages gradients. Rank 0 logs and saves.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn

from ._run import CHECKPOINT_NAME, LOG_NAME, PREVIEW_SOLVER, Run, TrainingDiverged, start_run
from .callbacks import Callback
from .checkpoint import Checkpoint, read_checkpoint
from .config import TrainConfig, default_model_config
from .data import dataset_shape
from .ema import EMA

__all__ = [
    "CHECKPOINT_NAME",
    "LOG_NAME",
    "PREVIEW_SOLVER",
    "FitResult",
    "TrainingDiverged",
    "fit",
    "resolve_device",
]


@dataclass
class FitResult:
    """What :func:`fit` returns: the trained model and EMA, where and why it ended."""

    model: nn.Module
    ema: EMA
    step: int
    reason: str
    checkpoint: Path | None
    history: list[dict] = field(default_factory=list)
    wall_time_s: float = 0.0


def resolve_device(name: str = "auto") -> torch.device:
    """``auto`` picks CUDA when available (the local rank's GPU under torchrun), else CPU."""
    if name == "auto":
        if torch.cuda.is_available():
            return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))
        return torch.device("cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={name!r} but CUDA is not available; use device='cpu'")
    return device


def _setup_distributed(device: torch.device) -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return dist.get_rank(), dist.get_world_size()


def _checkpoint_to_resume(
    config: TrainConfig, resume: bool | str | Path, overwrite: bool
) -> tuple[TrainConfig, Checkpoint | None]:
    """The checkpoint a run continues (its model config wins), or ``None`` for a fresh run."""
    ckpt_path = Path(config.out_dir) / CHECKPOINT_NAME
    if not resume:
        if ckpt_path.exists() and not overwrite:
            raise ValueError(
                f"{ckpt_path} already exists; resume it (resume=True / --resume), pass "
                "overwrite=True, or choose another out_dir"
            )
        return config, None
    src = ckpt_path if resume is True else Path(resume)
    if not src.exists():
        raise FileNotFoundError(f"cannot resume: no checkpoint at {src}")
    ck = read_checkpoint(src)
    saved = TrainConfig.from_dict(ck.train_state["config"])
    if saved.data != config.data:
        raise ValueError(f"cannot resume a {saved.data!r} run on data={config.data!r}")
    return config.replace(model=saved.model), ck


def _with_model(config: TrainConfig) -> tuple[TrainConfig, tuple[int, ...]]:
    """``config`` with its network set (a default for the data's shape), and that shape."""
    shape = dataset_shape(config.data, image_size=config.image_size, channels=config.channels)
    model_config = config.model or default_model_config(shape)
    if tuple(model_config.data_shape) != tuple(shape):
        raise ValueError(
            f"model data_shape {tuple(model_config.data_shape)} does not match the data's "
            f"shape {shape} for data={config.data!r}"
        )
    return config.replace(model=model_config), shape


@contextlib.contextmanager
def _stop_requests() -> Iterator[threading.Event]:
    """An event set by Ctrl-C or SIGTERM (e.g. a preempted job), so that the run stops at the
    end of the current step with a consistent state; a second Ctrl-C interrupts at once.
    Signal handlers can only be installed from the main thread; elsewhere (the studio's
    training threads) the event is never set and callbacks stop the run instead."""
    requested = threading.Event()

    def on_signal(signum, frame):
        if requested.is_set():
            raise KeyboardInterrupt
        requested.set()

    in_main_thread = threading.current_thread() is threading.main_thread()
    signals = (signal.SIGINT, signal.SIGTERM) if in_main_thread else ()
    old = {s: signal.signal(s, on_signal) for s in signals}
    try:
        yield requested
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)


class _Meter:
    """Sums of the loss and its terms since the last log record, and the record itself."""

    def __init__(self, run: Run) -> None:
        self.loss_sum = torch.zeros((), device=run.device)
        self.term_sums: dict[str, Tensor] = {}
        self.reset(run.step)

    def add(self, loss: Tensor, terms: dict[str, Tensor]) -> None:
        self.loss_sum += loss
        for k, v in terms.items():
            self.term_sums[k] = self.term_sums.get(k, 0.0) + v

    def mean_loss(self, step: int) -> float:
        return float(self.loss_sum) / max(step - self.step, 1)

    def record(self, run: Run, mean_loss: float) -> dict:
        n, now = run.step - self.step, time.perf_counter()
        rate = n / max(now - self.time, 1e-9)
        return {
            "step": run.step,
            "loss": mean_loss,
            **{k: float(v) / n for k, v in self.term_sums.items()},
            "lr": run.optimizer.param_groups[0]["lr"],
            "grad_norm": float(run.grad_norm),
            "steps_per_s": rate,
            "samples_per_s": rate * run.batch,
            "elapsed_s": run.elapsed(),
            "eta_s": (run.config.iterations - run.step) / max(rate, 1e-9),
        }

    def reset(self, step: int) -> None:
        self.loss_sum.zero_()
        self.term_sums.clear()
        self.time, self.step = time.perf_counter(), step


def _should_stop(run: Run, interrupted: threading.Event, callbacks: Sequence[Callback]) -> bool:
    """A stop asked for on any process (Ctrl-C, a callback) stops every process."""
    stop = interrupted.is_set() or (run.main and any(cb.should_stop() for cb in callbacks))
    if run.world > 1:
        flag = torch.tensor([float(stop)], device=run.device)
        dist.all_reduce(flag)
        stop = bool(flag.item())
    return stop


def fit(
    config: TrainConfig,
    callbacks: Sequence[Callback] = (),
    *,
    resume: bool | str | Path = False,
    overwrite: bool = False,
    command: str | None = None,
) -> FitResult:
    """Train a velocity network as ``config`` describes.

    Arguments:
        config: the run's :class:`~ecnf.config.TrainConfig`.
        callbacks: progress, previews and stop requests (see :class:`~ecnf.callbacks.Callback`).
        resume: ``True`` continues the checkpoint in ``config.out_dir``; a path continues
            that checkpoint. ``config.iterations`` may be raised to train longer.
        overwrite: allow a fresh run to replace a checkpoint already in ``out_dir``.
        command: the command line that started the run, recorded in the checkpoint.

    Returns:
        A :class:`FitResult`. A run stopped by a callback or Ctrl-C returns normally with
        ``reason`` ``stopped`` or ``interrupted`` after saving its state.

    Raises:
        TrainingDiverged: the loss became NaN/inf or exceeded ``max_loss``; the last good
            checkpoint is kept untouched.
    """
    # ---- set up: device and processes, resume or start afresh, the whole run's state
    device = resolve_device(config.device)
    rank, world = _setup_distributed(device)
    config, ck = _checkpoint_to_resume(config, resume, overwrite)
    config, shape = _with_model(config)
    run = start_run(config, ck, device=device, rank=rank, world=world, shape=shape, command=command)
    if run.main:
        Path(config.out_dir).mkdir(parents=True, exist_ok=True)
        for cb in callbacks:
            cb.on_start(run.step, config.iterations)

    # ---- train
    reason, saved_path = "completed", None
    run.t_start = time.perf_counter()
    meter = _Meter(run)
    run.model.train()
    with _stop_requests() as interrupted:
        try:
            while run.step < config.iterations:
                run.set_learning_rate()
                meter.add(*run.optimise(*run.next_pair()))
                step = run.step

                is_log = step % config.log_every == 0 or step == config.iterations
                is_ckpt = step % config.checkpoint_every == 0
                if is_log or is_ckpt:  # the check a GPU skips in each step
                    mean_loss = meter.mean_loss(step)
                    if not math.isfinite(mean_loss) or mean_loss > config.max_loss:
                        raise run.diverged(mean_loss)
                if is_log and run.main:
                    record = meter.record(run, mean_loss)
                    run.history.append(record)
                    with run.log_path.open("a") as f:
                        f.write(json.dumps(record) + "\n")
                    for cb in callbacks:
                        cb.on_log(record)
                if is_log:
                    meter.reset(step)
                if run.main and config.sample_every and step % config.sample_every == 0:
                    samples, times, states = run.preview()
                    for cb in callbacks:
                        cb.on_preview(step, samples)
                        cb.on_preview_trajectory(step, times, states)
                if is_ckpt and step < config.iterations:
                    saved_path = run.save("running", callbacks)
                if run.main:
                    for cb in callbacks:
                        cb.on_step(step)
                if _should_stop(run, interrupted, callbacks) and step < config.iterations:
                    reason = "interrupted" if interrupted.is_set() else "stopped"
                    break
        except KeyboardInterrupt:
            reason = "interrupted"
        except TrainingDiverged:
            if run.main:
                for cb in callbacks:
                    cb.on_end(run.step, "diverged")
            raise
        finally:
            if run.pairs is not None:
                run.pairs.close()

    # ---- save and hand back
    saved_path = run.save(reason, callbacks)
    if world > 1:  # no rank leaves (and tears down the group) while rank 0 still writes
        dist.barrier()
    wall_time = run.elapsed()
    if run.main:
        for cb in callbacks:
            cb.on_end(run.step, reason)
    run.model.eval()
    return FitResult(run.model, run.ema, run.step, reason, saved_path, run.history, wall_time)

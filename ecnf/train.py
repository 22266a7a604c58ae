"""The training loop: ``fit(config, callbacks)``, used by the CLI, the studio, notebooks, demo.

Reads top to bottom: set up (device, distributed, data, model, EMA, optimizer, maybe resume),
then per step draw data and noise, compute the loss, guard against divergence, step AdamW,
update the EMA, and now and then log, preview and checkpoint. Stopping (Ctrl-C or a
callback) saves the full state; resuming restores model, EMA, optimizer, step, data order and
every random generator, so a resumed run continues exactly as if it had never stopped.

Multi-GPU and multi-node: launch the same command with ``torchrun``; each process trains on
its share of the global batch and DDP averages gradients. Rank 0 logs and saves.
"""

from __future__ import annotations

import json
import math
import os
import platform
import signal
import threading
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .callbacks import Callback
from .checkpoint import load, read_checkpoint, save_checkpoint
from .config import TrainConfig, default_model_config, learning_rate
from .data import DataStream, dataset_shape, make_stream
from .ema import EMA
from .losses import compute_loss, make_reflow_pairs
from .nets import build_model, config_to_dict
from .prefetch import CoupledBatches
from .solvers import integrate

__all__ = [
    "CHECKPOINT_NAME",
    "LOG_NAME",
    "PREVIEW_SOLVER",
    "FitResult",
    "TrainingDiverged",
    "fit",
    "resolve_device",
]

#: ``(method, steps)`` that :func:`fit` samples its previews with (from fixed noise).
PREVIEW_SOLVER = ("rk4", 10)

CHECKPOINT_NAME = "checkpoint.safetensors"
LOG_NAME = "metrics.jsonl"


class TrainingDiverged(RuntimeError):
    """The loss became NaN, infinite or larger than ``max_loss``."""


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


def _gather(obj, world: int) -> list:
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _init_from(model: nn.Module, ema: EMA, path: str, model_config, device) -> None:
    """Copies a checkpoint's weights (EMA when present) into a fresh model and its EMA."""
    source = load(path, device=device)
    theirs, ours = (
        json.loads(json.dumps(config_to_dict(c))) for c in (source.config, model_config)
    )
    if theirs != ours:
        raise ValueError(f"init checkpoint {path} holds another architecture: {theirs}, not {ours}")
    model.load_state_dict(source.state_dict())
    ema.model.load_state_dict(source.state_dict())


def _autocast(config: TrainConfig, device: torch.device):
    precision = config.precision
    if precision == "auto":
        precision = "bf16" if device.type == "cuda" else "fp32"
    if precision == "fp32":
        return nullcontext(), None
    dtype = torch.bfloat16 if precision == "bf16" else torch.float16
    scaler = torch.amp.GradScaler(device.type) if precision == "fp16" else None
    return torch.autocast(device.type, dtype=dtype), scaler


def _versions() -> dict:
    from . import __version__

    return {"ecnf": __version__, "torch": torch.__version__, "python": platform.python_version()}


def _hardware(device: torch.device, world: int) -> str:
    if device.type == "cuda":
        name = torch.cuda.get_device_name(device)
    else:
        threads = torch.get_num_threads()
        name = f"CPU ({os.cpu_count()} cores, {platform.machine()}, {threads} torch threads)"
    return f"{world} x {name}" if world > 1 else name


def _rng_state(gen: torch.Generator) -> dict:
    state = {"gen": gen.get_state().tolist(), "torch": torch.get_rng_state().tolist()}
    if torch.cuda.is_available():
        state["cuda"] = [s.tolist() for s in torch.cuda.get_rng_state_all()]
    return state


def _set_rng_state(gen: torch.Generator, state: dict) -> None:
    gen.set_state(torch.tensor(state["gen"], dtype=torch.uint8))
    torch.set_rng_state(torch.tensor(state["torch"], dtype=torch.uint8))
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all([torch.tensor(s, dtype=torch.uint8) for s in state["cuda"]])


def _coupled_batches(config, target, source, batch, device, rank, ck) -> CoupledBatches:
    """Batches paired by minibatch OT, solved ``config.ot_workers`` batches ahead.

    The noise of these batches has its own generator (saved as ``pairs_rng``), so drawing
    ahead does not shift the random times of the steps in between.
    """
    pair_gen = torch.Generator(device=device)
    pair_gen.manual_seed(config.seed * 7919 + rank + 104_729)
    saved = ck.train_state["streams"][rank] if ck is not None else {}
    if "pairs_rng" in saved:
        pair_gen.set_state(torch.tensor(saved["pairs_rng"], dtype=torch.uint8))

    def draw_pair() -> tuple[Tensor, Tensor]:
        x1 = target.next_batch(batch).to(device, non_blocking=True)
        if source is not None:
            return source.next_batch(batch).to(device, non_blocking=True), x1
        return torch.randn(x1.shape, generator=pair_gen, device=device), x1

    def data_state() -> dict:
        return {
            "target": target.state_dict(),
            "source": None if source is None else source.state_dict(),
            "pairs_rng": pair_gen.get_state(),
        }

    return CoupledBatches(draw_pair, data_state, workers=config.ot_workers)


def _truncate_log(path: Path, step: int) -> list[dict]:
    """Keep the log records up to ``step`` (a resumed run rewrites what came after)."""
    if not path.exists():
        return []
    kept = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    kept = [r for r in kept if r.get("step", 0) <= step]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return kept


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
            that checkpoint. ``config.steps`` may be raised to train longer.
        overwrite: allow a fresh run to replace a checkpoint already in ``out_dir``.
        command: the command line that started the run, recorded in the checkpoint.

    Returns:
        A :class:`FitResult`. A run stopped by a callback or Ctrl-C returns normally with
        ``reason`` ``stopped`` or ``interrupted`` after saving its state.

    Raises:
        TrainingDiverged: the loss became NaN/inf or exceeded ``max_loss``; the last good
            checkpoint is kept untouched.
    """
    device = resolve_device(config.device)
    rank, world = _setup_distributed(device)
    main = rank == 0
    out_dir = Path(config.out_dir)
    ckpt_path = out_dir / CHECKPOINT_NAME
    log_path = out_dir / LOG_NAME

    # ---- resume: the checkpoint's model config wins; everything else may be changed
    ck = None
    if resume:
        src = ckpt_path if resume is True else Path(resume)
        if not src.exists():
            raise FileNotFoundError(f"cannot resume: no checkpoint at {src}")
        ck = read_checkpoint(src)
        saved = TrainConfig.from_dict(ck.train_state["config"])
        if saved.data != config.data:
            raise ValueError(f"cannot resume a {saved.data!r} run on data={config.data!r}")
        config = config.replace(model=saved.model)
    elif ckpt_path.exists() and not overwrite:
        raise ValueError(
            f"{ckpt_path} already exists; resume it (resume=True / --resume), pass "
            "overwrite=True, or choose another out_dir"
        )

    # ---- data, noise and model
    shape = dataset_shape(config.data, image_size=config.image_size, channels=config.channels)
    model_config = config.model or default_model_config(shape)
    if tuple(model_config.data_shape) != tuple(shape):
        raise ValueError(
            f"model data_shape {tuple(model_config.data_shape)} does not match the data's "
            f"shape {shape} for data={config.data!r}"
        )
    config = config.replace(model=model_config)
    batch = config.batch_size or (512 if device.type == "cuda" else 256)
    if batch % world:
        raise ValueError(f"batch_size={batch} must be divisible by the {world} processes")
    local_batch = batch // world

    stream_kw = {"rank": rank, "world_size": world}
    target: DataStream = make_stream(
        config.data,
        seed=config.seed,
        root=config.data_root,
        flip=config.flip,
        download=config.download and main,
        image_size=config.image_size,
        channels=config.channels,
        **stream_kw,
    )
    source = (
        make_stream(config.source, seed=config.seed + 1, **stream_kw) if len(shape) == 1 else None
    )
    gen = torch.Generator(device=device)
    gen.manual_seed(config.seed * 7919 + rank + 1)
    teacher = None
    if config.loss.name == "reflow":
        teacher = load(config.teacher, device=device)
        if tuple(teacher.config.data_shape) != tuple(shape):
            raise ValueError(f"teacher {config.teacher} was trained on another data shape")

    torch.manual_seed(config.seed)  # identical initialisation on every rank
    model = build_model(model_config).to(device)
    ema = EMA(model, decay=config.ema_decay, warmup=config.ema_warmup)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=config.betas
    )
    step, wall_time, history = 0, 0.0, []
    first_command, resumed_with = command, []
    if ck is not None:
        first_command = ck.metadata.get("command") or command
        resumed_with = [*ck.metadata.get("resumed_with", []), command]
        model.load_state_dict(ck.model_state)
        ema.model.load_state_dict(ck.ema_state)
        ema._num_updates.fill_(ck.ema_updates or 0)
        optimizer.load_state_dict(ck.optimizer_state)
        ts = ck.train_state
        step, wall_time = ts["step"], ts.get("wall_time_s", 0.0)
        target.load_state_dict(ts["streams"][rank]["target"])
        if source is not None:
            source.load_state_dict(ts["streams"][rank]["source"])
        _set_rng_state(gen, ts["streams"][rank]["rng"])
        if main:
            history = _truncate_log(log_path, step)
    else:
        if config.init:
            _init_from(model, ema, config.init, model_config, device)
        if main and log_path.exists():
            log_path.unlink()
    for group in optimizer.param_groups:  # resumed runs take the (possibly new) lr settings
        group["lr"] = config.lr
        group["weight_decay"] = config.weight_decay
    pairs = None
    if config.loss.uses_ot and teacher is None:
        pairs = _coupled_batches(config, target, source, local_batch, device, rank, ck)
    train_model = model
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        train_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    autocast, scaler = _autocast(config, device)
    preview_noise = torch.randn(
        (config.num_preview, *shape), generator=torch.Generator().manual_seed(1234)
    )

    def save(reason: str) -> Path | None:
        nonlocal wall_time
        streams = {"target": target.state_dict(), "rng": _rng_state(gen)}
        if source is not None:
            streams["source"] = source.state_dict()
        if pairs is not None:  # the data state before the batches drawn ahead
            ahead = pairs.state_dict()
            streams.update(target=ahead["target"], pairs_rng=ahead["pairs_rng"].tolist())
            if source is not None:
                streams["source"] = ahead["source"]
        streams = _gather(streams, world)
        if not main:
            return None
        elapsed = wall_time + time.perf_counter() - t_start
        last = history[-1] if history else {}
        save_checkpoint(
            ckpt_path,
            model=model,
            ema=ema,
            optimizer=optimizer,
            train_state={
                "step": step,
                "config": config.to_dict(),
                "streams": streams,
                "wall_time_s": elapsed,
            },
            metadata={
                "dataset": config.data,
                "source": config.source if source is not None else "gaussian",
                "loss": config.loss.name,
                "model": config_to_dict(model_config),
                "steps": step,
                "batch_size": batch,
                "wall_time_s": round(elapsed, 2),
                "hardware": _hardware(device, world),
                "versions": _versions(),
                "command": first_command,
                "resumed_with": resumed_with,
                "status": reason,
                "final_loss": last.get("loss"),
            },
        )
        for cb in callbacks:
            cb.on_checkpoint(step, ckpt_path)
        return ckpt_path

    if main:
        out_dir.mkdir(parents=True, exist_ok=True)
        for cb in callbacks:
            cb.on_start(step, config.steps)
    t_start = time.perf_counter()
    t_log, step_log = t_start, step
    loss_sum = torch.zeros((), device=device)
    term_sums: dict[str, Tensor] = {}
    grad_norm = torch.zeros((), device=device)
    check_every_step = device.type == "cpu"
    reason, saved_path = "completed", None
    model.train()

    def diverged(value: float) -> TrainingDiverged:
        kept = (
            f"the last good checkpoint is {ckpt_path}"
            if ckpt_path.exists()
            else "no checkpoint was written yet"
        )
        return TrainingDiverged(
            f"training diverged at step {step}: loss = {value}; {kept}. "
            "Lower the learning rate, enable grad_clip or check the data for bad values."
        )

    # Ctrl-C (or SIGTERM, e.g. a preempted job) stops at the end of the current step, so the
    # saved state is consistent; a second one interrupts at once.
    interrupted = threading.Event()

    def on_sigint(signum, frame):
        if interrupted.is_set():
            raise KeyboardInterrupt
        interrupted.set()

    in_main_thread = threading.current_thread() is threading.main_thread()
    stop_signals = (signal.SIGINT, signal.SIGTERM)
    old_handlers = {s: signal.signal(s, on_sigint) for s in stop_signals} if in_main_thread else {}
    try:
        while step < config.steps:
            if config.warmup_steps or config.lr_schedule != "constant":
                lr = learning_rate(config, step)
                for group in optimizer.param_groups:
                    group["lr"] = lr
            if teacher is not None:
                x0 = torch.randn((local_batch, *shape), generator=gen, device=device)
                with autocast:
                    x0, x1 = make_reflow_pairs(
                        teacher, x0, method=config.teacher_method, steps=config.teacher_steps
                    )
                x1 = x1.float()
            elif pairs is not None:
                x0, x1 = pairs.next()
            else:
                x1 = target.next_batch(local_batch).to(device, non_blocking=True)
                if source is not None:
                    x0 = source.next_batch(local_batch).to(device, non_blocking=True)
                else:
                    x0 = torch.randn(x1.shape, generator=gen, device=device)
            with autocast:
                out = compute_loss(
                    config.loss,
                    train_model,
                    x0,
                    x1,
                    target=ema,
                    generator=gen,
                    paired=pairs is not None,
                )
            loss = out.loss.float()
            loss_value = loss.detach()
            bad = ~torch.isfinite(loss_value) | (loss_value > config.max_loss)
            if check_every_step and bool(bad):
                raise diverged(loss_value.item())
            optimizer.zero_grad(set_to_none=True)
            if scaler is not None:
                scaler.scale(loss).backward()
                scaler.unscale_(optimizer)
            else:
                loss.backward()
            if config.grad_clip is not None:
                grad_norm = nn.utils.clip_grad_norm_(model.parameters(), config.grad_clip)
            if scaler is not None:
                scaler.step(optimizer)
                scaler.update()
            else:
                optimizer.step()
            ema.update(model)
            step += 1
            loss_sum += loss_value
            for k, v in out.terms.items():
                term_sums[k] = term_sums.get(k, 0.0) + v.float()

            is_log = step % config.log_every == 0 or step == config.steps
            is_ckpt = step % config.checkpoint_every == 0
            if is_log or is_ckpt:
                n = step - step_log
                mean_loss = float(loss_sum) / max(n, 1)
                if not math.isfinite(mean_loss) or mean_loss > config.max_loss:
                    raise diverged(mean_loss)
            if is_log and main:
                now = time.perf_counter()
                rate = n / max(now - t_log, 1e-9)
                record = {
                    "step": step,
                    "loss": mean_loss,
                    **{k: float(v) / n for k, v in term_sums.items()},
                    "lr": optimizer.param_groups[0]["lr"],
                    "grad_norm": float(grad_norm),
                    "steps_per_s": rate,
                    "samples_per_s": rate * batch,
                    "elapsed_s": wall_time + now - t_start,
                    "eta_s": (config.steps - step) / max(rate, 1e-9),
                }
                history.append(record)
                with log_path.open("a") as f:
                    f.write(json.dumps(record) + "\n")
                for cb in callbacks:
                    cb.on_log(record)
            if is_log:
                loss_sum.zero_()
                term_sums.clear()
                t_log, step_log = time.perf_counter(), step
            if main and config.sample_every and step % config.sample_every == 0:
                method, steps = PREVIEW_SOLVER
                samples = integrate(ema, preview_noise.to(device), method=method, steps=steps).x
                for cb in callbacks:
                    cb.on_preview(step, samples.cpu())
            if is_ckpt and step < config.steps:
                saved_path = save("running")
            stop = interrupted.is_set() or (main and any(cb.should_stop() for cb in callbacks))
            if world > 1:
                flag = torch.tensor([float(stop)], device=device)
                dist.all_reduce(flag)
                stop = bool(flag.item())
            if stop and step < config.steps:
                reason = "interrupted" if interrupted.is_set() else "stopped"
                break
    except KeyboardInterrupt:
        reason = "interrupted"
    except TrainingDiverged:
        if main:
            for cb in callbacks:
                cb.on_end(step, "diverged")
        raise
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
        if pairs is not None:
            pairs.close()
    saved_path = save(reason)
    if world > 1:  # no rank leaves (and tears down the group) while rank 0 still writes
        dist.barrier()
    wall_time += time.perf_counter() - t_start
    if main:
        for cb in callbacks:
            cb.on_end(step, reason)
    model.eval()
    return FitResult(model, ema, step, reason, saved_path, history, wall_time)

"""One training run's state, as :func:`ecnf.train.fit` builds, steps and saves it.

:func:`start_run` sets everything up (data streams, noise generator, network, EMA, AdamW,
minibatch-OT prefetching, the reflow teacher) and, when resuming, restores all of it from a
checkpoint. :class:`Run` then does the parts of a training step: draw a pair, take the
optimiser step, sample a preview, save. Keeping that state in one object lets ``fit`` read
as a loop, with nothing read before it is assigned.
"""

from __future__ import annotations

import json
import os
import platform
import time
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
from torch import Tensor, nn

from .callbacks import Callback
from .checkpoint import Checkpoint, load, save_checkpoint
from .config import TrainConfig, learning_rate
from .data import DataStream, make_stream
from .ema import EMA
from .losses import compute_loss, make_reflow_pairs
from .nets import build_model, config_to_dict
from .prefetch import CoupledBatches
from .solvers import integrate

__all__ = [
    "CHECKPOINT_NAME",
    "LOG_NAME",
    "PREVIEW_FRAMES",
    "PREVIEW_SOLVER",
    "Run",
    "TrainingDiverged",
    "gather",
    "start_run",
]

#: ``(method, steps)`` that :func:`ecnf.fit` samples its previews with (from fixed noise).
PREVIEW_SOLVER = ("rk4", 10)
#: Grid times of each preview's trajectory handed to ``Callback.on_preview_trajectory``.
PREVIEW_FRAMES = 5
#: The files a run writes into its ``out_dir``.
CHECKPOINT_NAME, LOG_NAME = "checkpoint.safetensors", "metrics.jsonl"


class TrainingDiverged(RuntimeError):
    """The loss became NaN, infinite or larger than ``max_loss``."""


def gather(obj, world: int) -> list:
    """``obj`` from every process (a list of one without distributed training)."""
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def _autocast(precision: str, device: torch.device):
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


def _truncate_log(path: Path, step: int) -> list[dict]:
    """Keep the log records up to ``step`` (a resumed run rewrites what came after)."""
    if not path.exists():
        return []
    kept = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    kept = [r for r in kept if r.get("step", 0) <= step]
    path.write_text("".join(json.dumps(r) + "\n" for r in kept))
    return kept


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

    labelled = config.model.num_classes > 0

    def draw_pair() -> tuple[Tensor, ...]:
        x1, y = _next_data(target, batch, device, labelled)
        if source is not None:
            x0 = source.next_batch(batch).to(device, non_blocking=True)
        else:
            x0 = torch.randn(x1.shape, generator=pair_gen, device=device)
        return (x0, x1) if y is None else (x0, x1, y)

    def data_state() -> dict:
        return {
            "target": target.state_dict(),
            "source": None if source is None else source.state_dict(),
            "pairs_rng": pair_gen.get_state(),
        }

    return CoupledBatches(draw_pair, data_state, workers=config.ot_workers)


def _next_data(
    stream: DataStream, batch: int, device: torch.device, labelled: bool
) -> tuple[Tensor, Tensor | None]:
    """The next data batch on ``device``, with its labels when the network is conditional."""
    if not labelled:
        return stream.next_batch(batch).to(device, non_blocking=True), None
    x1, y = stream.next_labelled(batch)
    return x1.to(device, non_blocking=True), y.to(device, non_blocking=True)


@dataclass
class Run:
    """Everything a training run holds between steps (built by :func:`start_run`)."""

    config: TrainConfig
    device: torch.device
    rank: int
    world: int
    shape: tuple[int, ...]
    batch: int  # global batch; each process draws batch // world
    target: DataStream
    source: DataStream | None
    gen: torch.Generator  # noise and times of the steps
    model: nn.Module
    ema: EMA
    optimizer: torch.optim.Optimizer
    ckpt_path: Path
    log_path: Path
    teacher: nn.Module | None = None
    pairs: CoupledBatches | None = None
    step: int = 0
    wall_time: float = 0.0  # seconds trained before this call of fit
    history: list[dict] = field(default_factory=list)
    first_command: str | None = None
    resumed_with: list[str | None] = field(default_factory=list)
    grad_norm: Tensor | None = None
    t_start: float = field(default_factory=time.perf_counter)

    def __post_init__(self) -> None:
        self.train_model = self.model  # wrapped in DDP by start_run under torchrun
        self.autocast, self.scaler = _autocast(self.config.precision, self.device)
        self.grad_norm = torch.zeros((), device=self.device)
        self.preview_noise = torch.randn(
            (self.config.num_preview, *self.shape), generator=torch.Generator().manual_seed(1234)
        )

    @property
    def main(self) -> bool:
        """Whether this process logs and saves (rank 0)."""
        return self.rank == 0

    @property
    def local_batch(self) -> int:
        return self.batch // self.world

    def elapsed(self) -> float:
        """Training seconds of the whole run, earlier sessions included."""
        return self.wall_time + time.perf_counter() - self.t_start

    def diverged(self, value: float) -> TrainingDiverged:
        kept = (
            f"the last good checkpoint is {self.ckpt_path}"
            if self.ckpt_path.exists()
            else "no checkpoint was written yet"
        )
        return TrainingDiverged(
            f"training diverged at step {self.step}: loss = {value}; {kept}. "
            "Lower the learning rate, enable grad_clip or check the data for bad values."
        )

    # ---- one step

    def set_learning_rate(self) -> None:
        if self.config.warmup_iterations or self.config.lr_schedule != "constant":
            lr = learning_rate(self.config, self.step)
            for group in self.optimizer.param_groups:
                group["lr"] = lr

    def next_pair(self) -> tuple[Tensor, Tensor, Tensor | None]:
        """``(x0, x1, labels)`` of the next step: teacher pairs, OT-coupled, or independent;
        ``labels`` (the classes of ``x1``) only for a class-conditional network."""
        config, n, device = self.config, self.local_batch, self.device
        if self.teacher is not None:
            x0 = torch.randn((n, *self.shape), generator=self.gen, device=device)
            with self.autocast:
                x0, x1 = make_reflow_pairs(
                    self.teacher, x0, method=config.teacher_method, steps=config.teacher_steps
                )
            return x0, x1.float(), None
        if self.pairs is not None:
            pair = self.pairs.next()
            return (*pair, None) if len(pair) == 2 else pair
        x1, y = _next_data(self.target, n, device, config.model.num_classes > 0)
        if self.source is not None:
            return self.source.next_batch(n).to(device, non_blocking=True), x1, y
        return torch.randn(x1.shape, generator=self.gen, device=device), x1, y

    def optimise(
        self, x0: Tensor, x1: Tensor, labels: Tensor | None = None
    ) -> tuple[Tensor, dict[str, Tensor]]:
        """Loss, backward, clipping, AdamW and EMA on one pair; the loss and its terms."""
        config = self.config
        with self.autocast:
            out = compute_loss(
                config.loss,
                self.train_model,
                x0,
                x1,
                target=self.ema,
                generator=self.gen,
                paired=self.pairs is not None,
                labels=labels,
                cond_drop=config.cond_drop,
            )
        loss = out.loss.float()
        value = loss.detach()
        # on a CPU the check is free; on a GPU it would wait for the step, so the logged
        # means are checked instead
        if self.device.type == "cpu":
            bad = ~torch.isfinite(value) | (value > config.max_loss)
            if bool(bad):
                raise self.diverged(value.item())
        self.optimizer.zero_grad(set_to_none=True)
        if self.scaler is not None:
            self.scaler.scale(loss).backward()
            self.scaler.unscale_(self.optimizer)
        else:
            loss.backward()
        if config.grad_clip is not None:
            self.grad_norm = nn.utils.clip_grad_norm_(self.model.parameters(), config.grad_clip)
        if self.scaler is not None:
            self.scaler.step(self.optimizer)
            self.scaler.update()
        else:
            self.optimizer.step()
        self.ema.update(self.model)
        self.step += 1
        return value, {k: v.float() for k, v in out.terms.items()}

    def preview(self) -> tuple[Tensor, Tensor, Tensor]:
        """EMA samples from the fixed preview noise, with :data:`PREVIEW_SOLVER`, and the
        trajectory at :data:`PREVIEW_FRAMES` evenly spaced grid times: ``(samples, times,
        states)`` on the CPU, ``states`` of shape ``(PREVIEW_FRAMES, B, *dims)``."""
        method, steps = PREVIEW_SOLVER
        noise = self.preview_noise.to(self.device)
        sol = integrate(self.ema, noise, method=method, steps=steps, return_trajectory=True)
        shown = torch.linspace(0, steps, PREVIEW_FRAMES).round().long().unique()
        return sol.x.cpu(), sol.times[shown.to(sol.x.device)].cpu(), sol.trajectory[shown].cpu()

    # ---- saving

    def _stream_states(self) -> dict:
        streams = {"target": self.target.state_dict(), "rng": _rng_state(self.gen)}
        if self.source is not None:
            streams["source"] = self.source.state_dict()
        if self.pairs is not None:  # the data state before the batches drawn ahead
            ahead = self.pairs.state_dict()
            streams.update(target=ahead["target"], pairs_rng=ahead["pairs_rng"].tolist())
            if self.source is not None:
                streams["source"] = ahead["source"]
        return streams

    def save(self, reason: str, callbacks: Sequence[Callback]) -> Path | None:
        """Write the full state (every process's data position, on rank 0); its path."""
        streams = gather(self._stream_states(), self.world)
        if not self.main:
            return None
        config, elapsed = self.config, self.elapsed()
        last = self.history[-1] if self.history else {}
        save_checkpoint(
            self.ckpt_path,
            model=self.model,
            ema=self.ema,
            optimizer=self.optimizer,
            train_state={
                "step": self.step,
                "config": config.to_dict(),
                "streams": streams,
                "wall_time_s": elapsed,
            },
            metadata={
                "dataset": config.data,
                "source": config.source if self.source is not None else "gaussian",
                "loss": config.loss.name,
                "model": config_to_dict(config.model),
                "steps": self.step,
                "batch_size": self.batch,
                "wall_time_s": round(elapsed, 2),
                "hardware": _hardware(self.device, self.world),
                "versions": _versions(),
                "command": self.first_command,
                "resumed_with": self.resumed_with,
                "status": reason,
                "final_loss": last.get("loss"),
            },
        )
        for cb in callbacks:
            cb.on_checkpoint(self.step, self.ckpt_path)
        return self.ckpt_path


def start_run(
    config: TrainConfig,
    ck: Checkpoint | None,
    *,
    device: torch.device,
    rank: int,
    world: int,
    shape: tuple[int, ...],
    command: str | None,
) -> Run:
    """Build the run ``config`` describes on this process, restored from ``ck`` when given.

    ``config.model`` must already be set (the checkpoint's own when resuming).
    """
    out_dir = Path(config.out_dir)
    main = rank == 0
    batch = config.batch_size or (512 if device.type == "cuda" else 256)
    if batch % world:
        raise ValueError(f"batch_size={batch} must be divisible by the {world} processes")

    # ---- data and noise
    streams = {"rank": rank, "world_size": world}
    target = make_stream(
        config.data,
        seed=config.seed,
        root=config.data_root,
        flip=config.flip,
        download=config.download and main,
        image_size=config.image_size,
        channels=config.channels,
        labels=config.model.num_classes > 0,
        **streams,
    )
    source = (
        make_stream(config.source, seed=config.seed + 1, **streams) if len(shape) == 1 else None
    )
    gen = torch.Generator(device=device)
    gen.manual_seed(config.seed * 7919 + rank + 1)
    teacher = None
    if config.loss.name == "reflow":
        teacher = load(config.teacher, device=device)
        if tuple(teacher.config.data_shape) != tuple(shape):
            raise ValueError(f"teacher {config.teacher} was trained on another data shape")

    # ---- network, EMA, optimiser
    torch.manual_seed(config.seed)  # identical initialisation on every rank
    model = build_model(config.model).to(device)
    ema = EMA(model, decay=config.ema_decay, warmup=config.ema_warmup)
    optimizer = torch.optim.AdamW(
        model.parameters(), lr=config.lr, weight_decay=config.weight_decay, betas=config.betas
    )
    run = Run(
        config=config,
        device=device,
        rank=rank,
        world=world,
        shape=tuple(shape),
        batch=batch,
        target=target,
        source=source,
        gen=gen,
        model=model,
        ema=ema,
        optimizer=optimizer,
        ckpt_path=out_dir / CHECKPOINT_NAME,
        log_path=out_dir / LOG_NAME,
        teacher=teacher,
        first_command=command,
    )

    # ---- resume, or start afresh
    if ck is not None:
        run.first_command = ck.metadata.get("command") or command
        run.resumed_with = [*ck.metadata.get("resumed_with", []), command]
        model.load_state_dict(ck.model_state)
        ema.model.load_state_dict(ck.ema_state)
        ema._num_updates.fill_(ck.ema_updates or 0)
        optimizer.load_state_dict(ck.optimizer_state)
        ts = ck.train_state
        run.step, run.wall_time = ts["step"], ts.get("wall_time_s", 0.0)
        target.load_state_dict(ts["streams"][rank]["target"])
        if source is not None:
            source.load_state_dict(ts["streams"][rank]["source"])
        _set_rng_state(gen, ts["streams"][rank]["rng"])
        if main:
            run.history = _truncate_log(run.log_path, run.step)
    else:
        if config.init:
            _init_from(model, ema, config.init, config.model, device)
        if main and run.log_path.exists():
            run.log_path.unlink()
    for group in optimizer.param_groups:  # resumed runs take the (possibly new) lr settings
        group["lr"] = config.lr
        group["weight_decay"] = config.weight_decay
    if config.loss.uses_ot and teacher is None:
        run.pairs = _coupled_batches(config, target, source, run.local_batch, device, rank, ck)
    if world > 1:
        ids = [device.index] if device.type == "cuda" else None
        run.train_model = nn.parallel.DistributedDataParallel(model, device_ids=ids)
    return run

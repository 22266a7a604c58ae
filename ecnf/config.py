"""Training configuration: one dataclass, stored in every checkpoint, defaults from the seed paper.

The seed paper trains with AdamW (learning rate 2e-4, weight decay 1e-4), batch 512 and an
EMA of decay 0.999; those are the defaults here (the batch drops to 256 on a CPU).
"""

from __future__ import annotations

import functools
import math
import os
import warnings
from dataclasses import asdict, dataclass, field, fields, replace

from ._checks import check_choice, check_positive_int
from .data import IMAGE_CLASSES, TOY_CLASSES, dataset_classes
from .losses import LossConfig
from .nets import MLPConfig, ModelConfig, UNetConfig, config_from_dict, config_to_dict
from .solvers import FIXED_METHODS

__all__ = [
    "LR_SCHEDULES",
    "PRECISIONS",
    "TrainConfig",
    "default_model_config",
    "default_ot_workers",
    "learning_rate",
]

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
LR_SCHEDULES = ("constant", "cosine")


def default_model_config(shape: tuple[int, ...]) -> ModelConfig:
    """A network that suits data of per-sample ``shape``: an MLP for vectors, a UNet for images."""
    if len(shape) == 1:
        return MLPConfig(data_shape=shape, width=256, depth=3)
    if shape[-1] <= 8:  # 8x8 digits: two levels are enough
        return UNetConfig(data_shape=shape, channels=32, channel_mult=(1, 2), attention_levels=())
    return UNetConfig(data_shape=shape)


def learning_rate(config: TrainConfig, step: int) -> float:
    """The learning rate used for optimisation step ``step`` (0-based)."""
    scale = 1.0
    warmup = config.warmup_iterations
    if warmup:
        scale = min(1.0, (step + 1) / warmup)
    if config.lr_schedule == "cosine" and step >= warmup:
        span = max(config.iterations - warmup, 1)
        scale *= 0.5 * (1.0 + math.cos(math.pi * (step - warmup) / span))
    return config.lr * scale


def default_ot_workers() -> int:
    """Background OT solvers for :class:`TrainConfig`: one per core the training step leaves
    free, at least 1 and at most 4. On 2 cores one solver ahead ran fastest: at batch 512 on
    2D data the auction costs about one MLP step, and more threads only share the free core.
    """
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return max(1, min(4, cores - 1))


@dataclass
class TrainConfig:
    """Everything :func:`ecnf.train.fit` needs to run, resume and reproduce a training run.

    Attributes:
        data: target data set (a 2D toy name, ``digits``, ``fashion_mnist``, ``cifar10``,
            ``folder``).
        source: source distribution for 2D data (a toy name); images use Gaussian noise.
        model: network configuration; a default for the data's shape when ``None``.
        loss: objective (see :class:`ecnf.losses.LossConfig`).
        iterations: total optimisation steps (the word ``steps`` is kept for solver steps).
        batch_size: global batch; 512 on a GPU and 256 on a CPU when ``None``.
        lr, weight_decay, betas: AdamW settings (seed paper: 2e-4, 1e-4).
        ema_decay: EMA decay (seed paper eq. 10: 0.999).
        ema_warmup: ramp the decay up as ``min(decay, (1 + n) / (10 + n))`` so that the EMA
            of a short run is not dominated by the random initialisation (with 0.999 fixed,
            the initial weights still hold 74% of the average after 300 steps).
        grad_clip: maximum gradient norm (``None`` disables clipping).
        warmup_iterations: optimisation steps of linear learning-rate warmup.
        lr_schedule: ``constant`` after warmup, or ``cosine`` decay to zero at
            ``iterations``.
        precision: ``auto`` (bf16 autocast on CUDA, fp32 elsewhere), ``fp32``, ``bf16``,
            ``fp16``.
        seed: seeds data order, noise, times and initialisation.
        out_dir: where checkpoints and logs go.
        checkpoint_every, log_every, sample_every: intervals in optimisation steps (0
            disables previews).
        num_preview: samples drawn for each preview.
        data_root: folder holding image data sets; ``download`` fetches them when online.
        flip: random horizontal flips of images.
        image_size, channels: for ``folder`` data.
        device: ``auto`` (CUDA when present), ``cpu``, ``cuda``, ``cuda:1``...
        teacher: checkpoint whose samples reflow trains on (``loss.name == "reflow"``).
        teacher_method, teacher_steps: solver used to generate the teacher's samples (under
            the same ``precision`` autocast as the step, so in bf16 on CUDA by default).
        init: checkpoint whose (EMA) weights initialise the model and its EMA, e.g. a
            reflow student started from its teacher; needs the same architecture. Ignored
            when resuming, which restores the run's own weights.
        max_loss: a loss above this (or NaN/inf) stops the run as diverged.
        ot_workers: for objectives with a minibatch OT coupling, the number of batches whose
            assignment is solved ahead, in background threads, while the current step
            runs (``0`` solves each in its own step). The solvers release the GIL, so with
            free cores the coupling leaves the step's critical path (see
            :mod:`ecnf.prefetch`). Default: :func:`default_ot_workers`. The trained model is
            the same for every value.
        cond_drop: for a class-conditional network (``model.num_classes > 0``), the share of
            training labels replaced by the null label, so that the one network learns the
            unconditional velocity too, which classifier-free guidance needs (Ho and
            Salimans 2022, arXiv:2207.12598, found 0.1 to 0.2 best). Unused otherwise.
    """

    data: str = "moons"
    source: str = "gaussian"
    model: ModelConfig | None = None
    loss: LossConfig = field(default_factory=LossConfig)
    iterations: int = 2000
    batch_size: int | None = None
    lr: float = 2e-4
    weight_decay: float = 1e-4
    betas: tuple[float, float] = (0.9, 0.999)
    ema_decay: float = 0.999
    ema_warmup: bool = True
    grad_clip: float | None = 1.0
    warmup_iterations: int = 0
    lr_schedule: str = "constant"
    precision: str = "auto"
    seed: int = 0
    out_dir: str = "runs/run"
    checkpoint_every: int = 500
    log_every: int = 25
    sample_every: int = 0
    num_preview: int = 64
    data_root: str | None = None
    download: bool = False
    flip: bool = False
    image_size: int | None = None
    channels: int | None = None
    device: str = "auto"
    teacher: str | None = None
    teacher_method: str = "rk4"
    teacher_steps: int = 20
    init: str | None = None
    max_loss: float = 1e4
    ot_workers: int = field(default_factory=default_ot_workers)
    cond_drop: float = 0.1

    def __post_init__(self) -> None:
        if isinstance(self.loss, dict):
            self.loss = LossConfig(**self.loss)
        if isinstance(self.model, dict):
            self.model = config_from_dict(self.model)
        self.betas = tuple(self.betas)
        check_positive_int("iterations", self.iterations)
        if self.batch_size is not None:
            check_positive_int("batch_size", self.batch_size)
        for name in ("checkpoint_every", "log_every", "num_preview", "teacher_steps"):
            check_positive_int(name, getattr(self, name))
        for name in ("sample_every", "warmup_iterations", "seed", "ot_workers"):
            check_positive_int(name, getattr(self, name), minimum=0)
        for name in ("lr", "max_loss"):
            if not getattr(self, name) > 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)!r}")
        if not self.weight_decay >= 0:
            raise ValueError(f"weight_decay must be >= 0, got {self.weight_decay!r}")
        if not 0 <= self.ema_decay <= 1:
            raise ValueError(f"ema_decay must be in [0, 1], got {self.ema_decay!r}")
        if self.grad_clip is not None and not self.grad_clip > 0:
            raise ValueError(f"grad_clip must be > 0 or None, got {self.grad_clip!r}")
        check_choice("precision", self.precision, PRECISIONS)
        check_choice("lr_schedule", self.lr_schedule, LR_SCHEDULES)
        check_choice("teacher_method", self.teacher_method, tuple(FIXED_METHODS))
        if self.loss.name == "reflow" and not self.teacher:
            raise ValueError("loss 'reflow' needs teacher=<checkpoint> to generate its pairs")
        if not 0 <= self.cond_drop < 1:
            raise ValueError(f"cond_drop must be in [0, 1), got {self.cond_drop!r}")
        num_classes = getattr(self.model, "num_classes", 0)
        if num_classes:
            classes = dataset_classes(self.data)
            if not classes:
                raise ValueError(
                    f"a class-conditional network needs labelled data; data={self.data!r} has "
                    f"no classes (labelled: {', '.join((*TOY_CLASSES, *IMAGE_CLASSES))})"
                )
            if num_classes != len(classes):
                raise ValueError(
                    f"data={self.data!r} has {len(classes)} classes, but the network was "
                    f"built with num_classes={num_classes}"
                )
            if self.loss.name == "reflow":
                raise ValueError("class-conditional reflow is not supported; use num_classes=0")
        mean_flow = getattr(self.model, "mean_flow", None)
        if self.loss.name == "meanflow" and not mean_flow:
            raise ValueError(
                "loss 'meanflow' trains average velocities u(x, t, r): build the network with "
                "mean_flow=True (train --mean-flow; the CLI sets it for --loss meanflow)"
            )

    def to_dict(self) -> dict:
        """A JSON-serialisable dict; :meth:`from_dict` inverts it."""
        out = {f.name: getattr(self, f.name) for f in fields(self)}
        out["loss"] = asdict(self.loss)
        out["model"] = None if self.model is None else config_to_dict(self.model)
        out["betas"] = list(self.betas)
        return out

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        """Inverse of :meth:`to_dict`; reads the old key names of stored configs too."""
        d = {RENAMED.get(k, k): v for k, v in d.items()}
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training config keys: {', '.join(unknown)}")
        return cls(**d)

    def replace(self, **changes) -> TrainConfig:
        for old, new in RENAMED.items():
            if old in changes:
                warnings.warn(
                    f"replace({old}=...) is now replace({new}=...)",
                    DeprecationWarning,
                    stacklevel=2,
                )
                changes[new] = changes.pop(old)
        return replace(self, **changes)


# Old field names, read from stored configs and accepted (with a DeprecationWarning) as
# keywords, so that ``steps`` only ever means solver steps.
RENAMED = {"steps": "iterations", "warmup_steps": "warmup_iterations"}


def _accept_old_names(init):
    @functools.wraps(init)
    def __init__(self, *args, **kwargs):
        for old, new in RENAMED.items():
            if old in kwargs:
                if new in kwargs:
                    raise TypeError(f"TrainConfig got both {old!r} and {new!r}")
                warnings.warn(
                    f"TrainConfig({old}=...) is now TrainConfig({new}=...)",
                    DeprecationWarning,
                    stacklevel=2,
                )
                kwargs[new] = kwargs.pop(old)
        init(self, *args, **kwargs)

    return __init__


def _old_name(old: str, new: str) -> property:
    def get(self):
        warnings.warn(
            f"TrainConfig.{old} is now TrainConfig.{new}", DeprecationWarning, stacklevel=2
        )
        return getattr(self, new)

    return property(get, doc=f"Deprecated: :attr:`{new}`.")


TrainConfig.__init__ = _accept_old_names(TrainConfig.__init__)
for _old, _new in RENAMED.items():
    setattr(TrainConfig, _old, _old_name(_old, _new))

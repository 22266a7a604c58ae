"""``python -m ecnf train``: every option maps onto a field of TrainConfig or LossConfig.

An option's ``dest`` is the name of the config field it sets (``loss.<field>`` for the
objective), so :func:`configs_from_args` builds both configs without naming each option and
the defaults shown by ``--help`` are the configs' own.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import sys
from pathlib import Path

from ._common import Deprecated, dataclass_defaults

__all__ = ["add_parser", "configs_from_args", "run"]

_LOSS = "loss."  # dest prefix of the options that set LossConfig fields


def _data_args(t: argparse.ArgumentParser, tc: dict) -> None:
    g = t.add_argument_group("data")
    g.add_argument(
        "--data",
        default=tc["data"],
        help="target: a 2D toy, drawn:<picture> (2D, dense where dark), digits, "
        "fashion_mnist, cifar10, folder",
    )
    g.add_argument(
        "--source",
        default=tc["source"],
        help="source distribution for 2D data (a 2D toy or drawn:<picture>)",
    )
    g.add_argument("--data-root", help="folder with image data sets (or your image folder)")
    g.add_argument("--download", action="store_true", help="download the data set if missing")
    g.add_argument("--flip", action="store_true", help="random horizontal flips")
    g.add_argument("--image-size", type=int, help="folder data: resize to this size")
    g.add_argument(
        "--image-channels", dest="channels", type=int, choices=(1, 3), help="folder data: channels"
    )


def _model_args(t: argparse.ArgumentParser) -> None:
    from ..nets import ACTIVATIONS, TIME_EMBEDDINGS

    g = t.add_argument_group("network (default: by data shape)")
    g.add_argument("--model", choices=("mlp", "resnet", "unet"), help="architecture")
    g.add_argument("--width", type=int, help="hidden width (mlp, resnet)")
    g.add_argument("--depth", type=int, help="hidden layers (mlp) or blocks (resnet)")
    g.add_argument("--channels", dest="unet_channels", type=int, help="base channels (unet)")
    g.add_argument("--channel-mult", help="unet channel multipliers per level, e.g. 1,2,2")
    g.add_argument("--attention", help="unet levels with attention, e.g. 1 (16x16) or '' (none)")
    g.add_argument("--res-blocks", type=int, help="unet residual blocks per level")
    g.add_argument("--activation", choices=ACTIVATIONS, help="activation (mlp, resnet)")
    g.add_argument("--time-embedding", choices=TIME_EMBEDDINGS, help="time embedding (mlp, resnet)")
    g.add_argument("--layer-norm", action="store_true", help="LayerNorm in the MLP")
    g.add_argument("--residual", action="store_true", help="residual connections in the MLP")
    g.add_argument(
        "--mean-flow",
        action="store_true",
        help="a second time input for average velocities u(x, t, r) (set by --loss meanflow)",
    )
    g.add_argument(
        "--num-classes",
        type=int,
        default=0,
        help="class-conditional network with this many labels (the data set's number of "
        "classes, e.g. 10 for digits; 0: unconditional); sample with --label and --guidance",
    )
    g.add_argument(
        "--conditional",
        action="store_true",
        help="class-conditional on the data set's classes (sets --num-classes)",
    )


def _loss_args(t: argparse.ArgumentParser, tc: dict, lc: dict) -> None:
    from ..couplings import COUPLINGS
    from ..losses import LOSSES, TIME_SAMPLINGS
    from ..solvers import FIXED_METHODS

    g = t.add_argument_group("objective")
    g.add_argument("--loss", dest=_LOSS + "name", default=lc["name"], choices=LOSSES)
    g.add_argument(
        "--sigma", dest=_LOSS + "sigma", type=float, default=lc["sigma"], help="path noise"
    )
    for flag, field, kind, text in (
        ("--alpha", "alpha", float, "consistency: weight of L_path"),
        ("--dt", "dt", float, "consistency: target time offset"),
        ("--segments", "num_segments", int, "consistency: number of segments"),
        ("--fm-weight", "fm_weight", float, "consistency: added FM weight"),
    ):
        g.add_argument(flag, dest=_LOSS + field, type=kind, default=lc[field], help=text)
    g.add_argument(
        "--coupling",
        dest=_LOSS + "coupling",
        default=lc["coupling"],
        choices=COUPLINGS,
        help="consistency and meanflow: noise-data coupling",
    )
    g.add_argument(
        "--time-sampling",
        dest=_LOSS + "time_sampling",
        default=lc["time_sampling"],
        choices=TIME_SAMPLINGS,
        help="how training times are drawn (every loss)",
    )
    for flag, field, text in (
        ("--time-mu", "time_mu", "logit_normal: mean of the normal (positive: nearer the data)"),
        ("--time-sigma", "time_sigma", "logit_normal: standard deviation of the normal"),
        ("--interval-share", "interval_share", "meanflow: share of pairs with r != t"),
        ("--adaptive-power", "adaptive_power", "meanflow: power p of the adaptive weight"),
        ("--adaptive-eps", "adaptive_eps", "meanflow: constant c of the adaptive weight"),
    ):
        g.add_argument(flag, dest=_LOSS + field, type=float, default=lc[field], help=text)
    g.add_argument("--teacher", help="reflow: checkpoint that generates the pairs")
    fixed = tuple(FIXED_METHODS)
    g.add_argument(
        "--teacher-method",
        default=tc["teacher_method"],
        choices=fixed,
        help="reflow: fixed-step solver for the teacher's pairs",
    )
    g.add_argument(
        "--teacher-solver",
        dest="teacher_method",
        choices=fixed,
        action=Deprecated,
        new="--teacher-method",
    )
    g.add_argument(
        "--teacher-steps",
        type=int,
        default=tc["teacher_steps"],
        help="reflow: solver steps for the pairs",
    )
    g.add_argument(
        "--init", help="start from this checkpoint's weights (same architecture), e.g. reflow"
    )
    g.add_argument(
        "--ot-workers",
        type=int,
        help="OT couplings: batches whose assignment is solved ahead in background threads "
        "(0: in the step; default: one per free core, at most 4)",
    )


def _optimiser_args(t: argparse.ArgumentParser, tc: dict) -> None:
    from ..config import LR_SCHEDULES, PRECISIONS

    g = t.add_argument_group("optimisation")
    g.add_argument(
        "--iterations",
        "--iters",
        type=int,
        default=tc["iterations"],
        help="optimisation steps (solver steps are always called --steps / --teacher-steps)",
    )
    g.add_argument("--steps", dest="iterations", type=int, action=Deprecated, new="--iterations")
    g.add_argument("--batch-size", type=int, help="global batch (default 512 GPU / 256 CPU)")
    g.add_argument(
        "--lr", type=float, default=tc["lr"], help="AdamW learning rate (seed paper 2e-4)"
    )
    g.add_argument(
        "--weight-decay", type=float, default=tc["weight_decay"], help="AdamW weight decay"
    )
    g.add_argument("--ema-decay", type=float, default=tc["ema_decay"], help="EMA decay")
    g.add_argument(
        "--no-ema-warmup",
        dest="ema_warmup",
        action="store_false",
        help="fixed EMA decay from step 0",
    )
    g.add_argument(
        "--grad-clip", type=float, default=tc["grad_clip"], help="max grad norm (0 disables)"
    )
    g.add_argument(
        "--warmup",
        dest="warmup_iterations",
        type=int,
        default=tc["warmup_iterations"],
        help="optimisation steps of linear learning-rate warmup",
    )
    g.add_argument("--lr-schedule", default=tc["lr_schedule"], choices=LR_SCHEDULES)
    g.add_argument("--precision", default=tc["precision"], choices=PRECISIONS)
    g.add_argument("--seed", type=int, default=tc["seed"])
    g.add_argument(
        "--cond-drop",
        type=float,
        default=tc["cond_drop"],
        help="conditional networks: share of labels replaced by the null label in training "
        "(classifier-free guidance needs the unconditional velocity too)",
    )


def _run_args(t: argparse.ArgumentParser, tc: dict) -> None:
    g = t.add_argument_group("run")
    g.add_argument(
        "--out",
        dest="out_dir",
        default=tc["out_dir"],
        help="output folder (checkpoint, metrics.jsonl)",
    )
    g.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    g.add_argument("--overwrite", action="store_true", help="replace a checkpoint in --out")
    g.add_argument("--checkpoint-every", type=int, default=tc["checkpoint_every"])
    g.add_argument("--log-every", type=int, default=tc["log_every"])
    g.add_argument(
        "--sample-every", type=int, default=tc["sample_every"], help="write preview PNGs (0: never)"
    )
    g.add_argument("--device", default=tc["device"], help="auto, cpu, cuda, cuda:1 ...")
    g.add_argument("--quiet", action="store_true", help="no progress bar")


def add_parser(sub) -> None:
    from ..config import TrainConfig
    from ..losses import LossConfig

    # the defaults are the configs' own, so the two cannot drift apart
    tc, lc = dataclass_defaults(TrainConfig), dataclass_defaults(LossConfig)
    t = sub.add_parser("train", help="train a model (torchrun-ready)", description="Train a model.")
    _data_args(t, tc)
    _model_args(t)
    _loss_args(t, tc, lc)
    _optimiser_args(t, tc)
    _run_args(t, tc)


def _int_list(flag: str, text: str) -> tuple[int, ...]:
    try:
        return tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(f"{flag} must be integers like 1,2,2, got {text!r}") from None


def model_config(args, shape: tuple[int, ...]):
    """The network the model options ask for, on top of the default for ``shape``."""
    from ..config import default_model_config
    from ..nets import MLPConfig, ResNetConfig, UNetConfig

    arch = args.model or default_model_config(shape).arch
    given = {
        flag: getattr(args, dest) not in (None, False)
        for flag, dest in (
            ("--width", "width"),
            ("--depth", "depth"),
            ("--activation", "activation"),
            ("--time-embedding", "time_embedding"),
            ("--layer-norm", "layer_norm"),
            ("--residual", "residual"),
            ("--channels", "unet_channels"),
            ("--channel-mult", "channel_mult"),
            ("--attention", "attention"),
            ("--res-blocks", "res_blocks"),
        )
    }
    allowed = {
        "unet": {"--channels", "--channel-mult", "--attention", "--res-blocks"},
        "mlp": {
            "--width",
            "--depth",
            "--activation",
            "--time-embedding",
            "--layer-norm",
            "--residual",
        },
        "resnet": {"--width", "--depth", "--activation", "--time-embedding"},
    }[arch]
    bad = [flag for flag, on in given.items() if on and flag not in allowed]
    if bad:
        raise ValueError(f"{', '.join(bad)} do not apply to --model {arch}")
    if arch == "unet":
        base = default_model_config(shape) if len(shape) == 3 else UNetConfig(data_shape=shape)
        changes = {}
        if args.unet_channels:
            changes["channels"] = args.unet_channels
        if args.res_blocks:
            changes["num_res_blocks"] = args.res_blocks
        if args.channel_mult is not None:
            changes["channel_mult"] = _int_list("--channel-mult", args.channel_mult)
        if args.attention is not None:
            changes["attention_levels"] = _int_list("--attention", args.attention)
        return dataclasses.replace(base, **changes)
    kw = {"data_shape": shape}
    for key in ("width", "activation", "time_embedding"):
        if getattr(args, key) is not None:
            kw[key] = getattr(args, key)
    if arch == "mlp":
        if args.depth is not None:
            kw["depth"] = args.depth
        return MLPConfig(**kw, layer_norm=args.layer_norm, residual=args.residual)
    if args.depth is not None:
        kw["num_blocks"] = args.depth
    return ResNetConfig(**kw)


def configs_from_args(args):
    """The :class:`~ecnf.TrainConfig` that ``args`` describe (its ``loss`` and ``model`` too).

    Every option whose ``dest`` names a TrainConfig field sets it; ``loss.<field>`` options
    set the LossConfig. Options left unset keep the config's default.
    """
    from ..config import TrainConfig
    from ..data import dataset_shape
    from ..losses import LossConfig

    values = vars(args)
    loss = LossConfig(**{k[len(_LOSS) :]: v for k, v in values.items() if k.startswith(_LOSS)})
    names = {f.name for f in dataclasses.fields(TrainConfig)} - {"loss", "model"}
    kw = {k: v for k, v in values.items() if k in names and v is not None}
    if kw.get("grad_clip") == 0:
        kw["grad_clip"] = None  # --grad-clip 0 disables clipping
    shape = dataset_shape(args.data, image_size=args.image_size, channels=args.channels)
    model = model_config(args, shape)
    if args.mean_flow or loss.name == "meanflow":
        model = dataclasses.replace(model, mean_flow=True)
    num_classes = _num_classes(args)
    if num_classes:
        model = dataclasses.replace(model, num_classes=num_classes)
    return TrainConfig(**kw, loss=loss, model=model)


def _num_classes(args) -> int:
    from ..data import dataset_classes

    if args.num_classes < 0:
        raise ValueError(f"--num-classes must be >= 0, got {args.num_classes}")
    if not args.conditional:
        return args.num_classes
    classes = len(dataset_classes(args.data))
    if not classes:
        raise ValueError(f"--conditional needs labelled data; --data {args.data} has no classes")
    if args.num_classes and args.num_classes != classes:
        raise ValueError(
            f"--conditional: --data {args.data} has {classes} classes, not --num-classes "
            f"{args.num_classes}"
        )
    return classes


def run(args) -> int:
    from ..callbacks import Callback, ProgressBar
    from ..train import fit

    config = configs_from_args(args)
    out = Path(config.out_dir)

    class Previews(Callback):
        def on_preview(self, step, samples):
            from ..export import save_image_grid, save_points

            path = out / f"preview_{step:07d}.png"
            if samples.ndim == 4:
                save_image_grid(path, samples, scale=2)
            else:
                save_points(path, samples)

    callbacks = [] if args.quiet else [ProgressBar()]
    if config.sample_every:
        callbacks.append(Previews())
    command = "python -m ecnf " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = fit(config, callbacks, resume=args.resume, overwrite=args.overwrite, command=command)
    if result.reason == "completed":
        print(
            f"trained {result.step} iterations in {result.wall_time_s:.1f} s -> {result.checkpoint}"
        )
        return 0
    print(
        f"{result.reason} at step {result.step}; state saved to {result.checkpoint}; "
        f"continue with the same command plus --resume"
    )
    return 130 if result.reason == "interrupted" else 0

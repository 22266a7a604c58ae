"""Pieces every command shares: solver options, deprecated spellings, checkpoint loading."""

from __future__ import annotations

import argparse
import dataclasses
import sys

__all__ = [
    "Deprecated",
    "add_fast_args",
    "add_solver_args",
    "check_count",
    "dataclass_defaults",
    "load_checkpoint",
    "sampler_label",
    "solver_kwargs",
]


class Deprecated(argparse.Action):
    """An old spelling of an option: it still works, stores into the new option's ``dest``
    and says on stderr which spelling to use instead."""

    def __init__(self, option_strings, dest, new: str, **kwargs):
        self.new = new
        super().__init__(option_strings, dest, help=argparse.SUPPRESS, **kwargs)

    def __call__(self, parser, namespace, values, option_string=None):
        print(f"warning: {option_string} is deprecated; use {self.new}", file=sys.stderr)
        setattr(namespace, self.dest, values)


def add_fast_args(p: argparse.ArgumentParser) -> None:
    """``--eager`` and ``--precision`` of the CUDA fast path (:mod:`ecnf.fast`)."""
    p.add_argument(
        "--eager",
        action="store_true",
        help="on CUDA, skip the fast path (bf16 autocast, torch.compile, CUDA graph)",
    )
    p.add_argument(
        "--precision",
        choices=["auto", "fp32", "bf16"],
        default="auto",
        help="fast path precision (auto: bf16); the CPU always samples in eager fp32",
    )


def sampler_label(fast: bool, precision: str) -> str:
    """How the samples were computed, as the CLI prints it."""
    if not fast:
        return "eager fp32"
    return f"fast path: {'fp32' if precision == 'fp32' else 'bf16'}, torch.compile, CUDA graph"


def add_solver_args(p: argparse.ArgumentParser, steps_default: int = 10) -> None:
    """``--method`` (and the old ``--solver``), ``--steps``, ``--rtol``, ``--atol``."""
    from ..solvers import METHODS

    p.add_argument("--method", default="rk4", choices=METHODS, help="ODE solver (default rk4)")
    p.add_argument("--solver", dest="method", choices=METHODS, action=Deprecated, new="--method")
    p.add_argument("--steps", type=int, default=steps_default, help="fixed-step solver steps")
    p.add_argument("--rtol", type=float, default=1e-5, help="adaptive relative tolerance")
    p.add_argument("--atol", type=float, default=1e-5, help="adaptive absolute tolerance")


def solver_kwargs(args) -> dict:
    """The keywords of :func:`ecnf.integrate` that ``args`` ask for."""
    from ..solvers import solver_options

    return solver_options(args.method, steps=args.steps, rtol=args.rtol, atol=args.atol)


def check_count(flag: str, value: int, minimum: int = 1) -> int:
    """A count given on the command line, refused with the flag's name when too small."""
    if value < minimum:
        raise ValueError(f"{flag} must be at least {minimum}, got {value}")
    return value


def dataclass_defaults(config_class) -> dict:
    """A dataclass's plain field defaults by name (fields with a factory are left out)."""
    return {
        f.name: f.default
        for f in dataclasses.fields(config_class)
        if f.default is not dataclasses.MISSING
    }


def load_checkpoint(args, use_ema: bool = True):
    """``(model, info, device)`` for ``args.checkpoint`` on ``args.device``."""
    from ..checkpoint import checkpoint_info, load
    from ..train import resolve_device

    device = resolve_device(args.device)
    model = load(args.checkpoint, device=device, use_ema=use_ema)
    return model, checkpoint_info(args.checkpoint), device


def parse_classes(text: str | None, num_classes: int) -> tuple[int, ...] | None:
    """The classes ``--label`` names (``3``, ``3,5`` or ``all``); None without ``--label``."""
    if text is None:
        return None
    if not num_classes:
        raise ValueError("--label needs a class-conditional model; this one is unconditional")
    if text.strip() == "all":
        return tuple(range(num_classes))
    try:
        classes = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise ValueError(
            f"--label must be a class number, a list like 3,5 or 'all', got {text!r}"
        ) from None
    if not classes or not all(0 <= k < num_classes for k in classes):
        raise ValueError(f"--label {text}: this model's classes are 0..{num_classes - 1}")
    return classes

"""Command line: ``python -m ecnf train | sample | likelihood | eval | export | import``.

Example (2 CPU cores, well under a minute)::

    python -m ecnf train --data moons --loss otcfm --iterations 1500 --lr 2e-3 --out runs/moons
    python -m ecnf sample runs/moons/checkpoint.safetensors --method rk4 --steps 10 --out moons
    python -m ecnf eval runs/moons/checkpoint.safetensors --method rk4 --steps 10

Each command lives in a module of its own kind (:mod:`ecnf.cli.train`, :mod:`ecnf.cli.sample`
for ``sample`` and ``export``, :mod:`ecnf.cli.evaluate` for ``eval`` and ``likelihood``,
:mod:`ecnf.cli.importing` for ``import``), as a
function that adds its parser and one that runs it. A bad
argument prints one line starting ``error:`` and exits with status 2.
"""

from __future__ import annotations

import argparse
import sys

from . import evaluate, importing, sample, train

__all__ = ["build_parser", "main", "main_entry"]

#: command name -> (adds its subparser, runs it and returns the exit status)
COMMANDS = {
    "train": (train.add_parser, train.run),
    "sample": (sample.add_parser, sample.run),
    "likelihood": (evaluate.add_likelihood_parser, evaluate.run_likelihood),
    "export": (sample.add_export_parser, sample.run_export),
    "eval": (evaluate.add_eval_parser, evaluate.run_eval),
    "import": (importing.add_parser, importing.run),
}


def build_parser() -> argparse.ArgumentParser:
    """The parser of every command, with the defaults the library's configs declare."""
    parser = argparse.ArgumentParser(
        prog="python -m ecnf",
        description="Train, sample and evaluate continuous normalizing flows.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for add_parser, _ in COMMANDS.values():
        add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (errors print one line, status 2)."""
    from ..checkpoint import CheckpointError
    from ..train import TrainingDiverged

    args = build_parser().parse_args(argv)
    try:
        return COMMANDS[args.command][1](args)
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def main_entry() -> None:
    """Console-script entry point (``ecnf ...``)."""
    raise SystemExit(main())

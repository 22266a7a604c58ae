"""``python -m ecnf import torchcfm``: a TorchCFM checkpoint becomes an ECNF checkpoint."""

from __future__ import annotations

import argparse
import shlex
import sys
from dataclasses import fields
from pathlib import Path

__all__ = ["add_parser", "run"]

_FLAGS = {  # TorchCFMUNetConfig field -> how its option parses
    "num_channels": {"type": int},
    "num_res_blocks": {"type": int},
    "channel_mult": {"type": float, "nargs": "+"},
    "attention_resolutions": {"type": str},
    "num_heads": {"type": int},
    "num_head_channels": {"type": int},
    "num_heads_upsample": {"type": int},
    "dropout": {"type": float},
}
_SWITCHES = ("use_scale_shift_norm", "resblock_updown", "use_new_attention_order")


def add_parser(sub) -> None:
    from ..importers import RELEASES, import_command
    from ..nets.torchcfm import TORCHCFM_CIFAR10

    p = sub.add_parser(
        "import",
        help="turn another library's checkpoint into an ECNF checkpoint",
        description="Import a checkpoint trained by another library.",
    )
    kinds = p.add_subparsers(dest="library", required=True)
    t = kinds.add_parser(
        "torchcfm",
        help="a TorchCFM UNetModelWrapper checkpoint (the released CIFAR-10 flows)",
        description=(
            "Import a TorchCFM UNetModelWrapper checkpoint (read with torch.load("
            "weights_only=True) only). The released CIFAR-10 flows need no options: "
            f"'{import_command()}' downloads OT-CFM and imports it. Other TorchCFM UNets "
            "import the same way given their configuration (the options below; the "
            "defaults are the released CIFAR-10 configuration)."
        ),
    )
    t.add_argument("file", nargs="?", type=Path, help="the TorchCFM .pt file")
    t.add_argument(
        "--download",
        choices=list(RELEASES),
        help="fetch this released CIFAR-10 file first (resumable), then import it",
    )
    t.add_argument("--url", help="with --download: a mirror of the released file")
    t.add_argument(
        "--out",
        type=Path,
        help="the .safetensors file to write (default: checkpoints/imported/, where the "
        "studio and the demo list it)",
    )
    t.add_argument(
        "--weights",
        choices=["ema_model", "net_model"],
        default="ema_model",
        help="which weights of the training dict (default: the EMA, as TorchCFM evaluates)",
    )
    t.add_argument("--dataset", default="cifar10", help="what the model was trained on")
    t.add_argument("--half", action="store_true", help="store float16 weights (half the file)")
    g = t.add_argument_group("network (TorchCFM's UNetModelWrapper arguments)")
    g.add_argument(
        "--data-shape",
        type=int,
        nargs=3,
        metavar=("C", "H", "W"),
        default=list(TORCHCFM_CIFAR10.data_shape),
        help="TorchCFM's dim",
    )
    for name, kw in _FLAGS.items():
        g.add_argument(f"--{name.replace('_', '-')}", default=getattr(TORCHCFM_CIFAR10, name), **kw)
    for name in _SWITCHES:
        g.add_argument(f"--{name.replace('_', '-')}", action="store_true")


def _config(args: argparse.Namespace):
    from ..nets.torchcfm import TorchCFMUNetConfig

    values = {f.name: getattr(args, f.name) for f in fields(TorchCFMUNetConfig)}
    values["channel_mult"] = tuple(
        int(m) if float(m).is_integer() else m for m in values["channel_mult"]
    )
    values["data_shape"] = tuple(values["data_shape"])
    return TorchCFMUNetConfig(**values)


def run(args: argparse.Namespace) -> int:
    from ..importers import RELEASES, fetch_release, import_torchcfm

    if (args.file is None) == (args.download is None):
        raise ValueError("give either a TorchCFM FILE or --download NAME (one of them)")
    if args.url and not args.download:
        raise ValueError("--url is a mirror for --download")
    if args.download and args.dataset != "cifar10":
        raise ValueError("the released TorchCFM files are CIFAR-10 models: drop --dataset")
    config = _config(args)
    command = "python -m ecnf " + shlex.join(sys.argv[1:])
    if args.download:
        try:
            out = fetch_release(
                args.download,
                url=args.url,
                config=config,
                out=args.out,
                weights=args.weights,
                half=args.half,
                command=command,
            )
        except OSError as error:
            print(f"error: {error}", file=sys.stderr)
            return 1
        print(f"imported {RELEASES[args.download].url} -> {out} (card: {out.with_suffix('.md')})")
        return 0
    path = args.file
    release = next((r for r in RELEASES.values() if r.file == path.name), None)
    out = import_torchcfm(
        path,
        args.out,
        config=config,
        weights=args.weights,
        release=release,
        dataset=args.dataset,
        half=args.half,
        command=command,
    )
    print(f"imported {path} -> {out} (card: {out.with_suffix('.md')})")
    return 0

"""``python -m ecnf sample`` (arrays, PNG, GIF) and ``python -m ecnf export`` (small files)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch

from ._common import (
    add_fast_args,
    add_solver_args,
    check_count,
    load_checkpoint,
    parse_classes,
    sampler_label,
    solver_kwargs,
)

__all__ = ["add_export_parser", "add_parser", "run", "run_export"]


def add_parser(sub) -> None:
    s = sub.add_parser("sample", help="draw samples from a checkpoint", description="Draw samples.")
    s.add_argument("checkpoint", type=Path)
    add_solver_args(s)
    s.add_argument("-n", "--num", type=int, default=64, help="number of samples (at least 1)")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--out", default="samples", help="output prefix: writes PREFIX.npz and PREFIX.png"
    )
    s.add_argument("--gif", action="store_true", help="also write the trajectory as PREFIX.gif")
    s.add_argument(
        "--label",
        help="class-conditional models: the class to draw, or several (3,5,8) taken in turn; "
        "'all' cycles through every class (default: unconditional, the null label)",
    )
    s.add_argument(
        "--guidance",
        type=float,
        default=1.0,
        help="classifier-free guidance scale w with --label: 0 unconditional, 1 conditional, "
        ">1 more typical of the class; costs two network evaluations per step unless 0 or 1",
    )
    s.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    s.add_argument("--device", default="auto")
    add_fast_args(s)


def source_noise(info: dict, shape: tuple[int, ...], num: int, seed: int) -> torch.Tensor:
    """``num`` draws of the distribution the model starts from: its 2D source, else N(0, I)."""
    from ..data import is_toy, sample_toy

    gen = torch.Generator().manual_seed(seed)
    source = info["metadata"].get("source", "gaussian")
    if shape == (2,) and is_toy(source):
        return sample_toy(source, num, generator=gen)
    return torch.randn((num, *shape), generator=gen)


def sample_labels(text: str | None, num_classes: int, num: int) -> torch.Tensor | None:
    """The ``(num,)`` labels that ``--label`` asks for, its classes in turn (None:
    unconditional)."""
    from ..guidance import labels_in_turn

    classes = parse_classes(text, num_classes)
    return None if classes is None else labels_in_turn(classes, num)


def run(args) -> int:
    from ..export import save_image_grid, save_points, save_trajectory_gif
    from ..fast import fast_path_applies, sample
    from ..guidance import guided

    check_count("-n/--num", args.num)
    model, info, device = load_checkpoint(args, use_ema=not args.no_ema)
    shape = tuple(model.config.data_shape)
    labels = sample_labels(args.label, getattr(model.config, "num_classes", 0), args.num)
    if labels is None and args.guidance != 1.0:
        raise ValueError("--guidance applies with --label (the classes to guide towards)")
    if labels is not None:
        model = guided(model, labels.to(device), args.guidance)
    x0 = source_noise(info, shape, args.num, args.seed).to(device)
    start = time.perf_counter()
    kw = solver_kwargs(args)
    fast = (
        not args.eager
        and labels is None
        and fast_path_applies(model, args.method, device)
        and "rtol" not in kw
    )
    if fast:
        print("compiling and capturing the solve (once per model and batch shape)...")
    sol = sample(model, x0, return_trajectory=args.gif, fast=fast, precision=args.precision, **kw)
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    prefix = Path(args.out)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"samples": sol.x.cpu().numpy(), "nfe": np.array(sol.nfe)}
    if labels is not None:
        arrays.update(labels=labels.numpy(), guidance=np.array(args.guidance))
    if sol.trajectory is not None:
        arrays["trajectory"] = sol.trajectory.cpu().numpy()
        arrays["times"] = sol.times.cpu().numpy()
    np.savez(prefix.with_suffix(".npz"), **arrays)
    if len(shape) == 3:
        save_image_grid(prefix.with_suffix(".png"), sol.x, scale=2)
    elif shape == (2,):
        save_points(prefix.with_suffix(".png"), sol.x)
    if args.gif:
        save_trajectory_gif(prefix.with_suffix(".gif"), sol.trajectory)
    guidance = "" if labels is None else f", classes {args.label} at guidance {args.guidance:g}"
    print(
        f"{args.num} samples{guidance}, method {args.method}, NFE {sol.nfe}, {seconds:.3f} s "
        f"(wall time of the ODE solve on {device}, {sampler_label(fast, args.precision)}) "
        f"-> {prefix.with_suffix('.npz')}"
    )
    return 0


def add_export_parser(sub) -> None:
    x = sub.add_parser(
        "export",
        help="write a small inference checkpoint",
        description="Copy a training checkpoint's EMA (or raw) weights, config and metadata into "
        "a small file without optimizer or data state, e.g. for shipping.",
    )
    x.add_argument("checkpoint", type=Path)
    x.add_argument("out", type=Path)
    x.add_argument("--half", action="store_true", help="store weights as float16")
    x.add_argument("--no-ema", action="store_true", help="export the raw weights")


def run_export(args) -> int:
    from ..checkpoint import read_checkpoint, save_checkpoint
    from ..nets import build_model, config_from_dict

    ck = read_checkpoint(args.checkpoint)
    use_ema = ck.ema_state is not None and not args.no_ema
    model = build_model(config_from_dict(ck.model_config))
    model.load_state_dict(ck.ema_state if use_ema else ck.model_state)
    config = ck.train_state.get("config")
    metadata = {
        **ck.metadata,
        "exported_from": str(args.checkpoint),
        "weights": "ema" if use_ema else "raw",
    }
    out = save_checkpoint(
        args.out,
        model=model,
        train_state={"config": config, "step": ck.train_state.get("step")},
        metadata=metadata,
        half=args.half,
    )
    size = out.stat().st_size
    print(f"exported {'EMA' if use_ema else 'raw'} weights to {out} ({size / 1e6:.2f} MB)")
    return 0

"""Command line: ``python -m ecnf train | sample | likelihood | eval`` (``--help`` on each).

Example (2 CPU cores, well under a minute)::

    python -m ecnf train --data moons --loss otcfm --steps 1500 --lr 2e-3 --out runs/moons
    python -m ecnf sample runs/moons/checkpoint.safetensors --solver rk4 --steps 10 --out moons
    python -m ecnf eval runs/moons/checkpoint.safetensors --solver rk4 --steps 10
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import numpy as np
import torch

__all__ = ["main"]


def _add_solver_args(p: argparse.ArgumentParser, steps_default: int = 10) -> None:
    from .solvers import METHODS

    p.add_argument("--solver", default="rk4", choices=METHODS, help="ODE method (default rk4)")
    p.add_argument("--steps", type=int, default=steps_default, help="fixed-step count")
    p.add_argument("--rtol", type=float, default=1e-5, help="adaptive relative tolerance")
    p.add_argument("--atol", type=float, default=1e-5, help="adaptive absolute tolerance")


def _solver_kwargs(args) -> dict:
    from .solvers import FIXED_METHODS

    if args.solver in FIXED_METHODS:
        return {"method": args.solver, "steps": args.steps}
    return {"method": args.solver, "rtol": args.rtol, "atol": args.atol}


def _defaults(config_class) -> dict:
    """A dataclass's plain field defaults by name (fields with a factory are left out)."""
    import dataclasses

    return {
        f.name: f.default
        for f in dataclasses.fields(config_class)
        if f.default is not dataclasses.MISSING
    }


def _parser() -> argparse.ArgumentParser:
    from .config import LR_SCHEDULES, PRECISIONS, TrainConfig
    from .couplings import COUPLINGS
    from .losses import LOSSES, LossConfig
    from .nets import ACTIVATIONS, TIME_EMBEDDINGS
    from .solvers import FIXED_METHODS

    # the train command's defaults are the configs' own, so the two cannot drift apart
    tc, lc = _defaults(TrainConfig), _defaults(LossConfig)

    parser = argparse.ArgumentParser(
        prog="python -m ecnf",
        description="Train, sample and evaluate continuous normalizing flows.",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="train a model (torchrun-ready)", description="Train a model.")
    t.add_argument(
        "--data",
        default=tc["data"],
        help="target: a 2D toy, digits, fashion_mnist, cifar10, folder",
    )
    t.add_argument("--source", default=tc["source"], help="source distribution for 2D data")
    t.add_argument(
        "--model", choices=("mlp", "resnet", "unet"), help="architecture (default: by data)"
    )
    t.add_argument("--width", type=int, help="hidden width (mlp, resnet)")
    t.add_argument("--depth", type=int, help="hidden layers (mlp) or blocks (resnet)")
    t.add_argument("--channels", type=int, help="base channels (unet)")
    t.add_argument("--channel-mult", help="unet channel multipliers per level, e.g. 1,2,2")
    t.add_argument("--attention", help="unet levels with attention, e.g. 1 (16x16) or '' (none)")
    t.add_argument("--res-blocks", type=int, help="unet residual blocks per level")
    t.add_argument("--activation", choices=ACTIVATIONS, help="activation (mlp, resnet)")
    t.add_argument("--time-embedding", choices=TIME_EMBEDDINGS, help="time embedding (mlp, resnet)")
    t.add_argument("--layer-norm", action="store_true", help="LayerNorm in the MLP")
    t.add_argument("--residual", action="store_true", help="residual connections in the MLP")
    t.add_argument("--loss", default=lc["name"], choices=LOSSES, help="objective")
    t.add_argument("--alpha", type=float, default=lc["alpha"], help="consistency: weight of L_path")
    t.add_argument("--dt", type=float, default=lc["dt"], help="consistency: target time offset")
    t.add_argument(
        "--segments", type=int, default=lc["num_segments"], help="consistency: number of segments"
    )
    t.add_argument(
        "--coupling",
        default=lc["coupling"],
        choices=COUPLINGS,
        help="consistency: noise-data coupling",
    )
    t.add_argument(
        "--fm-weight", type=float, default=lc["fm_weight"], help="consistency: added FM weight"
    )
    t.add_argument("--sigma", type=float, default=lc["sigma"], help="path noise")
    t.add_argument("--teacher", help="reflow: checkpoint that generates the pairs")
    t.add_argument(
        "--teacher-solver",
        default=tc["teacher_method"],
        choices=tuple(FIXED_METHODS),
        help="reflow: fixed-step solver for the teacher's pairs",
    )
    t.add_argument(
        "--teacher-steps",
        type=int,
        default=tc["teacher_steps"],
        help="reflow: solver steps for the pairs",
    )
    t.add_argument(
        "--init", help="start from this checkpoint's weights (same architecture), e.g. reflow"
    )
    t.add_argument(
        "--ot-workers",
        type=int,
        help="OT couplings: batches whose assignment is solved ahead in background threads "
        "(0: in the step; default: one per free core, at most 4)",
    )
    t.add_argument("--steps", type=int, default=tc["steps"], help="optimisation steps")
    t.add_argument("--batch-size", type=int, help="global batch (default 512 GPU / 256 CPU)")
    t.add_argument(
        "--lr", type=float, default=tc["lr"], help="AdamW learning rate (seed paper 2e-4)"
    )
    t.add_argument(
        "--weight-decay", type=float, default=tc["weight_decay"], help="AdamW weight decay"
    )
    t.add_argument("--ema-decay", type=float, default=tc["ema_decay"], help="EMA decay")
    t.add_argument("--no-ema-warmup", action="store_true", help="fixed EMA decay from step 0")
    t.add_argument(
        "--grad-clip", type=float, default=tc["grad_clip"], help="max grad norm (0 disables)"
    )
    t.add_argument("--warmup", type=int, default=tc["warmup_steps"], help="linear warmup steps")
    t.add_argument("--lr-schedule", default=tc["lr_schedule"], choices=LR_SCHEDULES)
    t.add_argument("--precision", default=tc["precision"], choices=PRECISIONS)
    t.add_argument("--seed", type=int, default=tc["seed"])
    t.add_argument("--out", default=tc["out_dir"], help="output folder (checkpoint, metrics.jsonl)")
    t.add_argument("--resume", action="store_true", help="continue the checkpoint in --out")
    t.add_argument("--overwrite", action="store_true", help="replace a checkpoint in --out")
    t.add_argument("--checkpoint-every", type=int, default=tc["checkpoint_every"])
    t.add_argument("--log-every", type=int, default=tc["log_every"])
    t.add_argument(
        "--sample-every", type=int, default=tc["sample_every"], help="write preview PNGs (0: never)"
    )
    t.add_argument("--data-root", help="folder with image data sets (or your image folder)")
    t.add_argument("--download", action="store_true", help="download the data set if missing")
    t.add_argument("--flip", action="store_true", help="random horizontal flips")
    t.add_argument("--image-size", type=int, help="folder data: resize to this size")
    t.add_argument("--image-channels", type=int, choices=(1, 3), help="folder data: channels")
    t.add_argument("--device", default=tc["device"], help="auto, cpu, cuda, cuda:1 ...")
    t.add_argument("--quiet", action="store_true", help="no progress bar")

    s = sub.add_parser("sample", help="draw samples from a checkpoint", description="Draw samples.")
    s.add_argument("checkpoint", type=Path)
    _add_solver_args(s)
    s.add_argument("-n", "--num", type=int, default=64, help="number of samples")
    s.add_argument("--seed", type=int, default=0)
    s.add_argument(
        "--out", default="samples", help="output prefix: writes PREFIX.npz and PREFIX.png"
    )
    s.add_argument("--gif", action="store_true", help="also write the trajectory as PREFIX.gif")
    s.add_argument("--no-ema", action="store_true", help="use the raw weights instead of the EMA")
    s.add_argument("--device", default="auto")

    lk = sub.add_parser(
        "likelihood",
        help="negative log-likelihood / bits per dim",
        description="Log-likelihood of data under a checkpoint.",
    )
    lk.add_argument("checkpoint", type=Path)
    _add_solver_args(lk, steps_default=20)
    lk.add_argument("--data-file", type=Path, help=".npy file of points (default: fresh data)")
    lk.add_argument("--data-root", help="folder with image data sets")
    lk.add_argument("-n", "--num", type=int, default=256, help="number of data points")
    lk.add_argument(
        "--divergence",
        default="auto",
        choices=("auto", "exact", "hutchinson"),
        help="auto: exact up to 16 dimensions, else Hutchinson",
    )
    lk.add_argument("--probes", type=int, default=1, help="Hutchinson probes")
    lk.add_argument("--seed", type=int, default=0)
    lk.add_argument("--device", default="auto")

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

    e = sub.add_parser("eval", help="sample-quality metrics", description="Evaluate a checkpoint.")
    e.add_argument("checkpoint", type=Path)
    _add_solver_args(e)
    e.add_argument("-n", "--num", type=int, default=2000, help="samples compared")
    e.add_argument("--seed", type=int, default=0)
    e.add_argument("--json", action="store_true", help="print the results as JSON")
    e.add_argument(
        "--inception-weights",
        type=Path,
        help="Inception-v3 weights file for standard FID/IS (default: the shipped offline "
        "classifier, whose metrics are named FD-FMNIST, FD-DIGITS...)",
    )
    e.add_argument("--data-root", help="folder with image data sets")
    e.add_argument("--device", default="auto")
    return parser


def _model_config(args, shape):
    from .config import default_model_config
    from .nets import MLPConfig, ResNetConfig, UNetConfig

    arch = args.model
    if arch is None:
        base = default_model_config(shape)
        arch = base.arch
    mlp_only = {"--layer-norm": args.layer_norm, "--residual": args.residual}
    vec_only = {
        "--width": args.width,
        "--activation": args.activation,
        "--time-embedding": args.time_embedding,
    }
    if arch == "unet":
        bad = [k for k, v in {**mlp_only, **vec_only, "--depth": args.depth}.items() if v]
        if bad:
            raise ValueError(f"{', '.join(bad)} do not apply to --model unet")
        base = default_model_config(shape) if len(shape) == 3 else UNetConfig(data_shape=shape)
        changes = {}
        if args.channels:
            changes["channels"] = args.channels
        if args.res_blocks:
            changes["num_res_blocks"] = args.res_blocks
        for flag, key in (("channel_mult", "channel_mult"), ("attention", "attention_levels")):
            text = getattr(args, flag)
            if text is not None:
                try:
                    changes[key] = tuple(int(v) for v in text.split(",") if v.strip())
                except ValueError:
                    raise ValueError(
                        f"--{flag.replace('_', '-')} must be integers like 1,2,2, got {text!r}"
                    ) from None
        return UNetConfig(**{**base.__dict__, **changes})
    unet_only = [
        f"--{k.replace('_', '-')}"
        for k in ("channels", "channel_mult", "attention", "res_blocks")
        if getattr(args, k) is not None
    ]
    if unet_only:
        raise ValueError(f"{', '.join(unet_only)} apply to --model unet only")
    kw = {"data_shape": shape}
    for key in ("width", "activation", "time_embedding"):
        if getattr(args, key) is not None:
            kw[key] = getattr(args, key)
    if arch == "mlp":
        if args.depth is not None:
            kw["depth"] = args.depth
        return MLPConfig(**kw, layer_norm=args.layer_norm, residual=args.residual)
    if any(mlp_only.values()):
        raise ValueError("--layer-norm and --residual apply to --model mlp only")
    if args.depth is not None:
        kw["num_blocks"] = args.depth
    return ResNetConfig(**kw)


def _train(args) -> int:
    from .callbacks import Callback, ProgressBar
    from .config import TrainConfig
    from .data import dataset_shape
    from .losses import LossConfig
    from .train import fit

    shape = dataset_shape(args.data, image_size=args.image_size, channels=args.image_channels)
    loss = LossConfig(
        args.loss,
        sigma=args.sigma,
        alpha=args.alpha,
        dt=args.dt,
        num_segments=args.segments,
        fm_weight=args.fm_weight,
        coupling=args.coupling,
    )
    config = TrainConfig(
        data=args.data,
        source=args.source,
        model=_model_config(args, shape),
        loss=loss,
        steps=args.steps,
        batch_size=args.batch_size,
        lr=args.lr,
        weight_decay=args.weight_decay,
        ema_decay=args.ema_decay,
        ema_warmup=not args.no_ema_warmup,
        grad_clip=args.grad_clip or None,
        warmup_steps=args.warmup,
        lr_schedule=args.lr_schedule,
        precision=args.precision,
        seed=args.seed,
        out_dir=args.out,
        checkpoint_every=args.checkpoint_every,
        log_every=args.log_every,
        sample_every=args.sample_every,
        data_root=args.data_root,
        download=args.download,
        flip=args.flip,
        image_size=args.image_size,
        channels=args.image_channels,
        device=args.device,
        teacher=args.teacher,
        teacher_method=args.teacher_solver,
        teacher_steps=args.teacher_steps,
        init=args.init,
        **({} if args.ot_workers is None else {"ot_workers": args.ot_workers}),
    )
    out = Path(args.out)

    class Previews(Callback):
        def on_preview(self, step, samples):
            from .viz import save_image_grid, save_scatter

            path = out / f"preview_{step:07d}.png"
            if samples.ndim == 4:
                save_image_grid(path, samples, scale=2)
            else:
                save_scatter(path, samples, title=f"step {step}")

    callbacks = [] if args.quiet else [ProgressBar()]
    if args.sample_every:
        callbacks.append(Previews())
    command = "python -m ecnf " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    result = fit(config, callbacks, resume=args.resume, overwrite=args.overwrite, command=command)
    if result.reason == "completed":
        print(f"trained {result.step} steps in {result.wall_time_s:.1f} s -> {result.checkpoint}")
        return 0
    print(
        f"{result.reason} at step {result.step}; state saved to {result.checkpoint}; "
        f"continue with the same command plus --resume"
    )
    return 130 if result.reason == "interrupted" else 0


def _load(args, use_ema: bool = True):
    from .checkpoint import checkpoint_info, load
    from .train import resolve_device

    device = resolve_device(args.device)
    model = load(args.checkpoint, device=device, use_ema=use_ema)
    info = checkpoint_info(args.checkpoint)
    return model, info, device


def _sample(args) -> int:
    from .solvers import integrate
    from .viz import save_image_grid, save_scatter, save_trajectory_gif

    model, _, device = _load(args, use_ema=not args.no_ema)
    shape = tuple(model.config.data_shape)
    gen = torch.Generator().manual_seed(args.seed)
    x0 = torch.randn((args.num, *shape), generator=gen).to(device)
    start = time.perf_counter()
    sol = integrate(model, x0, return_trajectory=args.gif, **_solver_kwargs(args))
    if device.type == "cuda":
        torch.cuda.synchronize()
    seconds = time.perf_counter() - start
    prefix = Path(args.out)
    prefix.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"samples": sol.x.cpu().numpy(), "nfe": np.array(sol.nfe)}
    if sol.trajectory is not None:
        arrays["trajectory"] = sol.trajectory.cpu().numpy()
        arrays["times"] = sol.times.cpu().numpy()
    np.savez(prefix.with_suffix(".npz"), **arrays)
    title = f"{args.solver}, NFE {sol.nfe}"
    if len(shape) == 3:
        save_image_grid(prefix.with_suffix(".png"), sol.x, scale=2)
    elif shape == (2,):
        save_scatter(prefix.with_suffix(".png"), sol.x, title=title)
    if args.gif:
        save_trajectory_gif(prefix.with_suffix(".gif"), sol.trajectory)
    print(
        f"{args.num} samples, solver {args.solver}, NFE {sol.nfe}, {seconds:.3f} s "
        f"(wall time of the ODE solve on {device}) -> {prefix.with_suffix('.npz')}"
    )
    return 0


def _reference_data(info: dict, num: int, seed: int, data_root=None, train=True) -> torch.Tensor:
    from .data import TOY_DATASETS, load_images, sample_toy, to_model_range

    name = info["metadata"]["dataset"]
    if name in TOY_DATASETS:
        return sample_toy(name, num, generator=torch.Generator().manual_seed(seed))
    images = load_images(name, root=data_root, train=train)
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:num]
    return to_model_range(images[idx])


def _likelihood(args) -> int:
    from .likelihood import bits_per_dim, dequantize, log_prob

    model, info, device = _load(args)
    shape = tuple(model.config.data_shape)
    if args.data_file:
        x = torch.as_tensor(np.load(args.data_file, allow_pickle=False), dtype=torch.float32)
        if tuple(x.shape[1:]) != shape:
            raise ValueError(
                f"--data-file holds shape {tuple(x.shape)}; the model needs (N, {shape})"
            )
        x = x[: args.num]
    else:
        x = _reference_data(info, args.num, args.seed + 1, args.data_root, train=False)
    dims = int(np.prod(shape))
    if len(shape) == 3:
        x = dequantize(x, torch.Generator().manual_seed(args.seed))
    divergence = args.divergence
    if divergence == "auto":
        divergence = "exact" if dims <= 16 else "hutchinson"
    start = time.perf_counter()
    res = log_prob(
        model,
        x.to(device),
        divergence=divergence,
        num_probes=args.probes,
        generator=torch.Generator(device=device).manual_seed(args.seed),
        **_solver_kwargs(args),
    )
    seconds = time.perf_counter() - start
    nll = -res.log_prob.mean().item()
    line = (
        f"NLL {nll:.4f} nats over {len(x)} points ({divergence} divergence, {args.solver}, "
        f"NFE {res.nfe}, {seconds:.1f} s)"
    )
    if len(shape) == 3:
        bpd = bits_per_dim(res.log_prob, dims).mean().item()
        line += f"; {bpd:.4f} bits/dim (uniform dequantization, 8-bit data in [-1, 1])"
    print(line)
    return 0


def _eval(args) -> int:
    from .data import TOY_DATASETS, sample_toy
    from .metrics import mmd2, wasserstein2
    from .solvers import integrate

    model, info, device = _load(args)
    shape = tuple(model.config.data_shape)
    name = info["metadata"].get("dataset")
    if shape != (2,) or name not in TOY_DATASETS:
        return _eval_images(args, info, device)
    source = info["metadata"].get("source", "gaussian")
    gen = torch.Generator().manual_seed(args.seed)
    x0 = sample_toy(source, args.num, generator=gen).to(device)
    start = time.perf_counter()
    sol = integrate(model, x0, **_solver_kwargs(args))
    seconds = time.perf_counter() - start
    fresh = _reference_data(info, args.num, args.seed + 1)
    floor = _reference_data(info, args.num, args.seed + 2)
    results = {
        "dataset": name,
        "solver": args.solver,
        "nfe": sol.nfe,
        "num_samples": args.num,
        "w2": wasserstein2(sol.x.cpu(), fresh),
        "w2_data_vs_data": wasserstein2(floor, fresh),
        "mmd2": mmd2(sol.x.cpu(), fresh),
        "mmd2_data_vs_data": mmd2(floor, fresh),
        "solve_seconds": seconds,
    }
    if args.json:
        print(json.dumps(results))
    else:
        print(f"{name}: {args.num} samples, {args.solver}, NFE {sol.nfe}")
        r = results
        print(f"  W2 (exact OT)          {r['w2']:.4f}   data vs data {r['w2_data_vs_data']:.4f}")
        print(
            f"  MMD^2 (RBF, unbiased)  {r['mmd2']:.5f}  data vs data {r['mmd2_data_vs_data']:.5f}"
        )
    return 0


def _eval_images(args, info: dict, device) -> int:
    from .cards import evaluate_image_checkpoint, image_feature_net
    from .solvers import FIXED_METHODS

    net = image_feature_net(info["metadata"]["dataset"], args.inception_weights)
    kw = _solver_kwargs(args)
    fixed = args.solver in FIXED_METHODS
    rows = [(args.solver, args.steps, 0)] if fixed else []
    if not fixed and (args.solver, kw["rtol"], kw["atol"]) != ("dopri5", 1e-5, 1e-5):
        raise ValueError("image eval measures adaptive sampling with dopri5 at rtol=atol=1e-5")
    ev = evaluate_image_checkpoint(
        args.checkpoint,
        num_samples=args.num,
        seed=args.seed,
        rows=rows,
        adaptive=not fixed,
        feature_net=net,
        data_root=args.data_root,
        device=device,
    )
    if args.json:
        print(json.dumps(ev, default=float))
        return 0
    row, floor = ev["rows"][0], ev["floor"]
    print(
        f"{ev['data']}: {args.num} samples, {row['method']}, NFE {row['nfe']}, "
        f"features: {ev['feature_net']}"
    )
    for key in [*ev["metrics"].values(), "sample_entropy"]:
        print(f"  {key:<16} {row[key]:10.4f}   real vs real {floor[key]:10.4f}")
    return 0


def _export(args) -> int:
    from .checkpoint import read_checkpoint, save_checkpoint
    from .nets import build_model, config_from_dict

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


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status (errors print one line, status 2)."""
    from .checkpoint import CheckpointError
    from .train import TrainingDiverged

    args = _parser().parse_args(argv)
    handlers = {
        "train": _train,
        "sample": _sample,
        "likelihood": _likelihood,
        "eval": _eval,
        "export": _export,
    }
    try:
        return handlers[args.command](args)
    except TrainingDiverged as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except (ValueError, FileNotFoundError, CheckpointError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


def main_entry() -> None:
    """Console-script entry point (``ecnf ...``)."""
    raise SystemExit(main())

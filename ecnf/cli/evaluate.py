"""``python -m ecnf eval`` (sample quality beside the data floor) and ``likelihood``."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import torch

from ._common import add_solver_args, check_count, load_checkpoint, parse_classes, solver_kwargs

__all__ = ["add_eval_parser", "add_likelihood_parser", "run_eval", "run_likelihood"]


def add_likelihood_parser(sub) -> None:
    lk = sub.add_parser(
        "likelihood",
        help="negative log-likelihood / bits per dim",
        description="Log-likelihood of data under a checkpoint.",
    )
    lk.add_argument("checkpoint", type=Path)
    add_solver_args(lk, steps_default=20)
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


def add_eval_parser(sub) -> None:
    e = sub.add_parser("eval", help="sample-quality metrics", description="Evaluate a checkpoint.")
    e.add_argument("checkpoint", type=Path)
    add_solver_args(e)
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
    e.add_argument(
        "--reference",
        choices=["test", "train"],
        default="test",
        help="images: the real images compared with the samples (train: as CIFAR-10 FIDs are "
        "usually reported, e.g. TorchCFM's 50,000 samples against the training set)",
    )
    e.add_argument(
        "--label",
        help="class-conditional 2D models: the classes to sample (3 or 3,5; 'all'), judged "
        "against fresh data of those classes; images take 'all' (every class in turn) and "
        "report the classifier's accuracy on the intended classes",
    )
    e.add_argument(
        "--guidance", type=float, default=1.0, help="classifier-free guidance scale with --label"
    )
    e.add_argument("--device", default="auto")


def _test_data(info: dict, num: int, seed: int, data_root=None) -> torch.Tensor:
    """``num`` fresh points of the model's data: a seeded toy draw or test-split images."""
    from ..data import is_toy, load_images, sample_toy, to_model_range

    name = info["metadata"]["dataset"]
    if is_toy(name):
        return sample_toy(name, num, generator=torch.Generator().manual_seed(seed))
    images = load_images(name, root=data_root, train=False)
    idx = torch.randperm(len(images), generator=torch.Generator().manual_seed(seed))[:num]
    return to_model_range(images[idx])


def run_likelihood(args) -> int:
    from ..likelihood import bits_per_dim, dequantize, log_prob

    check_count("-n/--num", args.num)
    model, info, device = load_checkpoint(args)
    shape = tuple(model.config.data_shape)
    if args.data_file:
        x = torch.as_tensor(np.load(args.data_file, allow_pickle=False), dtype=torch.float32)
        if tuple(x.shape[1:]) != shape:
            raise ValueError(
                f"--data-file holds shape {tuple(x.shape)}; the model needs (N, {shape})"
            )
        x = x[: args.num]
    else:
        x = _test_data(info, args.num, args.seed + 1, args.data_root)
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
        **solver_kwargs(args),
    )
    seconds = time.perf_counter() - start
    nll = -res.log_prob.mean().item()
    line = (
        f"NLL {nll:.4f} nats over {len(x)} points ({divergence} divergence, {args.method}, "
        f"NFE {res.nfe}, {seconds:.1f} s)"
    )
    if len(shape) == 3:
        bpd = bits_per_dim(res.log_prob, dims).mean().item()
        line += f"; {bpd:.4f} bits/dim (uniform dequantization, 8-bit data in [-1, 1])"
    print(line)
    return 0


def run_eval(args) -> int:
    from ..data import is_toy
    from ..evaluation import class_labels, data_floor, toy_sets
    from ..guidance import guided
    from ..metrics import mmd2, wasserstein2
    from ..solvers import integrate

    check_count("-n/--num", args.num, minimum=2)
    model, info, device = load_checkpoint(args)
    shape = tuple(model.config.data_shape)
    name = info["metadata"].get("dataset")
    classes = _classes(args, model)
    if shape != (2,) or not is_toy(name):
        if classes is not None:
            return _eval_guided_images(args, model, info, classes)
        return _eval_images(args, info, device)
    # the sets of the model cards and the studio: noise, fresh data, a second fresh set
    source = info["metadata"].get("source", "gaussian")
    sets = toy_sets(name, source, args.num, args.seed, classes=classes)
    velocity = model
    if classes is not None:
        labels = class_labels(name, args.num, args.seed, classes)
        velocity = guided(model, labels.to(device), args.guidance)
    start = time.perf_counter()
    sol = integrate(velocity, sets.x0.to(device), **solver_kwargs(args))
    seconds = time.perf_counter() - start
    floor = data_floor(sets)
    results = {
        "dataset": name,
        "method": args.method,
        "nfe": sol.nfe,
        "num_samples": args.num,
        "seed": args.seed,
        "w2": wasserstein2(sol.x.cpu(), sets.fresh),
        "w2_data_vs_data": floor["w2"],
        "mmd2": mmd2(sol.x.cpu(), sets.fresh),
        "mmd2_data_vs_data": floor["mmd2"],
        "solve_seconds": seconds,
    }
    if classes is not None:
        results.update(classes=list(classes), guidance=args.guidance)
    if args.json:
        print(json.dumps(results))
        return 0
    r = results
    guided_line = (
        ""
        if classes is None
        else f", classes {','.join(map(str, classes))} at guidance {args.guidance:g} (judged "
        "against fresh data of those classes)"
    )
    print(
        f"{name}: {args.num} samples, {args.method}, NFE {sol.nfe}, seed {args.seed}{guided_line}"
    )
    print(f"  W2 (exact OT)          {r['w2']:.4f}   data vs data {r['w2_data_vs_data']:.4f}")
    print(f"  MMD^2 (RBF, unbiased)  {r['mmd2']:.5f}  data vs data {r['mmd2_data_vs_data']:.5f}")
    return 0


def _classes(args, model) -> tuple[int, ...] | None:
    """The classes ``--label`` asks for, sorted (None: unconditional, the null label)."""
    classes = parse_classes(args.label, getattr(model.config, "num_classes", 0))
    if classes is None and args.guidance != 1.0:
        raise ValueError("--guidance applies with --label (the classes to guide towards)")
    return None if classes is None else tuple(sorted(set(classes)))


def _eval_guided_images(args, model, info: dict, classes: tuple[int, ...]) -> int:
    from ..evaluation import evaluate_guidance, image_feature_net
    from ..metrics import metric_names
    from ..solvers import is_fixed_step

    if len(classes) != model.config.num_classes:
        raise ValueError(
            "image eval under guidance draws every class in turn, to compare with the whole "
            "test split: pass --label all"
        )
    if not is_fixed_step(args.method):
        raise ValueError("image eval under guidance uses a fixed-step solver (--method rk4 ...)")
    net = image_feature_net(info["metadata"]["dataset"], args.inception_weights)
    if not hasattr(net, "probs"):
        raise ValueError("image eval under guidance needs the shipped classifier, not Inception")
    ev = evaluate_guidance(
        model,
        info["metadata"]["dataset"],
        scales=(args.guidance,),
        solver=(args.method, args.steps),
        num_samples=args.num,
        seed=args.seed,
        feature_net=net,
        data_root=args.data_root,
    )
    if args.json:
        print(json.dumps(ev, default=float))
        return 0
    (row,) = ev["rows"]
    print(
        f"{info['metadata']['dataset']}: {ev['num_samples']} samples, every class in turn, "
        f"guidance {args.guidance:g}, {args.method}, NFE {row['nfe']}, features: {net.name}"
    )
    print(
        f"  accuracy on the intended class {row['accuracy']:.4f}   real test images "
        f"{ev['real_accuracy']:.4f}"
    )
    for key in [*metric_names(net).values(), "sample_entropy"]:
        print(f"  {key:<16} {row[key]:10.4f}")
    return 0


def _eval_images(args, info: dict, device) -> int:
    from ..evaluation import ADAPTIVE, evaluate_image_checkpoint, image_feature_net
    from ..solvers import is_fixed_step

    net = image_feature_net(info["metadata"]["dataset"], args.inception_weights)
    fixed = is_fixed_step(args.method)
    method, tol = ADAPTIVE
    if not fixed and (args.method, args.rtol, args.atol) != (method, tol, tol):
        raise ValueError(
            f"image eval measures adaptive sampling with {method} at rtol=atol={tol:g}"
        )
    ev = evaluate_image_checkpoint(
        args.checkpoint,
        num_samples=args.num,
        seed=args.seed,
        rows=[(args.method, args.steps, 0)] if fixed else [],
        adaptive=not fixed,
        feature_net=net,
        data_root=args.data_root,
        device=device,
        reference=args.reference,
    )
    if args.json:
        print(json.dumps(ev, default=float))
        return 0
    row, floor = ev["rows"][0], ev["floor"]
    print(
        f"{ev['data']}: {ev['num_samples']} samples against {ev['num_samples']} "
        f"{ev['reference']} images, {row['method']}, NFE {row['nfe']}, "
        f"features: {ev['feature_net']}, sampler: {ev['sampler']}"
    )
    print(f"  (real vs real: {ev['floor_size']} test against {ev['floor_size']} training images)")
    for key in [*ev["metrics"].values(), "sample_entropy"]:
        print(f"  {key:<16} {row[key]:10.4f}   real vs real {floor[key]:10.4f}")
    return 0

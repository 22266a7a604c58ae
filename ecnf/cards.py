"""Model cards computed from checkpoints: training record plus quality at every NFE budget.

Every number in a card comes from the checkpoint file (its recorded command, steps, wall time
and hardware) or is measured here from it, with the sample size and seed written beside it,
so ``scripts/make_cards.py`` can regenerate all cards and a test can recompute any row.
"""

from __future__ import annotations

import time
from pathlib import Path

import torch
from torch import Tensor

from .checkpoint import checkpoint_info, load
from .data import TOY_DATASETS, load_images, sample_toy, to_model_range
from .metrics import mmd2, wasserstein2
from .solvers import FIXED_METHODS, integrate

__all__ = [
    "BUDGETS",
    "IMAGE_ROWS",
    "evaluate_2d",
    "evaluate_image_checkpoint",
    "image_feature_net",
    "render_card",
    "render_image_card",
    "results_table",
    "solver_grid",
    "toy_sets",
]

#: NFE budgets reported for every fixed-step solver that can spend them exactly.
BUDGETS = (1, 2, 4, 10, 20)
ADAPTIVE = ("dopri5", 1e-5)


def solver_grid(budgets=BUDGETS, methods=tuple(FIXED_METHODS)) -> list[tuple[str, int, int]]:
    """``(method, steps, nfe)`` for every method and budget it divides evenly.

    Example:
        >>> solver_grid((1, 4), ("euler", "rk4"))
        [('euler', 1, 1), ('euler', 4, 4), ('rk4', 1, 4)]
    """
    rows = []
    for method in methods:
        per_step = FIXED_METHODS[method]
        rows += [(method, nfe // per_step, nfe) for nfe in budgets if nfe % per_step == 0]
    return rows


def toy_sets(data: str, source: str, num: int, seed: int) -> tuple[Tensor, Tensor, Tensor]:
    """``(x0, fresh, other)``: ``num`` source points, and two fresh sets of the toy ``data``
    (the reference, and the second set of the data-vs-data floor), from one generator seeded
    with ``seed``. The cards and the studio's solver lab both judge 2D models on these."""
    g = torch.Generator().manual_seed(seed)
    x0 = sample_toy(source, num, generator=g)
    fresh = sample_toy(data, num, generator=g)
    other = sample_toy(data, num, generator=g)
    return x0, fresh, other


@torch.no_grad()
def evaluate_2d(
    path: str | Path,
    *,
    num_samples: int = 2000,
    seed: int = 0,
    budgets=BUDGETS,
    rows: list[tuple[str, int, int]] | None = None,
    adaptive: bool = True,
) -> dict:
    """Measure a 2D checkpoint: exact W2 and MMD² to fresh data at each solver and NFE.

    The source samples, the fresh target samples and a second fresh set (for the
    data-vs-data floor) all come from one generator seeded with ``seed``.

    Returns:
        ``{"path", "num_samples", "seed", "floor": {"w2", "mmd2"}, "rows": [...]}`` where each
        row has ``method``, ``steps``, ``nfe``, ``w2``, ``mmd2`` and ``seconds``.
    """
    info = checkpoint_info(path)
    meta = info["metadata"]
    data, source = meta["dataset"], meta.get("source", "gaussian")
    if data not in TOY_DATASETS:
        raise ValueError(f"{path} was trained on {data!r}, not a 2D data set")
    model = load(path, device="cpu")
    x0, fresh, other = toy_sets(data, source, num_samples, seed)
    results = []
    for method, steps, _ in rows if rows is not None else solver_grid(budgets):
        start = time.perf_counter()
        sol = integrate(model, x0, method=method, steps=steps)
        seconds = time.perf_counter() - start
        results.append(
            {
                "method": method,
                "steps": steps,
                "nfe": sol.nfe,
                "w2": wasserstein2(sol.x, fresh),
                "mmd2": mmd2(sol.x, fresh),
                "seconds": seconds,
            }
        )
    if adaptive:
        method, tol = ADAPTIVE
        start = time.perf_counter()
        sol = integrate(model, x0, method=method, rtol=tol, atol=tol)
        seconds = time.perf_counter() - start
        results.append(
            {
                "method": f"{method} (rtol=atol={tol:g})",
                "steps": None,
                "nfe": sol.nfe,
                "w2": wasserstein2(sol.x, fresh),
                "mmd2": mmd2(sol.x, fresh),
                "seconds": seconds,
            }
        )
    return {
        "path": str(path),
        "data": data,
        "source": source,
        "num_samples": num_samples,
        "seed": seed,
        "floor": {"w2": wasserstein2(other, fresh), "mmd2": mmd2(other, fresh)},
        "rows": results,
    }


def _fmt(value, digits=4) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _training_record(info: dict) -> list[str]:
    """The card section read from the checkpoint header: command, budget, hardware, file."""
    meta, model = info["metadata"], info["model_config"]
    params = info.get("tensors", {}).get("model", {}).get("numel")
    lines = [
        "## Training record (read from the checkpoint)",
        "",
        f"- Command: `{meta.get('command')}`",
    ]
    lines += [f"- Resumed with: `{c}`" for c in meta.get("resumed_with") or []]
    lines += [
        f"- Steps: {meta.get('steps')}, batch {meta.get('batch_size')}, "
        f"wall time {meta.get('wall_time_s')} s on {meta.get('hardware')}",
        f"- Versions: {meta.get('versions')}",
        f"- Network: `{model.get('arch')}` {model}, {params} parameters",
        f"- File: {info['file_bytes'] / 1e6:.2f} MB, weights `{meta.get('weights', 'raw')}`",
        "",
    ]
    return lines


def render_card(name: str, info: dict, evaluation: dict) -> str:
    """Markdown model card from :func:`~ecnf.checkpoint.checkpoint_info` and an evaluation."""
    meta = info["metadata"]
    lines = [
        f"# {name}",
        "",
        f"A continuous normalizing flow from `{evaluation['source']}` noise to "
        f"`{evaluation['data']}`, trained with the `{meta.get('loss')}` objective.",
        "",
        *_training_record(info),
        "## Sample quality against the number of function evaluations (NFE)",
        "",
        f"Exact Wasserstein-2 distance (POT-equivalent exact assignment) and unbiased MMD² "
        f"(sum of RBF kernels) between {evaluation['num_samples']} samples and "
        f"{evaluation['num_samples']} fresh data points, seed {evaluation['seed']}. "
        f"Floor: the same metrics between two fresh data sets "
        f"(W2 {_fmt(evaluation['floor']['w2'])}, "
        f"MMD² {_fmt(evaluation['floor']['mmd2'], 5)}).",
        "",
        "| solver | steps | NFE | W2 | MMD² | solve time (s) |",
        "|---|---|---|---|---|---|",
    ]
    for r in evaluation["rows"]:
        lines.append(
            f"| {r['method']} | {r['steps'] if r['steps'] is not None else 'adaptive'} | "
            f"{r['nfe']} | {_fmt(r['w2'])} | {_fmt(r['mmd2'], 5)} | {r['seconds']:.3f} |"
        )
    lines += [
        "",
        "Regenerate with `python scripts/make_cards.py` (solve times are wall-clock on the "
        "machine that ran it and vary with load).",
        "",
    ]
    return "\n".join(lines)


def results_table(evaluations: dict[str, dict]) -> str:
    """One markdown row per checkpoint: W2 at a few budgets and adaptive, beside the floor."""
    cols = [("euler", 1), ("euler", 2), ("euler", 4), ("euler", 10), ("rk4", 1), ("rk4", 5)]
    header = " | ".join(f"{m} {s} step{'s' if s > 1 else ''}" for m, s in cols)
    lines = [
        f"| checkpoint | {header} | dopri5 (NFE) | data floor |",
        "|---" * (len(cols) + 3) + "|",
    ]
    for name, ev in evaluations.items():
        by_key = {(r["method"], r["steps"]): r for r in ev["rows"]}
        cells = [_fmt(by_key[c]["w2"]) if c in by_key else "n/a" for c in cols]
        adaptive = [r for r in ev["rows"] if r["steps"] is None]
        ad = f"{_fmt(adaptive[0]['w2'])} ({adaptive[0]['nfe']})" if adaptive else "n/a"
        lines.append(f"| {name} | {' | '.join(cells)} | {ad} | {_fmt(ev['floor']['w2'])} |")
    return "\n".join(lines)


#: Solver rows measured for image checkpoints: every fixed-step solver at NFE 1, 2, 4, 10, 20.
IMAGE_ROWS = solver_grid()


def image_feature_net(dataset: str, inception_weights: str | Path | None = None):
    """The feature network for image metrics: Inception-v3 given its weights file, otherwise
    the classifier shipped for ``dataset`` (metrics then named FD-FMNIST, FD-DIGITS...)."""
    from .metrics import CLASSIFIER_DATASETS, ClassifierFeatures, InceptionFeatures
    from .metrics.classifier import shipped_classifier_path

    if inception_weights is not None:
        return InceptionFeatures(inception_weights, download=False)
    if dataset in CLASSIFIER_DATASETS:
        return ClassifierFeatures(shipped_classifier_path(dataset))
    raise ValueError(
        f"no offline feature network for {dataset!r}: pass an Inception-v3 weights file "
        "(--inception-weights PATH) to compute FID"
    )


@torch.no_grad()
def evaluate_image_checkpoint(
    path: str | Path,
    *,
    num_samples: int = 1000,
    seed: int = 0,
    rows: list[tuple[str, int, int]] | None = None,
    adaptive: bool = True,
    feature_net=None,
    data_root: str | Path | None = None,
    batch_size: int = 250,
    device: str | torch.device = "cpu",
) -> dict:
    """Image metrics of a checkpoint's samples against real test images, per solver and NFE.

    The noise comes from a generator seeded with ``seed``; the real images are a seeded
    subset of the test split, and the floor compares them with training images.
    """
    from .metrics import evaluate_images, metric_names, reference_statistics

    info = checkpoint_info(path)
    data = info["metadata"]["dataset"]
    net = feature_net or image_feature_net(data)
    model = load(path, device=device)
    shape = tuple(model.config.data_shape)
    test = load_images(data, root=data_root, train=False)
    train = load_images(data, root=data_root, train=True)
    num_samples = min(num_samples, len(test))  # as many samples as real test images
    g = torch.Generator().manual_seed(seed)
    reference = to_model_range(test[torch.randperm(len(test), generator=g)[:num_samples]])
    noise = torch.randn((num_samples, *shape), generator=g)

    def sample(**kw) -> tuple[Tensor, int, float]:
        start, nfe, out = time.perf_counter(), 0, []
        for chunk in noise.split(batch_size):
            sol = integrate(model, chunk.to(device), **kw)
            out.append(sol.x.cpu())
            nfe = max(nfe, sol.nfe)
        return torch.cat(out), nfe, time.perf_counter() - start

    results = []
    plan = [(m, s, {"method": m, "steps": s}) for m, s, _ in (rows or IMAGE_ROWS)]
    if adaptive:
        method, tol = ADAPTIVE
        plan.append(
            (f"{method} (rtol=atol={tol:g})", None, {"method": method, "rtol": tol, "atol": tol})
        )
    for label, steps, kw in plan:
        x, nfe, seconds = sample(**kw)
        scores = evaluate_images(x, reference, net)
        results.append({"method": label, "steps": steps, "nfe": nfe, "seconds": seconds, **scores})
    floor = reference_statistics(test, train, net, sizes=(num_samples,), seed=seed)[0]
    device = torch.device(device)
    return {
        "path": str(path),
        "sampler_device": (torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"),
        "data": data,
        "num_samples": num_samples,
        "seed": seed,
        "feature_net": net.name,
        "metrics": metric_names(net),
        "floor": floor,
        "rows": results,
    }


def render_image_card(name: str, info: dict, evaluation: dict) -> str:
    """Markdown model card for an image checkpoint (metrics named after their feature net)."""
    meta = info["metadata"]
    names = evaluation["metrics"]
    keys = [names[k] for k in ("fd", "kid", "is") if k in names] + ["sample_entropy"]
    floor = evaluation["floor"]
    lines = [
        f"# {name}",
        "",
        f"A continuous normalizing flow from Gaussian noise to `{evaluation['data']}` images, "
        f"trained with the `{meta.get('loss')}` objective.",
        "",
        *_training_record(info),
        "## Sample quality against the number of function evaluations (NFE)",
        "",
        f"{evaluation['num_samples']} samples against {evaluation['num_samples']} real test "
        f"images (seed {evaluation['seed']}), features of `{evaluation['feature_net']}`"
        + (
            " (Inception-v3: standard FID/KID/IS)."
            if evaluation["feature_net"] == "inception-v3"
            else " (the project's shipped classifier, not Inception: these are not FID/IS and "
            "are not comparable with published FIDs)."
        ),
        "Floor (real test images against real training images, same size): "
        + ", ".join(f"{k} {_fmt(floor[k])}" for k in keys)
        + ".",
        "",
        "| solver | steps | NFE | " + " | ".join(keys) + " | sampling time (s) |",
        "|---" * (len(keys) + 4) + "|",
    ]
    for r in evaluation["rows"]:
        steps = r["steps"] if r["steps"] is not None else "adaptive"
        cells = " | ".join(_fmt(r[k]) for k in keys)
        lines.append(f"| {r['method']} | {steps} | {r['nfe']} | {cells} | {r['seconds']:.1f} |")
    where = evaluation.get("sampler_device")
    lines += [
        "",
        (f"Samples drawn and timed on {where}. " if where else "")
        + "Regenerate with `python scripts/make_cards.py` (times vary with load).",
        "",
    ]
    return "\n".join(lines)

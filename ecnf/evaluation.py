"""Sample quality of a checkpoint at every solver budget, and the data-vs-data floor.

One function per quantity, used by the CLI (``ecnf eval``), the model cards
(``scripts/make_cards.py``), the studio, the Gradio demo and the notebooks alike:

- :func:`toy_sets` draws the source noise and two fresh sets of a 2D toy from one seed;
- :func:`data_floor` is the metric between those two fresh sets, what a perfect model would
  reach with that many samples;
- :func:`evaluate_2d` and :func:`evaluate_image_checkpoint` measure a checkpoint at each
  solver and NFE, beside that floor; :func:`compare_to_data` judges samples already drawn.

Every number comes with the sample size and seed that produced it, so a card's row can be
recomputed by anyone (``tests/test_cards.py`` does).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from ._checks import check_choice, check_positive_int
from .checkpoint import checkpoint_info, load
from .data import (
    dataset_classes,
    is_toy,
    load_images,
    load_labels,
    sample_toy,
    sample_toy_labelled,
    to_model_range,
)
from .metrics import mmd2, wasserstein2
from .solvers import (
    FIXED_METHODS,
    MEAN_FLOW_METHODS,
    integrate,
    nfe_per_step,
    solver_options,
    supports_mean_flow,
)

__all__ = [
    "ADAPTIVE",
    "BUDGETS",
    "GUIDANCE_SCALES",
    "GUIDANCE_SOLVER",
    "IMAGE_ROWS",
    "ToySets",
    "W2Report",
    "class_labels",
    "compare_to_data",
    "data_floor",
    "evaluate_2d",
    "evaluate_guidance",
    "evaluate_image_checkpoint",
    "image_feature_net",
    "solver_grid",
    "stepped_methods",
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
        per_step = nfe_per_step(method)
        rows += [(method, nfe // per_step, nfe) for nfe in budgets if nfe % per_step == 0]
    return rows


def stepped_methods(model: object) -> tuple[str, ...]:
    """The fixed-step methods ``model`` is judged with: every ODE solver, and the MeanFlow jump
    where the network takes two times (``mean_flow=True``).

    Example:
        >>> stepped_methods(lambda x, t: x)
        ('euler', 'midpoint', 'heun', 'rk4')
    """
    extra = tuple(MEAN_FLOW_METHODS) if supports_mean_flow(model) else ()
    return (*FIXED_METHODS, *extra)


class ToySets(NamedTuple):
    """What a 2D model is judged on (see :func:`toy_sets`)."""

    x0: Tensor  #: source noise, shape (num, 2)
    fresh: Tensor  #: fresh data, the reference the samples are compared with
    other: Tensor  #: a second fresh data set, for the data-vs-data floor


def toy_sets(
    data: str, source: str, num: int, seed: int, *, classes: tuple[int, ...] | None = None
) -> ToySets:
    """``(x0, fresh, other)``: ``num`` source points, then two fresh sets of the toy ``data``
    (the reference, and the second set of the data-vs-data floor), drawn in that order from
    one CPU generator seeded with ``seed``.

    With ``classes`` (of a labelled toy or drawing), the fresh sets hold only points of those
    classes, in the data's own proportions: what guided samples of a class-conditional model
    are judged on (their labels: :func:`class_labels`).

    Example:
        >>> sets = toy_sets("moons", "gaussian", 4, seed=0)
        >>> [tuple(t.shape) for t in sets]
        [(4, 2), (4, 2), (4, 2)]
        >>> lower = toy_sets("moons", "gaussian", 300, seed=0, classes=(1,))
        >>> float(lower.fresh[:, 1].mean()) < 0 < float(toy_sets("moons", "gaussian", 300, 0,
        ...     classes=(0,)).fresh[:, 1].mean())
        True
    """
    check_positive_int("num", num, minimum=2)
    check_positive_int("seed", seed, minimum=0)
    g = torch.Generator().manual_seed(seed)
    x0 = sample_toy(source, num, generator=g)
    if classes is None:
        fresh = sample_toy(data, num, generator=g)
        other = sample_toy(data, num, generator=g)
        return ToySets(x0, fresh, other)
    chosen = _check_classes(data, classes)
    fresh, _ = _of_classes(data, chosen, num, g)
    other, _ = _of_classes(data, chosen, num, g)
    return ToySets(x0, fresh, other)


def class_labels(data: str, num: int, seed: int, classes: tuple[int, ...]) -> Tensor:
    """The classes ``num`` guided samples are drawn for: among ``classes``, in the data's
    own proportions (so the guided samples are comparable with :func:`toy_sets`' fresh
    sets for the same ``classes``), from a generator of their own seeded with ``seed``.

    Example:
        >>> class_labels("8gaussians", 6, 0, (2, 5)).unique().tolist()
        [2, 5]
    """
    check_positive_int("num", num)
    chosen = _check_classes(data, classes)
    g = torch.Generator().manual_seed(seed + 7_654_321)
    return _of_classes(data, chosen, num, g)[1]


def _check_classes(data: str, classes: tuple[int, ...]) -> list[int]:
    names = dataset_classes(data)
    if not names:
        raise ValueError(f"{data!r} has no classes to choose among")
    chosen = sorted(set(int(k) for k in classes))
    if not chosen or not all(0 <= k < len(names) for k in chosen):
        raise ValueError(
            f"classes={tuple(classes)!r} must be one or more of the classes "
            f"0..{len(names) - 1} of {data!r}"
        )
    return chosen


def _of_classes(data: str, classes: list[int], num: int, g) -> tuple[Tensor, Tensor]:
    """``num`` labelled points of ``data`` whose class is among ``classes``, by rejection."""
    points, labels, kept = [], [], 0
    while kept < num:
        x, y = sample_toy_labelled(data, max(num, 256) * 2, generator=g)
        keep = torch.isin(y, torch.tensor(classes))
        points.append(x[keep])
        labels.append(y[keep])
        kept += int(keep.sum())
    return torch.cat(points)[:num], torch.cat(labels)[:num]


def data_floor(sets: ToySets) -> dict[str, float]:
    """``{"w2", "mmd2"}`` between the two fresh sets of ``sets``: the data-vs-data floor.

    It is what a perfect model would score against ``sets.fresh`` with that many samples;
    every screen that shows a 2D model's W2 shows this beside it.

    Example:
        >>> floor = data_floor(toy_sets("moons", "gaussian", 500, seed=0))
        >>> 0 < floor["w2"] < 0.5
        True
    """
    return {"w2": wasserstein2(sets.other, sets.fresh), "mmd2": mmd2(sets.other, sets.fresh)}


@dataclass
class W2Report:
    """Result of :func:`compare_to_data`.

    Attributes:
        w2: exact Wasserstein-2 distance between the samples and fresh data.
        floor: the same distance between two fresh data sets of the same size
            (:func:`data_floor`): what a perfect model would reach at this sample size.
        num_samples: the sample size of each set.
    """

    w2: float
    floor: float
    num_samples: int


def compare_to_data(
    samples: Tensor,
    data: str,
    *,
    source: str = "gaussian",
    seed: int = 0,
    classes: tuple[int, ...] | None = None,
) -> W2Report:
    """Exact W2 from 2D ``samples`` to fresh points of the toy ``data``, beside the floor.

    The fresh sets are those of :func:`toy_sets` with ``len(samples)`` points, ``source``
    and ``seed`` (and ``classes``: then only the data of those classes), so the floor is
    the one ``ecnf eval`` and the model cards report for the same seed and size.

    Example:
        >>> real = sample_toy("moons", 300, generator=torch.Generator().manual_seed(5))
        >>> r = compare_to_data(real, "moons", seed=1)
        >>> r.num_samples, r.w2 < 0.5 and r.floor < 0.5
        (300, True)
    """
    if samples.ndim != 2 or samples.shape[1] != 2:
        raise ValueError(f"samples must have shape (N, 2), got {tuple(samples.shape)}")
    sets = toy_sets(data, source, samples.shape[0], seed, classes=classes)
    samples = samples.detach().float().cpu()
    return W2Report(wasserstein2(samples, sets.fresh), data_floor(sets)["w2"], len(samples))


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
    if not is_toy(data):
        raise ValueError(f"{path} was trained on {data!r}, not a 2D data set")
    model = load(path, device="cpu")
    sets = toy_sets(data, source, num_samples, seed)
    x0, fresh = sets.x0, sets.fresh
    results = []
    grid = solver_grid(budgets, stepped_methods(model))
    for method, steps, _ in rows if rows is not None else grid:
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
        sol = integrate(model, x0, **solver_options(method, rtol=tol, atol=tol))
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
        "floor": data_floor(sets),
        "rows": results,
    }


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
    fast: bool | None = None,
    reference: str = "test",
    guidance_scales: tuple[float, ...] = (),
) -> dict:
    """Image metrics of a checkpoint's samples against real test images, per solver and NFE.

    The noise comes from a generator seeded with ``seed``; the real images are a seeded
    subset of the test split (``reference="train"``: of the training split, as CIFAR-10
    FIDs are usually reported), and the floor compares test with training images. On CUDA
    the fixed-step rows sample through :func:`ecnf.fast.sample` (bf16, compiled, one CUDA
    graph; ``fast=False`` turns it off); the result's ``sampler`` says which path ran.
    For a class-conditional model, ``guidance_scales`` (e.g. :data:`GUIDANCE_SCALES`) adds
    the result's ``guidance``: :func:`evaluate_guidance` at those scales.
    """
    from .fast import fast_path_applies
    from .fast import sample as fast_sample
    from .metrics import evaluate_images, metric_names, reference_statistics

    info = checkpoint_info(path)
    data = info["metadata"]["dataset"]
    net = feature_net or image_feature_net(data)
    model = load(path, device=device)
    shape = tuple(model.config.data_shape)
    test = load_images(data, root=data_root, train=False)
    train = load_images(data, root=data_root, train=True)
    check_choice("reference", reference, ("test", "train"))
    pool = test if reference == "test" else train
    num_samples = min(num_samples, len(pool))  # as many samples as real reference images
    g = torch.Generator().manual_seed(seed)
    real = to_model_range(pool[torch.randperm(len(pool), generator=g)[:num_samples]])
    noise = torch.randn((num_samples, *shape), generator=g)

    def sample(**kw) -> tuple[Tensor, int, float]:
        start, nfe, out = time.perf_counter(), 0, []
        for chunk in noise.split(batch_size):
            sol = fast_sample(model, chunk.to(device), fast=fast, **kw)
            out.append(sol.x.cpu())
            nfe = max(nfe, sol.nfe)
        return torch.cat(out), nfe, time.perf_counter() - start

    results = []
    default_rows = solver_grid(methods=stepped_methods(model))
    plan = [(m, s, solver_options(m, steps=s)) for m, s, _ in (rows or default_rows)]
    if adaptive:
        method, tol = ADAPTIVE
        plan.append(
            (f"{method} (rtol=atol={tol:g})", None, solver_options(method, rtol=tol, atol=tol))
        )
    for label, steps, kw in plan:
        x, nfe, seconds = sample(**kw)
        scores = evaluate_images(x, real, net)
        results.append({"method": label, "steps": steps, "nfe": nfe, "seconds": seconds, **scores})
    floor_size = min(num_samples, len(test), len(train))
    floor = reference_statistics(test, train, net, sizes=(floor_size,), seed=seed)[0]
    guidance = None
    if guidance_scales and getattr(model.config, "num_classes", 0):
        guidance = evaluate_guidance(
            model,
            data,
            scales=guidance_scales,
            num_samples=num_samples,
            seed=seed,
            feature_net=net,
            data_root=data_root,
        )
    device = torch.device(device)
    extra = {} if guidance is None else {"guidance": guidance}
    return {
        "path": str(path),
        "sampler_device": (torch.cuda.get_device_name(device) if device.type == "cuda" else "CPU"),
        "sampler": (
            "fast path for fixed-step rows (bf16, torch.compile, CUDA graph)"
            if fast is not False and fast_path_applies(model, "euler", device)
            else "eager fp32"
        ),
        "data": data,
        "num_samples": num_samples,
        "reference": reference,
        "floor_size": floor_size,
        "seed": seed,
        "feature_net": net.name,
        "metrics": metric_names(net),
        "floor": floor,
        "rows": results,
        **extra,
    }


#: Guidance scales measured for class-conditional checkpoints: unconditional (0),
#: conditional (1) and guided beyond it.
GUIDANCE_SCALES = (0.0, 1.0, 1.5, 2.0, 3.0, 5.0)
#: The solver of the guidance measurements: RK4 with 5 steps (NFE 20, 40 when guided).
GUIDANCE_SOLVER = ("rk4", 5)


@torch.no_grad()
def evaluate_guidance(
    model: torch.nn.Module,
    dataset: str,
    *,
    scales: tuple[float, ...] = GUIDANCE_SCALES,
    solver: tuple[str, int] = GUIDANCE_SOLVER,
    num_samples: int = 1000,
    seed: int = 0,
    feature_net=None,
    data_root: str | Path | None = None,
    batch_size: int = 250,
) -> dict:
    r"""Quality and class fidelity of a class-conditional image model against the guidance
    scale :math:`w`: a curve of FD (on the feature net's features) and of the accuracy of
    the shipped classifier on the samples, judged against the class each was drawn for.

    The same noise and the same labels (every class in turn, so the classes are balanced as
    in the test split) are used at every scale; :math:`w = 0` is the unconditional model.
    The real reference is a seeded subset of the test split, and ``real_accuracy`` is the
    classifier's accuracy on the whole test split: the most a sample set can be expected to
    reach.

    Returns:
        ``{"solver", "steps", "num_samples", "seed", "real_accuracy", "rows"}``; each row has
        ``scale``, ``nfe``, ``accuracy``, ``seconds`` and the feature net's metrics.
    """
    from .guidance import guided, labels_in_turn
    from .metrics import evaluate_images

    num_classes = getattr(model.config, "num_classes", 0)
    if not num_classes:
        raise ValueError("guidance is measured on class-conditional models (num_classes > 0)")
    net = feature_net or image_feature_net(dataset)
    device = next(model.parameters()).device
    test = load_images(dataset, root=data_root, train=False)
    test_labels = load_labels(dataset, root=data_root, train=False)
    num_samples = min(num_samples, len(test))
    g = torch.Generator().manual_seed(seed)
    real = to_model_range(test[torch.randperm(len(test), generator=g)[:num_samples]])
    noise = torch.randn((num_samples, *model.config.data_shape), generator=g)
    labels = labels_in_turn(range(num_classes), num_samples)
    real_accuracy = float((net.probs(test).argmax(1) == test_labels).float().mean())
    method, steps = solver
    rows = []
    for scale in scales:
        start, nfe, out = time.perf_counter(), 0, []
        for x0, y in zip(noise.split(batch_size), labels.split(batch_size), strict=True):
            flow = guided(model, y.to(device), scale)
            sol = integrate(flow, x0.to(device), method=method, steps=steps)
            out.append(sol.x.cpu())
            nfe = max(nfe, sol.nfe)
        x = torch.cat(out)
        seconds = time.perf_counter() - start
        accuracy = float((net.probs(x).argmax(1) == labels).float().mean())
        scores = evaluate_images(x, real, net)
        rows.append(
            {"scale": scale, "nfe": nfe, "accuracy": accuracy, "seconds": seconds, **scores}
        )
    return {
        "solver": method,
        "steps": steps,
        "num_samples": num_samples,
        "seed": seed,
        "real_accuracy": real_accuracy,
        "rows": rows,
    }

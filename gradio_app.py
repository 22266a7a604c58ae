"""ECNF's Gradio demo: sample the shipped flows step by step, and train a 2D flow.

``build_demo()`` returns the :class:`gradio.Blocks` app and has no side effects;
``python gradio_app.py`` launches it (``GRADIO_SERVER_NAME`` / ``GRADIO_SERVER_PORT`` are
honoured), and it is the Hugging Face Space's entry point. In a notebook,
``build_demo().launch()`` shows it inline.

Every number comes from :mod:`ecnf`: the solver runs through :func:`ecnf.streams.integrate_stream`
(the same result as :func:`ecnf.integrate`), training through :func:`ecnf.streams.fit_stream`
(:func:`ecnf.fit`). Each input is bounded so that no request can run for long or exhaust
memory, and the queue bounds how many requests wait and run at once. On a ZeroGPU Space the
functions that compute are wrapped in ``spaces.GPU``; elsewhere that wrapper does nothing
and the work runs on CUDA when present, else on the CPU.
"""

from __future__ import annotations

import functools
import math
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import gradio as gr
import pandas as pd
import torch
from PIL import Image

import ecnf
from ecnf import TOY_DATASETS, LossConfig, MLPConfig, TrainConfig, load_images, sample_toy
from ecnf.checkpoint import checkpoint_info
from ecnf.data import Drawing, dataset_classes, is_drawn, save_drawing
from ecnf.evaluation import compare_to_data
from ecnf.export import image_grid
from ecnf.fast import fast_path_applies, is_cached
from ecnf.fast import sample as fast_sample
from ecnf.guidance import MAX_GUIDANCE, evaluations_at, guided, labels_in_turn
from ecnf.importers import RELEASES, fetch_release, import_command, release_reachable
from ecnf.shipped import list_checkpoints as checkpoints
from ecnf.shipped import list_imported, preferred_image_checkpoint
from ecnf.solvers import FIXED_METHODS, MEAN_FLOW_METHODS, nfe_per_step, supports_mean_flow
from ecnf.streams import fit_stream, integrate_stream
from ecnf.train import PREVIEW_SOLVER, resolve_device
from ecnf_display.budget import default_image_count, evaluation_seconds, is_large
from ecnf_display.pictures import enlarged, scatter_image

try:  # preinstalled on ZeroGPU Spaces: holds a GPU only while a decorated function runs
    import spaces

    def gpu(duration: int) -> Callable:
        return spaces.GPU(duration=duration)

except ImportError:

    def gpu(duration: int) -> Callable:
        return lambda fn: fn


__all__ = ["build_demo"]

# fixed steps: the cost of a request is known in advance; meanflow for the MeanFlow models
SOLVERS = (*FIXED_METHODS, *MEAN_FLOW_METHODS)
LOSSES = ("fm", "otcfm", "consistency")
#: The training target that means "the sketchpad's drawing".
DRAWN = "your drawing"
MAX_STEPS = 100  # solver steps
MAX_POINTS = 2000  # 2D samples
MAX_IMAGES = 64
MAX_IMAGE_EVALS = 6400  # images x velocity evaluations of one request
MAX_ITERATIONS = 2000
MAX_SEED = 2**31 - 1
W2_POINTS = 1000  # exact W2 is cubic in the sample size: measured on at most this many
FRAMES = 25  # streamed updates per request
IMAGE_WIDTH = 480  # about how wide image grids are shown
QUEUE_SIZE = 16  # requests waiting; more are turned away
SAMPLE_CONCURRENCY, TRAIN_CONCURRENCY = 2, 1
MAX_SOLVE_SECONDS = 120  # a large model's request estimated to take longer is refused
#: On a Hugging Face Space (``SPACE_ID`` set), the released TorchCFM model imported at start-up
#: when missing; set ``ECNF_IMPORT_AT_START`` to ``none`` to start without it.
IMPORT_AT_START = "ECNF_IMPORT_AT_START"


# ---- checkpoints, models and data ------------------------------------------------------------


def device() -> torch.device:
    """Where the demo samples and trains: CUDA when present (``ecnf.train.resolve_device``)."""
    return resolve_device("auto")


@functools.lru_cache(maxsize=8)
def _load(path: str, stamp: int, where: str) -> torch.nn.Module:
    del stamp  # part of the key only: a rewritten file is loaded afresh
    return ecnf.load(path, device=where)


def load_model(path: str) -> torch.nn.Module:
    """The checkpoint's EMA network on :func:`device`, shared read-only between requests."""
    return _load(path, Path(path).stat().st_mtime_ns, str(device()))


@functools.lru_cache(maxsize=2)
def _test_images(dataset: str) -> torch.Tensor:
    return load_images(dataset, train=False)


def image_models() -> dict[str, str]:
    """``{name: path}`` of the image models the demo offers: the shipped ones by name, then
    the imported ones (``python -m ecnf import``) as ``imported/NAME``."""
    return checkpoints("images") | {f"imported/{k}": v for k, v in list_imported().items()}


def import_at_start() -> Path | None:
    """On a Space, import the released model named by ``$ECNF_IMPORT_AT_START`` (default
    ``otcfm``) when it is missing and the Space is online; ``none`` turns it off."""
    import os

    name = os.environ.get(IMPORT_AT_START, "otcfm" if os.environ.get("SPACE_ID") else "none")
    if name.lower() in ("", "0", "none", "off") or name not in RELEASES:
        return None
    try:
        return fetch_release(name, command=f"gradio demo start-up ({IMPORT_AT_START}={name})")
    except OSError as error:
        print(f"the start-up import of {name} failed, continuing without it: {error}")
        return None


# ---- input checks: a clear message, never a traceback ----------------------------------------


def refuse(message: str) -> gr.Error:
    """An error shown to the user as it is, with no traceback in the server's log either."""
    return gr.Error(message, print_exception=False)


def whole(name: str, value, low: int, high: int) -> int:
    """``value`` as an int if it is a whole number in ``[low, high]``, else a ``gr.Error``."""
    ok = isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)
    if not (ok and float(value).is_integer() and low <= value <= high):
        raise refuse(f"{name} must be a whole number from {low} to {high}, got {value!r}")
    return int(value)


def one_of(name: str, value, allowed) -> str:
    if value not in allowed:
        raise refuse(f"{name} {value!r} is not available; choose one of {', '.join(allowed)}")
    return value


def solver_for(model: str, path, solver: str) -> str:
    """``solver`` if it is offered and ``model`` can be sampled with it (the MeanFlow jump
    needs a MeanFlow model)."""
    solver = one_of("solver", solver, SOLVERS)
    if solver in MEAN_FLOW_METHODS and not supports_mean_flow(
        checkpoint_info(path)["metadata"].get("model") or {}
    ):
        raise refuse(
            f"solver {solver!r} jumps with average velocities and needs a MeanFlow model "
            f"(a name ending in _meanflow); {model} takes one time: choose an ODE solver"
        )
    return solver


def shown_errors(fn: Callable[..., Iterator]) -> Callable[..., Iterator]:
    """Turn the library's ``ValueError`` (bad arguments, a diverged run) into ``gr.Error``."""

    @functools.wraps(fn)
    def wrapper(*args):
        try:
            yield from fn(*args)
        except gr.Error:
            raise
        except (ValueError, RuntimeError, OSError) as error:
            raise refuse(str(error)) from None

    return wrapper


# ---- drawing ---------------------------------------------------------------------------------


def grid_image(images: torch.Tensor) -> Image.Image:
    """Images in model range tiled by :func:`ecnf.export.image_grid`, enlarged to about 480 px."""
    return Image.fromarray(enlarged(image_grid(images), IMAGE_WIDTH))


def cost_line(solver: str, steps: int, nfe: int, seconds: float) -> str:
    where = "GPU" if device().type == "cuda" else "CPU"
    guided_calls = nfe // (steps * nfe_per_step(solver))
    both = " × 2 (guided: conditional and unconditional)" if guided_calls == 2 else ""
    return (
        f"**NFE:** {nfe} ({solver}: {steps} steps × {nfe_per_step(solver)} velocity "
        f"evaluation(s) per step{both})  \n**Solver time:** {seconds:.3f} s on the {where} "
        "(drawing excluded)"
    )


ALL_CLASSES = "all classes"


def class_choices(path: str | None) -> list[str]:
    """The Class dropdown's entries for a model: every class in turn, or one of them."""
    if path is None:
        return [ALL_CLASSES]
    info = checkpoint_info(path)
    k = info["model_config"].get("num_classes", 0)
    names = dataset_classes(info["metadata"].get("dataset", "")) or tuple(map(str, range(k)))
    return [ALL_CLASSES, *(f"{c}: {names[c]}" for c in range(k))]


def image_labels(path: str, label: str, count: int) -> torch.Tensor | None:
    """The ``(count,)`` classes a request asks for; None for an unconditional model."""
    k = checkpoint_info(path)["model_config"].get("num_classes", 0)
    if not k:
        if label not in (None, "", ALL_CLASSES):
            raise refuse(f"this model is unconditional; it takes no class (got {label!r})")
        return None
    label = one_of("class", label or ALL_CLASSES, class_choices(path))
    if label == ALL_CLASSES:
        return labels_in_turn(range(k), count)
    return torch.full((count,), int(label.split(":")[0]))


# ---- sampling --------------------------------------------------------------------------------


@shown_errors
def sample_2d(model: str, solver: str, steps, points, seed) -> Iterator[tuple]:
    """Stream a 2D flow from its source to its data; finish with W2 against fresh data."""
    path = checkpoints("2d").get(one_of("model", model, list(checkpoints("2d"))))
    solver = solver_for(model, path, solver)
    steps = whole("steps", steps, 1, MAX_STEPS)
    points = whole("points", points, 10, MAX_POINTS)
    seed = whole("seed", seed, 0, MAX_SEED)
    yield from _sample_2d(path, solver, steps, points, seed)


@gpu(duration=60)
def _sample_2d(path: str, solver: str, steps: int, points: int, seed: int) -> Iterator[tuple]:
    meta = checkpoint_info(path)["metadata"]
    net = load_model(path)
    generator = torch.Generator().manual_seed(seed)
    x0 = sample_toy(meta.get("source", "gaussian"), points, generator=generator)
    reference = sample_toy(meta["dataset"], min(points, W2_POINTS), generator=generator)
    for p in integrate_stream(net, x0.to(device()), method=solver, steps=steps, updates=FRAMES):
        frame = Image.fromarray(scatter_image(p.x, reference, title=f"t = {p.t:.2f}"))
        yield frame, None, f"t = {p.t:.2f}, {p.nfe} velocity evaluations so far"
    source = meta.get("source", "gaussian")
    report = compare_to_data(p.x[:W2_POINTS].cpu(), meta["dataset"], source=source, seed=seed)
    title = f"{solver}, {steps} steps: W2 {report.w2:.3f} (data floor {report.floor:.3f})"
    info = (
        f"{cost_line(solver, steps, p.nfe, p.seconds)}  \n"
        f"**W2 (exact, {report.num_samples} points):** {report.w2:.4f} to fresh "
        f"{meta['dataset']} data; data floor (fresh data against fresh data) {report.floor:.4f}"
    )
    yield frame, Image.fromarray(scatter_image(p.x, reference, title=title, size=500)), info


@shown_errors
def sample_images(
    model: str, solver: str, steps, count, seed, label=ALL_CLASSES, guidance=1.0
) -> Iterator[tuple]:
    """Stream noise turning into images; finish with the samples beside real test images.

    A class-conditional model draws ``label`` (or every class in turn) under classifier-free
    guidance of scale ``guidance``; other models ignore both."""
    models = image_models()
    path = models.get(one_of("model", model, list(models)))
    solver = solver_for(model, path, solver)
    steps = whole("steps", steps, 1, MAX_STEPS)
    count = whole("images", count, 1, MAX_IMAGES)
    seed = whole("seed", seed, 0, MAX_SEED)
    labels = image_labels(path, label, count)
    try:
        scale = float(guidance)
    except (TypeError, ValueError):
        raise refuse(f"the guidance scale must be a number, got {guidance!r}") from None
    if not 0 <= scale <= MAX_GUIDANCE:
        raise refuse(f"the guidance scale must lie in [0, {MAX_GUIDANCE:g}], got {scale:g}")
    calls = 1 if labels is None else evaluations_at(scale)
    nfe = steps * nfe_per_step(solver) * calls
    if count * nfe > MAX_IMAGE_EVALS:
        raise refuse(
            f"{count} images × {nfe} velocity evaluations ({solver}, {steps} steps) = "
            f"{count * nfe} image evaluations, more than this demo's {MAX_IMAGE_EVALS}: "
            "ask for fewer images or steps, or a cheaper solver"
        )
    net = load_model(path)
    if is_large(net):  # say how long it will take before anything slow starts
        seconds = nfe * evaluation_seconds(net, count)
        estimate = (
            f"about {seconds:.0f} s on this CPU ({nfe} evaluations of {count} images, one of "
            "them timed)"
        )
        if seconds > MAX_SOLVE_SECONDS:
            raise refuse(
                f"{estimate}, more than this demo's {MAX_SOLVE_SECONDS} s: ask for fewer "
                "images or steps"
            )
        yield None, None, None, f"**Estimated:** {estimate}."
    chosen = (labels, scale) if labels is not None else None
    for live, samples, info in _sample_images(path, solver, steps, count, seed, chosen):
        yield live, samples, None, info
    real, note = real_images(checkpoint_info(path)["metadata"]["dataset"], count, seed)
    yield live, samples, real, f"{info}  \n{note}"


def image_count_for(model: str):
    """The Images slider's default for a model (fewer images for a large model on a CPU),
    and the class and guidance controls, shown for a class-conditional model only."""
    path = image_models().get(model)
    if path is None:
        return gr.skip(), gr.skip(), gr.skip()
    conditional = len(class_choices(path)) > 1
    return (
        gr.Slider(value=default_image_count(load_model(path))),
        gr.Dropdown(
            choices=class_choices(path),
            value=ALL_CLASSES,
            visible=conditional,
            allow_custom_value=True,
        ),
        gr.Slider(visible=conditional),
    )


def import_button() -> tuple:
    """The demo's import button: fetch and import the released OT-CFM flow, then offer it."""
    try:
        path = fetch_release("otcfm", command="gradio demo: import button", progress=False)
    except OSError as error:
        raise refuse(f"the import failed: {error}") from None
    label = f"imported/{path.stem}"
    return gr.Dropdown(choices=list(image_models()), value=label), gr.Button(visible=False)


def first_images(
    model: str, solver: str, steps, count, seed, label, guidance, shown
) -> Iterator[tuple]:
    """:func:`sample_images` when the tab opens with nothing shown yet; else nothing changes."""
    if shown is not None:
        yield gr.skip(), gr.skip(), gr.skip(), gr.skip()
        return
    yield from sample_images(model, solver, steps, count, seed, label, guidance)


def real_images(dataset: str, count: int, seed: int) -> tuple[Image.Image | None, str]:
    """``count`` random images of the data set's test split, and a line that says which."""
    try:
        data = _test_images(dataset)
    except (FileNotFoundError, ValueError) as error:  # e.g. Fashion-MNIST not installed
        return None, f"**Real images:** unavailable ({error})"
    pick = torch.randperm(len(data), generator=torch.Generator().manual_seed(seed))[:count]
    note = f"**Real images:** {len(pick)} drawn at random from the {dataset} test split"
    return grid_image(data[pick].float() / 127.5 - 1.0), note


@gpu(duration=60)
def _sample_images(
    path: str, solver: str, steps: int, count: int, seed: int, chosen=None
) -> Iterator[tuple]:
    net = load_model(path)
    shape = tuple(net.config.data_shape)
    x0 = torch.randn((count, *shape), generator=torch.Generator().manual_seed(seed))
    x0 = x0.to(device())
    if chosen is not None:  # guided: the eager solver, which counts both evaluations
        labels, scale = chosen
        net = guided(net, labels.to(x0.device), scale)
    elif fast_path_applies(net, solver):  # on CUDA: one captured solve, then its frames
        yield from _fast_frames(net, x0, solver, steps)
        return
    for p in integrate_stream(net, x0, method=solver, steps=steps, updates=FRAMES):
        yield grid_image(p.x), None, f"t = {p.t:.2f}, {p.nfe} velocity evaluations so far"
    info = cost_line(solver, steps, p.nfe, p.seconds)
    if chosen is not None:
        info += f"  \nClasses {_classes_line(path, chosen[0])}, guidance scale w = {chosen[1]:g}."
    yield grid_image(p.x), grid_image(p.x), info


def _classes_line(path: str, labels: torch.Tensor) -> str:
    names = class_choices(path)[1:]
    shown = sorted(set(labels.tolist()))
    return ", ".join(names[k] for k in shown) + (" in turn" if len(shown) > 1 else "")


def _fast_frames(net, x0: torch.Tensor, solver: str, steps: int) -> Iterator[tuple]:
    """The CUDA fast path (:func:`ecnf.fast.sample`): the whole solve at once, then up to
    ``FRAMES`` of its recorded states; the time excludes the one-off compilation."""
    if not is_cached(net, tuple(x0.shape), solver, steps, trajectory=True):
        yield None, None, "Compiling this solve for the GPU (once per model, count and steps)..."
        fast_sample(net, x0, method=solver, steps=steps, return_trajectory=True)
    torch.cuda.synchronize(x0.device)
    start = time.perf_counter()
    sol = fast_sample(net, x0, method=solver, steps=steps, return_trajectory=True)
    torch.cuda.synchronize(x0.device)
    seconds = time.perf_counter() - start
    shown = torch.linspace(0, steps, min(steps + 1, FRAMES)).round().long().unique()
    for k in shown.tolist():
        t = k / steps
        yield grid_image(sol.trajectory[k]), None, f"t = {t:.2f} (recorded by the fast path)"
    info = (
        cost_line(solver, steps, sol.nfe, seconds)
        + "  \nSampled by `ecnf.fast` (bf16, compiled, CUDA graph)."
    )
    yield grid_image(sol.x), grid_image(sol.x), info


# ---- training --------------------------------------------------------------------------------


def sketch_picture(sketch):
    """The drawn picture of a Sketchpad's value (its composite), or None when blank."""
    if sketch is None:
        return None
    picture = sketch.get("composite") if isinstance(sketch, dict) else sketch
    if picture is None:
        return None
    if isinstance(picture, str | Path):
        with Image.open(picture) as image:
            return image.convert("RGBA")
    return picture


@shown_errors
def train_2d(target: str, loss: str, iterations, seed, sketch=None) -> Iterator[tuple]:
    """Train a small MLP from a Gaussian to ``target`` (a toy, or the sketch when ``target``
    is :data:`DRAWN`); stream the loss and EMA previews."""
    target = one_of("target", target, (*TOY_DATASETS, DRAWN))
    loss = one_of("loss", loss, LOSSES)
    iterations = whole("training iterations", iterations, 10, MAX_ITERATIONS)
    seed = whole("seed", seed, 0, MAX_SEED)
    picture = None
    if target == DRAWN:
        picture = sketch_picture(sketch)
        if picture is None:
            raise gr.Error("Draw the target on the sketchpad first (or pick a toy).")
        Drawing.from_image(picture)  # an empty sketch is refused here, with its reason
    yield from _train_2d(target, loss, iterations, seed, picture)


@gpu(duration=120)
def _train_2d(target: str, loss: str, iterations: int, seed: int, picture=None) -> Iterator:
    with tempfile.TemporaryDirectory(prefix="ecnf-demo-") as out_dir:
        if picture is not None:
            target = save_drawing(picture, Path(out_dir) / "drawing")
        yield from _train_in(out_dir, target, loss, iterations, seed)


def _train_in(out_dir: str, target: str, loss: str, iterations: int, seed: int) -> Iterator:
    shown = "your drawing" if is_drawn(target) else target
    reference = sample_toy(target, W2_POINTS, generator=torch.Generator().manual_seed(seed))
    preview_method, preview_steps = PREVIEW_SOLVER
    preview = f"{preview_method}, {preview_steps} steps"
    rows: list[dict] = []
    config = TrainConfig(
        data=target,
        source="gaussian",
        model=MLPConfig(data_shape=(2,), width=128, depth=3),
        loss=LossConfig(loss),
        iterations=iterations,
        batch_size=256,
        lr=2e-3,
        lr_schedule="cosine",
        seed=seed,
        out_dir=out_dir,
        checkpoint_every=iterations,
        log_every=max(iterations // 50, 5),
        sample_every=max(iterations // 10, 10),
        num_preview=W2_POINTS,
    )
    for event in fit_stream(config, command="gradio demo: Train 2D"):
        if event.kind == "log":
            rows.append({"step": event.step, "loss": event.record["loss"]})
            text = f"step {event.step}/{iterations}, loss {event.record['loss']:.4f}"
            yield pd.DataFrame(rows), gr.skip(), text
        elif event.kind == "preview":
            title = f"EMA samples at step {event.step} ({preview})"
            frame = Image.fromarray(scatter_image(event.samples, reference, title))
            yield gr.skip(), frame, gr.skip()
        else:
            result = event.result
    x0 = torch.randn((W2_POINTS, 2), generator=torch.Generator().manual_seed(seed))
    sol = ecnf.integrate(result.ema, x0.to(device()), method=preview_method, steps=preview_steps)
    report = compare_to_data(sol.x.cpu(), target, seed=seed)
    title = f"trained: W2 {report.w2:.3f} (data floor {report.floor:.3f})"
    info = (
        f"**Trained** {result.step} iterations of {loss} in {result.wall_time_s:.1f} s; final loss "
        f"{rows[-1]['loss']:.4f}.  \n**Sampled** with {preview} (NFE {sol.nfe}).  \n"
        f"**W2 (exact, {report.num_samples} points):** {report.w2:.4f} to fresh {shown} data; "
        f"data floor (fresh data against fresh data) {report.floor:.4f}"
    )
    yield pd.DataFrame(rows), Image.fromarray(scatter_image(sol.x, reference, title)), info


# ---- the app ---------------------------------------------------------------------------------

INTRO = """# ECNF: continuous normalizing flows trained by flow matching
A flow moves noise (t = 0) to data (t = 1) along the ODE dx/dt = v(x, t) that a network
learned. Pick a shipped model and a solver and watch the samples form step by step; the
number of velocity evaluations (NFE) is what a sample costs. Or train a small 2D flow here.
"""


def _model_input(names: list[str], preferred: str) -> gr.Dropdown:
    value = preferred if preferred in names else (names[0] if names else None)
    return gr.Dropdown(names, value=value, label="Model")


def _solver_inputs(solver: str, steps: int) -> tuple:
    solver = gr.Dropdown(list(SOLVERS), value=solver, label="Solver")
    steps_in = gr.Slider(1, MAX_STEPS, value=steps, step=1, precision=0, label="Steps")
    return solver, steps_in


def _seed() -> gr.Number:
    return gr.Number(0, precision=0, minimum=0, maximum=MAX_SEED, label="Seed")


def build_demo() -> gr.Blocks:
    """The demo as a :class:`gradio.Blocks`, with its queue set; nothing is launched."""
    two_d, images = list(checkpoints("2d")), list(image_models())
    sample_limits = {"concurrency_id": "sample", "concurrency_limit": SAMPLE_CONCURRENCY}
    with gr.Blocks(title="ECNF demo", analytics_enabled=False) as demo:
        gr.Markdown(INTRO)
        with gr.Tab("2D flows"), gr.Row():
            with gr.Column(scale=1):
                model = _model_input(two_d, "moons_otcfm")
                solver, steps = _solver_inputs("rk4", 10)
                points = gr.Slider(10, MAX_POINTS, value=1000, step=10, precision=0, label="Points")
                seed = _seed()
                run = gr.Button("Sample", variant="primary")
            with gr.Column(scale=2):
                live = gr.Image(label="Trajectory (live)", format="png", interactive=False)
                samples = gr.Image(label="Samples over data", format="png", interactive=False)
                info = gr.Markdown()
            run.click(
                sample_2d,
                [model, solver, steps, points, seed],
                [live, samples, info],
                api_name="sample_2d",
                **sample_limits,
            )
            # a first result as the page opens: a visitor sees a flow before pressing anything
            demo.load(
                sample_2d,
                [model, solver, steps, points, seed],
                [live, samples, info],
                api_visibility="private",
                **sample_limits,
            )
        with gr.Tab("Images") as images_tab, gr.Row():
            with gr.Column(scale=1):
                # open on the model that shows the most; on a CPU among the shipped ones
                ranked = image_models() if device().type == "cuda" else checkpoints("images")
                best = preferred_image_checkpoint(ranked) or ""
                model = _model_input(images, best)
                solver, steps = _solver_inputs("midpoint", 10)
                count = gr.Slider(1, MAX_IMAGES, value=16, step=1, precision=0, label="Images")
                seed = _seed()
                conditional = len(class_choices(image_models().get(best))) > 1
                label = gr.Dropdown(
                    class_choices(image_models().get(best)),
                    value=ALL_CLASSES,
                    label="Class (class-conditional models)",
                    visible=conditional,
                    allow_custom_value=True,  # the choices follow the model; checked by name
                )
                guidance = gr.Slider(
                    0,
                    MAX_GUIDANCE,
                    value=1.0,
                    step=0.5,
                    label="Guidance scale w: 0 ignores the class, 1 conditional, more typical "
                    "(beyond 1 the NFE doubles)",
                    visible=conditional,
                )
                gr.Markdown(f"At most {MAX_IMAGE_EVALS} image evaluations (images × NFE).")
                run = gr.Button("Sample", variant="primary")
                if not any(name.startswith("imported/") for name in images):
                    gr.Markdown(
                        f"CIFAR-10: no imported model here. `{import_command()}` gets "
                        "TorchCFM's OT-CFM flow."
                    )
                    if release_reachable("otcfm"):
                        get = gr.Button("Import TorchCFM's OT-CFM (CIFAR-10) now")
                        get.click(
                            import_button,
                            None,
                            [model, get],
                            api_visibility="private",
                            **sample_limits,
                        )
            with gr.Column(scale=2):
                live = gr.Image(label="Noise to images (live)", format="png", interactive=False)
                with gr.Row():
                    samples = gr.Image(label="Samples", format="png", interactive=False)
                    real = gr.Image(label="Real test images", format="png", interactive=False)
                info = gr.Markdown()
            run.click(
                sample_images,
                [model, solver, steps, count, seed, label, guidance],
                [live, samples, real, info],
                api_name="sample_images",
                **sample_limits,
            )
            model.change(
                image_count_for,
                [model],
                [count, label, guidance],
                api_visibility="private",
                **sample_limits,
            )
            # the first time the tab opens, its default request runs by itself
            images_tab.select(
                first_images,
                [model, solver, steps, count, seed, label, guidance, samples],
                [live, samples, real, info],
                api_visibility="private",
                **sample_limits,
            )
        with gr.Tab("Train a 2D flow"), gr.Row():
            with gr.Column(scale=1):
                target = gr.Dropdown([*TOY_DATASETS, DRAWN], value="moons", label="Target (t = 1)")
                sketch = gr.Sketchpad(
                    label=f"Draw a target, then pick '{DRAWN}' above: points go where the ink is",
                    type="pil",
                    image_mode="RGBA",
                    canvas_size=(480, 320),
                )
                loss = gr.Dropdown(list(LOSSES), value="otcfm", label="Loss")
                steps = gr.Slider(
                    10, MAX_ITERATIONS, value=500, step=10, precision=0, label="Training iterations"
                )
                seed = _seed()
                gr.Markdown("A Gaussian source, an MLP of width 128 and depth 3, batch 256.")
                with gr.Row():
                    run = gr.Button("Train", variant="primary")
                    stop = gr.Button("Stop")
            with gr.Column(scale=2):
                curve = gr.LinePlot(x="step", y="loss", label="Training loss", height=260)
                preview = gr.Image(label="EMA samples over data", format="png", interactive=False)
                info = gr.Markdown()
            event = run.click(
                train_2d,
                [target, loss, steps, seed, sketch],
                [curve, preview, info],
                api_name="train_2d",
                concurrency_limit=TRAIN_CONCURRENCY,
            )
            stop.click(None, cancels=[event])
    return demo.queue(default_concurrency_limit=1, max_size=QUEUE_SIZE)


if __name__ == "__main__":
    import_at_start()
    build_demo().launch()

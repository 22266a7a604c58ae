"""Page list, sidebar facts, error display, solver controls and image enlargement."""

from __future__ import annotations

import streamlit as st

from ecnf_display.pictures import enlarged

__all__ = [
    "PAGES",
    "TOLERANCES",
    "active_checkpoint",
    "confirm_cpu_run",
    "device_label",
    "enlarged",
    "offer_import",
    "set_active_checkpoint",
    "show_error",
    "solver_controls",
    "warm_up",
]

#: Tolerances offered for adaptive solvers (rtol = atol).
TOLERANCES = (1e-2, 1e-3, 1e-4, 1e-5)

#: (file, url path, title, icon) of every page, in menu order; app.py routes them, Home
#: links them. The first page is the default one, served at the root URL (Streamlit
#: allows no other path for it).
PAGES: list[tuple[str, str, str, str]] = [
    ("app_pages/home.py", "", "Home", ":material/home:"),
    ("app_pages/playground_2d.py", "playground", "2D playground", ":material/scatter_plot:"),
    ("app_pages/image_trajectories.py", "images", "Image trajectories", ":material/grid_view:"),
    ("app_pages/train.py", "training", "Train", ":material/model_training:"),
    ("app_pages/solver_lab.py", "solvers", "Solver lab", ":material/timeline:"),
    ("app_pages/side_by_side.py", "side-by-side", "Side by side", ":material/compare:"),
    ("app_pages/likelihood_lab.py", "likelihood", "Likelihood lab", ":material/bar_chart:"),
    ("app_pages/ablations.py", "seed-paper", "Seed paper ablations", ":material/table_chart:"),
]

_ACTIVE = "active_checkpoint"


_warming: list = []


def warm_up() -> None:
    """Import torch in a background thread, once per server, so that the first page that
    computes does not wait for it. Only torch: its imports never wait on a module of this
    repository, so a page importing ``ecnf`` meanwhile cannot deadlock with this thread."""
    if _warming:
        return
    import threading

    thread = threading.Thread(target=lambda: __import__("torch"), name="ecnf-warm-up", daemon=True)
    _warming.append(thread)
    thread.start()


def device_label() -> str:
    """``CUDA: <name>`` on a GPU, else ``CPU (N threads)``."""
    import torch

    if torch.cuda.is_available():
        return f"CUDA: {torch.cuda.get_device_name(0)}"
    return f"CPU ({torch.get_num_threads()} threads)"


def set_active_checkpoint(label: str | None) -> None:
    """Record the checkpoint the current page works with (shown in the sidebar)."""
    st.session_state[_ACTIVE] = label


def active_checkpoint() -> str | None:
    return st.session_state.get(_ACTIVE)


def show_error(error: Exception, fix: str) -> None:
    """Show a user-facing error and what to change, without a traceback."""
    st.error(f"{error}\n\n**What to change:** {fix}", icon=":material/error:")


def solver_controls(
    method_column,
    step_column,
    key: str,
    *,
    max_steps: int = 100,
    steps_help: str | None = None,
    methods: tuple[str, ...] | None = None,
    default: tuple[str, int] | None = None,
) -> tuple[str, int | None, float | None]:
    """The solver picker, then its step count (fixed methods) or tolerance (adaptive ones).

    ``methods`` are those the model supports (:func:`ecnf.solvers.methods_for`); by default
    the ODE solvers. A MeanFlow model opens on its one-step jump, others on ``default``
    (a method and its steps; RK4 with 10 steps when not given).

    Returns ``(method, steps, tol)`` with exactly one of ``steps`` and ``tol`` set. Widget
    keys are ``{key}_method``, ``{key}_steps`` and ``{key}_tol``.
    """
    from ecnf.solvers import MEAN_FLOW_METHODS, METHODS, is_fixed_step

    if methods is None:
        methods = tuple(m for m in METHODS if m not in MEAN_FLOW_METHODS)
    jump = next((m for m in methods if m in MEAN_FLOW_METHODS), None)
    first, first_steps = default if default is not None and default[0] in methods else ("rk4", 10)
    method = method_column.selectbox(
        "Solver",
        methods,
        index=methods.index(jump or first),
        key=f"{key}_method",
        help="meanflow: jumps with the model's average velocity, one evaluation per step"
        if jump
        else None,
    )
    if is_fixed_step(method):
        steps = step_column.slider(
            "Solver steps",
            1,
            max_steps,
            1 if method in MEAN_FLOW_METHODS else min(first_steps, max_steps),
            key=f"{key}_steps",
            help=steps_help,
        )
        return method, steps, None
    tol = step_column.select_slider(
        "Tolerance (rtol = atol)",
        TOLERANCES,
        value=1e-3,
        format_func=lambda v: f"{v:g}",
        key=f"{key}_tol",
    )
    return method, None, tol


@st.cache_data(ttl=300, show_spinner=False)
def _online() -> bool:
    from ecnf.importers import release_reachable

    return release_reachable("otcfm")


def offer_import(key: str) -> None:
    """One line saying how to get a CIFAR-10 model, and, on a machine that is online, a
    button that runs the same import (TorchCFM's released OT-CFM flow)."""
    from ecnf.importers import RELEASES, fetch_release, import_command
    from ecnf.shipped import imported_dir

    reported = RELEASES["otcfm"].reported
    st.caption(
        f"CIFAR-10: no imported model here yet. `{import_command()}` downloads TorchCFM's "
        f"OT-CFM flow (FID {reported['FID']} as reported by TorchCFM) into "
        f"`{imported_dir()}`, where every image page lists it."
    )
    if _online() and st.button("Import TorchCFM's OT-CFM (CIFAR-10) now", key=f"{key}_import"):
        try:
            with st.spinner("Downloading TorchCFM's release file and importing it..."):
                path = fetch_release("otcfm", command="studio: import button", progress=False)
        except (OSError, ValueError) as error:
            show_error(error, f"run `{import_command()}` in a terminal to see the details.")
        else:
            st.success(f"Imported to `{path}`; it is listed as `imported/{path.stem}`.")
            st.rerun()


@st.cache_data(max_entries=16, show_spinner=False)
def _seconds_per_evaluation(path: str, stamp: int, n: int) -> float:
    from ecnf_display.budget import evaluation_seconds

    from .models import load_model

    return evaluation_seconds(load_model(path, stamp), n)


def confirm_cpu_run(
    key: str,
    path: str,
    stamp: int,
    n: int,
    evaluations: int | None,
    settings: tuple,
    what: str = "the solver's NFE",
) -> bool:
    """Before a large model's slow CPU run: its estimated time (one velocity evaluation of
    ``n`` samples timed once, times ``evaluations``; ``None`` for an adaptive solver) and a
    button that starts it. True once the visitor has accepted these ``settings``."""
    from .models import load_model

    approved = st.session_state.setdefault(f"{key}_approved", [])
    run = (path, stamp, n, *settings)
    if run in approved:
        return True
    with st.spinner("Timing one velocity evaluation..."):
        per = _seconds_per_evaluation(path, stamp, n)
    params = sum(p.numel() for p in load_model(path, stamp).parameters()) / 1e6
    if evaluations is None:
        estimate = (
            f"an adaptive solver picks its own number of evaluations while it solves, at "
            f"{per:.2f} s each for {n} samples here (timed once)"
        )
        button = "Run it"
    else:
        seconds = evaluations * per
        estimate = (
            f"about {seconds:.0f} s: {evaluations} evaluations ({what}) at {per:.2f} s each "
            f"for {n} samples, timed once here"
        )
        button = f"Run it (about {seconds:.0f} s)"
    st.info(f"This model has {params:.1f} M parameters and runs on the CPU: {estimate}.")
    if st.button(button, key=f"{key}_run"):
        approved.append(run)
        return True
    return False


def class_controls(meta: dict, key: str, drawn_as: str) -> tuple[tuple[int, ...], float]:
    """For a class-conditional model (``meta`` from :func:`checkpoint_meta`): the classes to
    draw and the classifier-free guidance scale; ``((), 1.0)`` for any other model.

    ``drawn_as`` says how the samples share the chosen classes (in turn, or in the data's
    proportions); the widgets' keys are ``<key>_classes`` and ``<key>_guidance``."""
    from ecnf.data import dataset_classes
    from ecnf.guidance import MAX_GUIDANCE

    num_classes = meta["model_config"].get("num_classes", 0)
    if not num_classes:
        return (), 1.0
    names = dataset_classes(meta.get("dataset", "")) or tuple(map(str, range(num_classes)))
    left, right = st.columns([3, 2])
    chosen = left.multiselect(
        "Classes",
        list(range(num_classes)),
        default=list(range(num_classes)),
        format_func=lambda k: names[k] if k < len(names) else str(k),
        key=f"{key}_classes",
        help=f"Samples are drawn for these classes, {drawn_as}; none selected samples "
        "unconditionally (the null label).",
    )
    scale = right.slider(
        "Guidance scale w",
        0.0,
        MAX_GUIDANCE,
        1.0,
        0.5,
        key=f"{key}_guidance",
        help="v = v_uncond + w (v_cond - v_uncond): 0 ignores the class, 1 is the conditional "
        "model, more makes samples more typical of their class. Except at 0 and 1 each step "
        "evaluates the network twice, and the NFE counts both.",
    )
    return tuple(chosen), float(scale)

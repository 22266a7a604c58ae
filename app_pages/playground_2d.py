"""2D playground: train a flow (or pick a shipped one), watch it move points, measure it."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import streamlit as st
import torch

from ecnf import (
    Callback,
    MLPConfig,
    ResNetConfig,
    TrainConfig,
    TrainingDiverged,
    fit,
    integrate,
    sample_toy,
)
from ecnf.data import TOY_EXTENT, dataset_classes, is_toy
from ecnf.evaluation import class_labels, compare_to_data, toy_sets
from ecnf.guidance import guided
from ecnf.nets import ACTIVATIONS
from ecnf.solvers import methods_for, solver_options
from ecnf_display.figures import density_figure, field_figure, trajectory_figure
from ecnf_display.playground import (
    PLAYGROUND_DEFAULTS,
    log_density_grid,
    playground_config,
    velocity_on_grid,
)
from studio import (
    checkpoint_meta,
    class_controls,
    file_stamp,
    list_checkpoints,
    load_model,
    model_device,
    session_workdir,
    set_active_checkpoint,
    show_error,
    solver_controls,
)
from studio.distributions import distribution_input, distribution_label
from studio.training import session_checkpoints_of

MAX_ANIMATED_POINTS, MAX_FRAMES, PATHS_SHOWN = 600, 51, 150
DENSITY_GRID, DENSITY_STEPS = 60, 10
ADAPTIVE_FRAMES = 20
TRAINED = "p2_trained"  # session_state key of the model trained on this page
SHIPPED, TRAIN = "Use a shipped model", "Train your own"


# ---- cached computations (all numbers come from ecnf) ------------------------------------


@st.cache_data(max_entries=32, show_spinner=False)
def sample_flow(
    path: str,
    stamp: int,
    source: str,
    data: str,
    method: str,
    steps: int | None,
    tol: float | None,
    n: int,
    seed: int,
    classes: tuple[int, ...] = (),
    scale: float = 1.0,
) -> dict:
    """Integrate n source points with the chosen solver; W2 to fresh data and its floor.

    With ``classes`` (a class-conditional model) the samples are guided at ``scale``
    towards labels drawn among them, and judged against fresh data of those classes."""
    model = load_model(path, stamp)
    x0 = sample_toy(source, n, generator=torch.Generator().manual_seed(seed))
    chosen = classes or None
    if chosen is not None:
        labels = class_labels(data, n, seed, chosen)
        model = guided(model, labels.to(model_device(model)), scale)
    tols = {} if tol is None else {"rtol": tol, "atol": tol}
    kw = solver_options(method, steps=steps, frames=ADAPTIVE_FRAMES, **tols)
    start = time.perf_counter()
    sol = integrate(model, x0.to(model_device(model)), return_trajectory=True, **kw)
    seconds = time.perf_counter() - start
    report = compare_to_data(sol.x.cpu(), data, source=source, seed=seed, classes=chosen)
    reference = toy_sets(data, source, n, seed, classes=chosen).fresh
    return {
        "trajectory": sol.trajectory.cpu().numpy(),
        "times": sol.times.cpu().numpy(),
        "nfe": sol.nfe,
        "seconds": seconds,
        "w2": report.w2,
        "floor": report.floor,
        "reference": reference.numpy(),
    }


@st.cache_data(max_entries=64, show_spinner=False)
def velocity_field(path: str, stamp: int, t: float) -> tuple[np.ndarray, np.ndarray]:
    points, v = velocity_on_grid(load_model(path, stamp), t, lim=4.0, n=21)
    return points.numpy(), v.numpy()


@st.cache_data(max_entries=16, show_spinner=False)
def density(path: str, stamp: int) -> dict:
    grid = log_density_grid(
        load_model(path, stamp), lim=TOY_EXTENT, n=DENSITY_GRID, method="rk4", steps=DENSITY_STEPS
    )
    return {
        "xs": grid.xs.numpy(),
        "ys": grid.ys.numpy(),
        "log_prob": grid.log_prob.numpy(),
        "nfe": grid.nfe,
        "mass": grid.mass,
    }


# ---- training --------------------------------------------------------------------------------


class LiveLoss(Callback):
    """Redraws the loss curve and the progress bar at each log record of ecnf.fit."""

    def __init__(self, chart, progress, total: int) -> None:
        self.chart, self.progress, self.total = chart, progress, total
        self.rows: list[dict] = []

    def on_log(self, record: dict) -> None:
        self.rows.append({"step": record["step"], "loss": record["loss"]})
        self.chart.line_chart(pd.DataFrame(self.rows), x="step", y="loss", height=260)
        self.progress.progress(
            record["step"] / self.total,
            text=f"step {record['step']}/{self.total}, loss {record['loss']:.4f}, "
            f"{record['steps_per_s']:.0f} steps/s",
        )


def train_controls() -> TrainConfig | None:
    """The data, then the training form; returns a config when Train was pressed."""
    target = distribution_input("Target (t = 1)", "moons", "p2_target")
    with st.expander("Source (t = 0): a standard normal unless you change it"):
        source = distribution_input("Source (t = 0)", "gaussian", "p2_source")
    with st.form("p2_train_form"):
        c1, c2, c3 = st.columns(3)
        d = PLAYGROUND_DEFAULTS
        loss = c1.selectbox(
            "Loss",
            ["fm", "otcfm", "consistency"],
            index=["fm", "otcfm", "consistency"].index(d["loss"]),
            key="p2_loss",
            help="fm: independent pairs; otcfm: minibatch optimal-transport pairs; "
            "consistency: the seed paper's velocity consistency loss (eqs. 6-8).",
        )
        arch = c2.radio("Architecture", ["mlp", "resnet"], horizontal=True, key="p2_arch")
        width = c2.select_slider("Width", [32, 64, 128, 256], value=d["width"], key="p2_width")
        depth = c2.slider(
            "Depth (hidden layers or residual blocks)", 1, 6, d["depth"], key="p2_depth"
        )
        activation = c2.selectbox("Activation", ACTIVATIONS, key="p2_activation")
        steps = c3.slider(
            "Training iterations", 20, 5000, d["iterations"], step=20, key="p2_train_steps"
        )
        lr = c3.select_slider(
            "Learning rate",
            [1e-4, 3e-4, 1e-3, 2e-3, 5e-3, 1e-2],
            value=d["lr"],
            format_func=lambda v: f"{v:g}",
            key="p2_lr",
            help="AdamW's peak learning rate, decayed to 0 on a cosine as for the shipped models.",
        )
        batch = c3.select_slider(
            "Batch size", [64, 128, 256, 512], value=d["batch_size"], key="p2_batch"
        )
        classes = dataset_classes(target) if target is not None else ()
        conditional = c1.checkbox(
            f"Class-conditional ({len(classes)} classes)" if classes else "Class-conditional",
            value=d["conditional"],
            key="p2_conditional",
            disabled=not classes,
            help="Condition the network on the target's classes (the modes of a mixture, the "
            "two moons, the colours of a drawing), with 10% of the labels dropped so that "
            "classifier-free guidance can steer the samples. Targets without classes: off.",
        )
        ready = target is not None and source is not None
        pressed = st.form_submit_button("Train", type="primary", key="p2_train", disabled=not ready)
    if not pressed or not ready:
        return None
    try:
        return playground_config(
            target,
            source,
            out_dir=str(session_workdir() / "playground_2d"),
            loss=loss,
            arch=arch,
            width=width,
            depth=depth,
            activation=activation,
            iterations=steps,
            lr=lr,
            batch_size=batch,
            conditional=bool(conditional and classes),
        )
    except ValueError as error:
        show_error(error, "pick another combination of the options above.")
        return None


def train(config: TrainConfig) -> None:
    chart, progress = st.empty(), st.progress(0.0, text="starting...")
    live = LiveLoss(chart, progress, config.iterations)
    try:
        result = fit(config, [live], overwrite=True, command="studio: 2D playground")
    except TrainingDiverged as error:
        show_error(error, "lower the learning rate or pick a smaller network.")
        return
    except ValueError as error:
        show_error(error, "change the options above.")
        return
    finally:
        progress.empty()
    chart.empty()
    st.session_state[TRAINED] = {
        "path": str(result.checkpoint),
        "history": [{"step": r["step"], "loss": r["loss"]} for r in result.history],
        "seconds": result.wall_time_s,
        "label": f"{distribution_label(config.source)} → {distribution_label(config.data)}, "
        f"{config.loss.name}, "
        f"{config.model.arch} {config.model.width} x {depth_of(config.model)}, "
        f"{config.iterations} iterations"
        + (", class-conditional" if config.model.num_classes else "")
        + " (this session)",
    }


def depth_of(model: MLPConfig | ResNetConfig) -> int:
    return model.depth if isinstance(model, MLPConfig) else model.num_blocks


def trained_model() -> tuple[str, str] | None:
    config = train_controls()
    if config is not None:
        train(config)
    trained = st.session_state.get(TRAINED)
    if trained is None:
        st.info("Choose the options and press **Train**: the loss curve and training time follow.")
        return None
    history = pd.DataFrame(trained["history"])
    c1, c2 = st.columns([3, 1])
    c1.line_chart(history, x="step", y="loss", height=260)
    c2.metric("Final loss", f"{history['loss'].iloc[-1]:.4f}")
    c2.metric("Training time", f"{trained['seconds']:.1f} s")
    c2.caption(trained["label"])
    return trained["path"], trained["label"]


def shipped_model() -> tuple[str, str] | None:
    shipped = list_checkpoints("2d") | session_checkpoints_of("2d")
    if not shipped:
        st.warning("No shipped 2D checkpoints were found; choose **Train your own**.")
        return None
    names = list(shipped)
    default = names.index("moons_otcfm") if "moons_otcfm" in names else 0
    name = st.selectbox("Shipped checkpoint", names, index=default, key="p2_checkpoint")
    return shipped[name], f"2d/{name}"


# ---- the page --------------------------------------------------------------------------------


def show_model(path: str, label: str) -> None:
    try:
        stamp = file_stamp(path)
        meta = checkpoint_meta(path, stamp)
        data, source = meta["dataset"], meta.get("source", "gaussian")
        if not is_toy(data) or tuple(meta["model_config"]["data_shape"]) != (2,):
            raise ValueError(f"{label} was trained on {data!r}, not on 2D data")
    except (ValueError, OSError, KeyError) as error:
        show_error(error, "choose another checkpoint (2D models live in checkpoints/2d).")
        return
    set_active_checkpoint(label)
    st.header("Sampling")
    st.caption(
        f"`{label}`: {distribution_label(source)} → {distribution_label(data)}, loss "
        f"`{meta.get('loss')}`, {meta.get('steps')} "
        "training steps."
    )
    c1, c2, c3, c4 = st.columns(4)
    method, steps, tol = solver_controls(c1, c2, "p2", methods=methods_for(meta.get("model") or {}))
    n = c3.slider("Points", 200, 2000, 1000, step=100, key="p2_points")
    seed = int(c4.number_input("Seed", 0, 2**31 - 1, 0, key="p2_seed"))
    classes, scale = class_controls(meta, "p2", "in the data's own proportions")
    try:
        with st.spinner("Integrating..."):
            res = sample_flow(
                path, stamp, source, data, method, steps, tol, n, seed, classes, scale
            )
    except (ValueError, FileNotFoundError) as error:
        show_error(error, "choose another solver, fewer steps or another checkpoint.")
        return
    solver = f"{method}, {steps} steps" if tol is None else f"{method}, tol {tol:g}"
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("NFE", res["nfe"], help="velocity evaluations spent by the solver")
    m2.metric("Solve time", f"{res['seconds'] * 1000:.0f} ms")
    count = f"{len(classes)} class" + ("es" if len(classes) > 1 else "")
    judged = distribution_label(data) + (f" ({count})" if classes else "")
    m3.metric(f"W2 to fresh {judged}", f"{res['w2']:.3f}")
    m4.metric("Data-vs-data floor", f"{res['floor']:.3f}")
    st.caption(
        f"Exact W2 between n = {n} samples ({solver}, NFE = {res['nfe']}) and n = {n} fresh "
        f"{distribution_label(data)} points (seed {seed}); the floor is W2 between two fresh "
        f"sets of n = {n}: "
        "what a perfect model reaches at this sample size."
        + (
            f" Guided at w = {scale:g} towards the chosen classes, in the data's proportions, "
            "and judged against fresh data of those classes only; the velocity field and "
            "density below are the unconditional model's (the null label)."
            if classes
            else ""
        )
    )

    # lazy tabs: only the open one computes (the density is the expensive one)
    views = st.tabs(list(VIEWS), key="p2_view", on_change="rerun")
    for tab, view in zip(views, VIEWS.values(), strict=True):
        if tab.open:
            with tab:
                view(path, stamp, source, res)


def show_trajectories(path: str, stamp: int, source: str, res: dict) -> None:
    st.plotly_chart(
        trajectory_figure(res, MAX_ANIMATED_POINTS, MAX_FRAMES, PATHS_SHOWN), key="p2_trajectories"
    )
    st.caption(
        f"{min(res['trajectory'].shape[1], MAX_ANIMATED_POINTS)} particles (paths of "
        f"{PATHS_SHOWN}) on {len(res['times'])} recorded times; press Play or drag the time "
        "slider. Grey: fresh data."
    )


def show_field(path: str, stamp: int, source: str, res: dict) -> None:
    t = st.slider("Time t", 0.0, 1.0, 0.5, step=0.05, key="p2_field_t")
    points, v = velocity_field(path, stamp, t)
    nearest = int(np.abs(res["times"] - t).argmin())
    st.plotly_chart(
        field_figure(points, v, res["trajectory"][nearest], float(res["times"][nearest])),
        key="p2_field",
    )
    st.caption(
        "v(x, t) on a 21 x 21 grid, arrows scaled to the grid spacing; blue: the particles at "
        "the recorded time nearest to t."
    )


def show_density(path: str, stamp: int, source: str, res: dict) -> None:
    if source != "gaussian":
        st.info(
            f"The model density needs the log-density of the source; this model starts from "
            f"`{distribution_label(source)}`, and ecnf's likelihood assumes a standard normal "
            "source. Train from "
            "`gaussian` to see it."
        )
        return
    log_scale = st.toggle("log scale", value=True, key="p2_log_scale")
    try:
        with st.spinner("Integrating the density backwards from every grid point..."):
            d = density(path, stamp)
    except ValueError as error:
        show_error(error, "choose another checkpoint.")
        return
    st.plotly_chart(density_figure(d, log_scale), key="p2_density")
    st.caption(
        f"log p(x) of the model on a {DENSITY_GRID} x {DENSITY_GRID} grid: RK4 with "
        f"{DENSITY_STEPS} steps from t = 1 back to t = 0 (NFE = {d['nfe']}), exact divergence. "
        f"Probability inside the square: {d['mass']:.3f}."
    )


VIEWS = {
    "Trajectories": show_trajectories,
    "Velocity field": show_field,
    "Density": show_density,
}


st.title("2D playground")
st.caption(
    "Train a flow between two 2D distributions or pick a shipped one, then watch it carry "
    "points from noise to data, look at its velocity field and density, and measure it."
)
mode = st.radio("Model", [SHIPPED, TRAIN], horizontal=True, key="p2_mode")
chosen = shipped_model() if mode == SHIPPED else trained_model()
if chosen is not None:
    show_model(*chosen)

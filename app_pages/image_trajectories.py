"""Image trajectories: a grid of images moving from noise to data, and what the model predicts."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pandas as pd
import streamlit as st
import torch

from ecnf import Callback, TrainConfig, TrainingDiverged, UNetConfig, fit
from ecnf.export import image_grid, save_image_grid, save_trajectory_gif
from ecnf.fast import fast_path_applies, is_cached, sample
from ecnf.guidance import guided, labels_in_turn
from ecnf.shipped import preferred_image_checkpoint
from ecnf.solvers import methods_for, nfe_per_step, solver_options
from ecnf_display.budget import default_image_count, is_large
from ecnf_display.playground import predicted_endpoints, speed_per_step, trajectory_velocities
from studio import (
    checkpoint_meta,
    checkpoints_dir,
    class_controls,
    confirm_cpu_run,
    enlarged,
    file_stamp,
    image_checkpoints,
    load_model,
    model_device,
    offer_import,
    session_workdir,
    set_active_checkpoint,
    show_error,
    solver_controls,
)
from studio.training import session_checkpoints_of

MAX_IMAGES, MAX_STEPS, ADAPTIVE_FRAMES = 64, 100, 20
MAX_FRAMES = 51  # frames shown (and evaluated for endpoints) out of at most 101 recorded
TRAINED = "img_trained"  # session_state key of the digits model trained on this page
TINY_DIGITS_STEPS = 400  # about a minute on two CPU cores


@st.cache_data(max_entries=8, show_spinner=False)
def image_run(
    path: str,
    stamp: int,
    method: str,
    steps: int | None,
    tol: float | None,
    seed: int,
    n: int,
    classes: tuple[int, ...] = (),
    scale: float = 1.0,
) -> dict:
    """Integrate n noise images; per recorded time the grid, the predicted endpoints, |v|.

    For a class-conditional model, ``classes`` (taken in turn along the grid) and the
    guidance scale ``scale`` guide every velocity, those of the views included."""
    model = load_model(path, stamp)
    labels = grid_labels(classes, n)
    if labels is not None:
        model = guided(model, labels.to(model_device(model)), scale)
    device = model_device(model)
    shape = tuple(model.config.data_shape)
    x0 = torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))
    tols = {} if tol is None else {"rtol": tol, "atol": tol}
    kw = solver_options(method, steps=steps, frames=ADAPTIVE_FRAMES, **tols)
    x0 = x0.to(device)
    fast = None if labels is None else False  # a guided solve runs eagerly, its NFE counted
    if steps is not None and fast is None and fast_path_applies(model, method):
        sample(model, x0, return_trajectory=True, **kw)  # compile and capture, not timed
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    sol = sample(model, x0, return_trajectory=True, fast=fast, **kw)  # fast path on CUDA
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    seconds = time.perf_counter() - start
    count = sol.times.shape[0]
    shown = torch.linspace(0, count - 1, min(count, MAX_FRAMES)).round().long().unique()
    trajectory, times = sol.trajectory[shown.to(device)], sol.times[shown.to(device)]
    # one frame of n images per batch keeps each image beside its label
    velocities = trajectory_velocities(model, trajectory, times, batch_size=n)
    endpoints = predicted_endpoints(model, trajectory, times, velocities=velocities)
    trajectory = trajectory.cpu()
    with tempfile.TemporaryDirectory() as tmp:
        png = save_image_grid(Path(tmp) / "grid.png", trajectory[-1], scale=4).read_bytes()
        gif = save_trajectory_gif(Path(tmp) / "trajectory.gif", trajectory).read_bytes()
    return {
        "times": times.cpu().numpy(),
        "states": [image_grid(x) for x in trajectory],
        "endpoints": [image_grid(x) for x in endpoints.cpu()],
        "speed": speed_per_step(velocities).cpu().numpy(),
        "nfe": sol.nfe,
        "seconds": seconds,
        "png": png,
        "gif": gif,
    }


def grid_labels(classes: tuple[int, ...], n: int) -> torch.Tensor | None:
    """The label of each of the ``n`` images: ``classes`` in turn (None: unconditional)."""
    return labels_in_turn(classes, n) if classes else None


class Progress(Callback):
    def __init__(self, bar, total: int) -> None:
        self.bar, self.total = bar, total

    def on_log(self, record: dict) -> None:
        self.bar.progress(
            record["step"] / self.total,
            text=f"step {record['step']}/{self.total}, loss {record['loss']:.4f}, "
            f"about {record['eta_s']:.0f} s left",
        )


def train_tiny_digits() -> None:
    """About a minute of flow matching on scikit-learn's 8x8 digits, into a session folder."""
    config = TrainConfig(
        data="digits",
        model=UNetConfig(
            data_shape=(1, 8, 8), channels=32, channel_mult=(1, 2), attention_levels=()
        ),
        iterations=TINY_DIGITS_STEPS,
        batch_size=128,
        lr=2e-3,
        lr_schedule="cosine",
        log_every=10,
        checkpoint_every=TINY_DIGITS_STEPS,
        out_dir=str(session_workdir() / "tiny_digits"),
    )
    bar = st.progress(0.0, text="loading the digits...")
    try:
        result = fit(config, [Progress(bar, config.iterations)], overwrite=True, command="studio")
    except (TrainingDiverged, ValueError, FileNotFoundError) as error:
        show_error(error, "try again; if it keeps failing, train from the command line.")
        return
    finally:
        bar.empty()
    st.session_state[TRAINED] = {
        "path": str(result.checkpoint),
        "label": f"tiny digits UNet, {result.step} steps (this session)",
        "seconds": result.wall_time_s,
    }


def choose_checkpoint() -> tuple[str, str] | None:
    available = image_checkpoints()  # shipped images/NAME, then imported/NAME
    shipped = {k: v for k, v in available.items() if k.startswith("images/")}
    options = dict(available)
    options |= session_checkpoints_of("images")  # trained on the Train page
    trained = st.session_state.get(TRAINED)
    if trained is not None:
        options[trained["label"]] = trained["path"]
    if not shipped:
        st.info(
            f"No image checkpoint is shipped in `{checkpoints_dir() / 'images'}` yet. You can "
            f"train a tiny digits model here ({TINY_DIGITS_STEPS} steps, a short run on a "
            "CPU): its samples are rough, but every control below works on it."
        )
    if len(shipped) == len(available):
        offer_import("img")
    with st.expander("Train a tiny digits model", expanded=not options):
        st.caption(
            f"Flow matching on scikit-learn's 8x8 digits: a small UNet (32 channels), "
            f"{TINY_DIGITS_STEPS} steps of batch 128, AdamW at 2e-3 with cosine decay."
        )
        if st.button(f"Train a tiny digits model ({TINY_DIGITS_STEPS} steps)", key="img_train"):
            train_tiny_digits()
            trained = st.session_state.get(TRAINED)
            if trained is not None:
                options[trained["label"]] = trained["path"]
                st.success(f"Trained in {trained['seconds']:.0f} s; it is selected below.")
                st.session_state["img_checkpoint"] = trained["label"]
    if not options:
        return None
    # open on the model whose samples show the most (largest images, best card); on a CPU
    # among the shipped ones, since an imported CIFAR-10 UNet takes minutes there
    best = preferred_image_checkpoint(available if torch.cuda.is_available() else shipped)
    labels = list(options)
    index = labels.index(best) if best is not None else 0
    label = st.selectbox("Checkpoint", labels, index=index, key="img_checkpoint")
    return options[label], label


def imported_line(imported: dict) -> str:
    """Where an imported model comes from, and what its source reports (as reported)."""
    reported = imported.get("reported")
    quality = (
        f"FID {reported['FID']} reported by {reported['by']} ({reported['solver']}, "
        f"{reported['samples']} samples), not measured here."
        if reported
        else "Its source reports no FID."
    )
    return f"Imported from {imported['library']} ({imported['licence']} licence). {quality}"


def approved_to_run(path: str, stamp: int, method: str, steps: int | None, n: int) -> bool:
    """For a large model on a CPU: the solve's estimated time, and a button to start it."""
    evaluations = (
        None if steps is None else steps * nfe_per_step(method) + min(steps + 1, MAX_FRAMES)
    )
    return confirm_cpu_run(
        "img",
        path,
        stamp,
        n,
        evaluations,
        (method, steps),
        what="the solve's NFE plus one per frame shown",
    )


def read_checkpoint_meta(path: str, label: str) -> tuple[int, dict] | None:
    """The file's stamp and metadata, or None after showing why it cannot be used."""
    try:
        stamp = file_stamp(path)
        meta = checkpoint_meta(path, stamp)
        if len(meta["model_config"]["data_shape"]) != 3:
            raise ValueError(f"{label} is not an image model (its data are {meta['dataset']!r})")
    except (ValueError, OSError, KeyError) as error:
        show_error(error, "choose another checkpoint (image models live in checkpoints/images).")
        return None
    return stamp, meta


st.title("Image trajectories")
st.caption(
    "Watch a grid of images travel from Gaussian noise (t = 0) to samples (t = 1), beside "
    "the endpoint the model predicts from each intermediate state."
)
chosen = choose_checkpoint()
described = None if chosen is None else read_checkpoint_meta(*chosen)
if described is not None:
    (path, label), (stamp, meta) = chosen, described
    set_active_checkpoint(label)
    st.caption(
        f"Trained on `{meta.get('dataset')}` with loss `{meta.get('loss')}` for "
        f"{meta.get('steps')} steps."
    )
    if "imported" in meta:
        st.caption(imported_line(meta["imported"]))
    c1, c2, c3, c4 = st.columns(4)
    method, steps, tol = solver_controls(
        c1,
        c2,
        "img",
        methods=methods_for(meta.get("model") or {}),
        max_steps=MAX_STEPS,
        steps_help="Cost grows with steps x images; on a CPU the largest settings take "
        "minutes for 28 x 28 models.",
    )
    seed = int(c3.number_input("Seed", 0, 2**31 - 1, 0, key="img_seed"))
    large = is_large(load_model(path, stamp))
    n = c4.slider(
        "Images",
        1,
        MAX_IMAGES,
        default_image_count(load_model(path, stamp)),
        key="img_count_large" if large else "img_count",  # a large model on a CPU starts at 4
    )
    classes, scale = class_controls(meta, "img", "in turn along the grid")
    try:
        if large and not approved_to_run(path, stamp, method, steps, n):
            st.stop()
        model = load_model(path, stamp)
        shape = (n, *model.config.data_shape)
        compiling = (
            steps is not None
            and not classes
            and fast_path_applies(model, method)
            and not is_cached(model, shape, method, steps, trajectory=True)
        )
        busy = (
            "Compiling and capturing this solve for the GPU (once per model, image count, "
            "solver and steps), then integrating..."
            if compiling
            else "Integrating and evaluating the model along the trajectory..."
        )
        with st.spinner(busy):
            res = image_run(path, stamp, method, steps, tol, seed, n, classes, scale)
    except (ValueError, FileNotFoundError) as error:
        show_error(error, "choose another solver, fewer steps or another checkpoint.")
    except torch.OutOfMemoryError:
        show_error(MemoryError("out of memory"), "lower the number of images or of steps.")
    else:
        times = res["times"]
        m1, m2, m3, m4 = st.columns(4)
        m1.metric("NFE", res["nfe"], help="velocity evaluations spent by the solver")
        m2.metric("Solve wall time", f"{res['seconds']:.2f} s")
        m3.metric("Frames", len(times), help=f"recorded times shown, at most {MAX_FRAMES}")
        m4.metric("Final mean |v|", f"{res['speed'][-1]:.2f}")
        if tol is not None:
            st.caption(
                f"{method} chose its own steps to meet rtol = atol = {tol:g}; the trajectory is "
                f"recorded at {ADAPTIVE_FRAMES + 1} evenly spaced times."
            )
        frame = st.select_slider(
            "Time t",
            options=list(range(len(times))),
            value=len(times) - 1,
            format_func=lambda k: f"{times[k]:.2f}",
            key=f"img_frame_{len(times)}",
        )
        left, right = st.columns(2)
        left.subheader("State x_t")
        left.image(enlarged(res["states"][frame]), caption=f"t = {times[frame]:.2f}")
        right.subheader("Predicted endpoint")
        right.image(
            enlarged(res["endpoints"][frame]),
            caption=f"x_t + (1 - t) v(x_t, t) at t = {times[frame]:.2f}",
        )
        st.caption(
            "The predicted endpoint is one Euler step to t = 1: the model's guess of where each "
            "image will land. At t = 0 a flow matching model predicts roughly the average "
            "image; the guesses sharpen as t grows, and a straight flow gets them right at once."
        )
        st.subheader("Velocity magnitude")
        speed = pd.DataFrame({"t": times, "mean |v|": res["speed"]})
        st.line_chart(speed, x="t", y="mean |v|", height=240)
        st.caption(
            "Mean over the images of the L2 norm of v(x_t, t) at each recorded time; a "
            "straight flow keeps it constant."
        )
        d1, d2 = st.columns(2)
        d1.download_button(
            "Download the final grid (PNG)",
            res["png"],
            file_name="samples.png",
            mime="image/png",
            on_click="ignore",
            key="img_png",
        )
        d2.download_button(
            "Download the trajectory (GIF)",
            res["gif"],
            file_name="trajectory.gif",
            mime="image/gif",
            on_click="ignore",
            key="img_gif",
        )

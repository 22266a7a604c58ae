"""Train: configure a flow matching run, watch it live, stop and resume it, reuse its checkpoint."""

from __future__ import annotations

import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch

from ecnf import (
    TOY_DATASETS,
    LossConfig,
    MLPConfig,
    ResNetConfig,
    TrainConfig,
    UNetConfig,
    load_images,
)
from ecnf.data import TOY_EXTENT, DatasetNotFoundError, dataset_shape
from ecnf.export import image_grid
from ecnf.nets import ACTIVATIONS
from ecnf.train import PREVIEW_SOLVER
from ecnf_display.pictures import points_image
from studio import enlarged, session_workdir, show_error
from studio.training import (
    ServerBusy,
    add_session_checkpoint,
    current_run,
    server_scheduler,
    session_checkpoints,
    start_run,
)

IMAGE_SETS = ("digits", "fashion_mnist", "cifar10")
LOSSES = {
    "fm": "flow matching (independent pairs)",
    "otcfm": "OT-CFM (minibatch optimal transport pairs)",
    "consistency": "velocity consistency (seed paper eqs. 6-8)",
}
ON_GPU = torch.cuda.is_available()
#: Seconds between redraws of a running run's view. Each redraw costs the server and the
#: visitor's browser a little CPU, which on a small server is taken from the training runs.
REFRESH_S = 2.0


@st.cache_data(ttl=60, show_spinner=False)
def missing_data(name: str) -> str | None:
    """Why image data set ``name`` cannot be loaded here (None when it can)."""
    if name in TOY_DATASETS or name == "digits":
        return None
    try:
        load_images(name, train=False)
    except DatasetNotFoundError as error:
        return str(error)
    return None


def model_controls(shape: tuple[int, ...]):
    """Architecture widgets; returns a model config for data of ``shape``."""
    archs = ["mlp", "resnet"] if len(shape) == 1 else ["unet", "mlp", "resnet"]
    c1, c2, c3 = st.columns(3)
    arch = c1.radio("Architecture", archs, horizontal=True, key="tr_arch")
    if arch == "unet":
        channels = c2.select_slider("Channels", [8, 16, 32, 64, 128], value=32, key="tr_channels")
        levels = 2 if shape[-1] <= 8 else 3
        c3.caption("The UNet uses SiLU; the adaptive activation applies to MLP and ResNet.")
        return UNetConfig(
            data_shape=shape,
            channels=channels,
            channel_mult=(1, 2, 2)[:levels],
            attention_levels=(),
        )
    activation = c1.selectbox(
        "Activation", ACTIVATIONS, index=ACTIVATIONS.index("silu"), key="tr_activation"
    )
    width = c2.select_slider("Width", [32, 64, 128, 256, 512], value=256, key="tr_width")
    depth = c3.slider("Depth (layers or residual blocks)", 1, 8, 3, key="tr_depth")
    if arch == "mlp":
        return MLPConfig(data_shape=shape, width=width, depth=depth, activation=activation)
    return ResNetConfig(data_shape=shape, width=width, num_blocks=depth, activation=activation)


#: A short CIFAR-10 run for a GPU: the largest UNet of this page (128 channels, three
#: levels), batch 128, AdamW at 2e-4 and EMA 0.9999 as in TorchCFM's CIFAR-10 recipe, bf16
#: autocast (the default precision on CUDA) and trajectory previews every 500 steps.
#: It makes no claim of quality: its samples are what the previews show.
CIFAR10_RECIPE = {
    "tr_data": "cifar10",
    "tr_arch": "unet",
    "tr_channels": 128,
    "tr_loss": "otcfm",
    "tr_steps": 20_000,
    "tr_batch": 128,
    "tr_lr": 2e-4,
    "tr_ema": 0.9999,
    "tr_schedule": "constant",
    "tr_preview": 500,
}


def use_cifar10_recipe() -> None:
    st.session_state.update(CIFAR10_RECIPE)


#: What the form opens on for each kind of data, chosen so that a first run shows a model
#: worth looking at quickly on a CPU: the ETA metric says how long it takes here. A 2D run
#: (MLP 256 x 3, batch 256) takes about ten seconds on two cores. The learning rate is ten
#: times the seed paper's, with cosine decay; the EMA warms up, so early previews are not
#: the initial network.
QUICK_DEFAULTS = {
    "2d": {"tr_steps": 1000, "tr_lr": 2e-3, "tr_schedule": "cosine", "tr_wd": 1e-4,
           "tr_ema": 0.999, "tr_preview": 100},
    "images": {"tr_steps": 1000, "tr_lr": 1e-3, "tr_schedule": "cosine", "tr_wd": 1e-4,
               "tr_ema": 0.999, "tr_preview": 200},
}  # fmt: skip
#: The seed paper's optimisation settings: AdamW at 2e-4, weight decay 1e-4, EMA 0.999, a
#: constant rate. They are meant for long runs: in the few thousand iterations a CPU gives
#: in a minute, the previews are still blurry.
SEED_PAPER = {"tr_lr": 2e-4, "tr_schedule": "constant", "tr_wd": 1e-4, "tr_ema": 0.999}


def data_kind(data: str) -> str:
    return "2d" if data in TOY_DATASETS else "images"


def use_quick_defaults() -> None:
    """The data set changed (or the page opened): its quick defaults."""
    st.session_state.update(QUICK_DEFAULTS[data_kind(st.session_state.get("tr_data", "moons"))])


def use_seed_paper() -> None:
    st.session_state.update(SEED_PAPER)


def config_controls() -> tuple[TrainConfig, str] | None:
    """The whole form: returns the run's config and a label, or None if the data are missing."""
    st.button(
        "CIFAR-10 recipe for a GPU",
        on_click=use_cifar10_recipe,
        key="tr_cifar_recipe",
        help="128-channel UNet, OT-CFM, batch 128, lr 2e-4, EMA 0.9999, bf16 on CUDA, 20,000 "
        "iterations with trajectory previews every 500. CIFAR-10 must be under the data root "
        "(or the machine online). A short run: expect blurry images, not a benchmark model.",
    )
    if "tr_steps" not in st.session_state:
        use_quick_defaults()
    c1, c2 = st.columns(2)
    data = c1.selectbox(
        "Data set",
        [*TOY_DATASETS, *IMAGE_SETS],
        index=TOY_DATASETS.index("moons"),
        key="tr_data",
        on_change=use_quick_defaults,
        help="Picking a data set sets the optimisation below to its quick defaults.",
    )
    shape = dataset_shape(data)
    problem = missing_data(data)
    if problem is not None:
        st.error(f"`{data}` is not available on this machine.\n\n{problem}")
        st.caption(
            "Fashion-MNIST: `apt-get install dataset-fashion-mnist` (Debian) or any machine "
            "online. CIFAR-10: a `cifar-10-batches-py` folder under the data root, or online."
        )
        if st.button(f"Download `{data}` now (needs a connection)", key="tr_download"):
            try:
                with st.spinner(f"Downloading {data}..."):
                    for train in (True, False):
                        load_images(data, train=train, download=True)
            except (OSError, DatasetNotFoundError, ValueError) as error:
                show_error(error, "put the files under the data root by hand, as above.")
            else:
                missing_data.clear()
                st.rerun()
        return None
    source = "gaussian"
    if len(shape) == 1:
        source = c2.selectbox(
            "Source (t = 0)", TOY_DATASETS, index=TOY_DATASETS.index("gaussian"), key="tr_source"
        )
    else:
        c2.caption(f"Images of shape {shape}; the source is standard Gaussian noise.")
    loss = c2.selectbox("Loss", list(LOSSES), format_func=LOSSES.get, key="tr_loss")
    model = model_controls(shape)
    st.subheader(
        "Optimisation",
        help="Quick defaults: AdamW with ten times the seed paper's learning rate and cosine "
        "decay, so that a first run shows a good model within seconds (2D) or minutes "
        "(images) on a CPU.",
    )
    p1, p2, _ = st.columns([1, 1, 2])
    p1.button("Quick defaults", on_click=use_quick_defaults, key="tr_quick")
    p2.button(
        "Seed paper's settings",
        on_click=use_seed_paper,
        key="tr_seed_paper",
        help="AdamW at 2e-4, weight decay 1e-4, EMA 0.999, constant rate: the settings of "
        "the seed paper, which trains for far longer than a CPU allows here; in a run of a "
        "few thousand iterations its previews are still blurry. Raise the iterations too.",
    )
    c1, c2, c3, c4 = st.columns(4)
    iterations = int(
        c1.number_input(
            "Iterations", 10, 200_000, step=100, key="tr_steps", help="optimisation steps"
        )
    )
    batch = c1.select_slider(
        "Batch size",
        [32, 64, 128, 256, 512, 1024],
        value=512 if ON_GPU else 256,
        key="tr_batch",
        help="The seed paper uses 512; 256 is the default on a CPU.",
    )
    lr = c2.number_input("Learning rate", 1e-6, 1e-1, format="%.1e", step=1e-4, key="tr_lr")
    weight_decay = c2.number_input("Weight decay", 0.0, 1e-1, format="%.1e", step=1e-4, key="tr_wd")
    ema = c3.number_input("EMA decay", 0.0, 0.99999, format="%.4f", step=0.001, key="tr_ema")
    schedule = c3.selectbox("LR schedule", ["constant", "cosine"], key="tr_schedule")
    seed = int(c4.number_input("Seed", 0, 2**31 - 1, 0, key="tr_seed"))
    preview_every = int(
        c4.number_input(
            "Preview every (iterations, 0 = never)", 0, 100_000, step=50, key="tr_preview"
        )
    )
    try:
        config = TrainConfig(
            data=data,
            source=source,
            model=model,
            loss=LossConfig(loss),
            iterations=iterations,
            batch_size=batch,
            lr=float(lr),
            weight_decay=float(weight_decay),
            ema_decay=float(ema),
            lr_schedule=schedule,
            seed=seed,
            log_every=max(1, min(25, iterations // 40)),
            checkpoint_every=iterations,
            sample_every=preview_every,
            num_preview=500 if len(shape) == 1 else 16,
            out_dir=str(session_workdir() / "train" / f"{data}_{loss}_{model.arch}_{seed}"),
        )
    except ValueError as error:
        show_error(error, "pick another combination of the options above.")
        return None
    label = f"session/{data}_{loss}_{model.arch}_seed{seed}"
    return config, label


def loss_chart(records: list[dict]) -> None:
    """The loss against the step, as plotly (the studio's other charts; Streamlit's own
    line chart would import Altair, seconds of CPU on a first run)."""
    fig = go.Figure(
        go.Scatter(
            x=[r["step"] for r in records],
            y=[r["loss"] for r in records],
            mode="lines",
            line={"color": "#1f77b4"},
        )
    )
    fig.update_layout(
        height=260,
        margin={"l": 10, "r": 10, "t": 10, "b": 10},
        xaxis_title="step",
        yaxis_title="loss",
    )
    st.plotly_chart(fig, key="tr_loss_chart")


def show_preview(preview, data: str) -> None:
    step, samples = preview
    if samples.ndim == 2:  # an image, not a chart: cheap to redraw every few seconds
        st.image(points_image(samples.numpy(), 320, TOY_EXTENT))
        st.caption(f"The square [-{TOY_EXTENT:g}, {TOY_EXTENT:g}]², y up.")
    else:
        st.image(enlarged(image_grid(samples, nrow=4), 320))
    method, steps = PREVIEW_SOLVER
    st.caption(f"EMA samples of `{data}` at step {step}: {method}, {steps} steps, fixed noise.")


def show_trajectory(step: int, times, states) -> None:
    """Noise to images for the first preview samples: one row per sample, one column per time."""
    frames, rows = states.shape[:2]
    grid = states.transpose(0, 1).reshape(frames * rows, *states.shape[2:])  # row-major
    st.image(enlarged(image_grid(grid, nrow=frames), 640))
    method, steps = PREVIEW_SOLVER
    shown = ", ".join(f"{t:.1f}" for t in times.tolist())
    st.caption(
        f"Trajectories of the EMA model at step {step}, left to right t = {shown} "
        f"({method}, {steps} steps, the preview's fixed noise)."
    )


def server_line() -> None:
    """How busy the server is: places in use, the queue, how the cores are shared."""
    scheduler = server_scheduler()
    status, config = scheduler.status(), scheduler.config
    limit = (
        f" A run that has trained {config.max_run_s:.0f} s gives its place up to a waiting one."
        if config.max_run_s
        else ""
    )
    st.caption(
        f"**This server:** {status['active']} of {status['max_active']} training places in "
        f"use, {status['queued']} runs queued (at most {status['max_queued']}). Each run "
        f"trains in a process of its own, and the runs in place share the {config.cores} "
        f"cores evenly (torch threads now: {status['threads'] or '-'}).{limit}"
    )


def show_run() -> None:
    """Live view of this session's run; reruns itself every REFRESH_S while the run goes on."""
    run = current_run()
    if run is None:
        server_line()
        st.info("Choose the options and press **Start**.")
        return
    records, preview = run.recorder.snapshot()
    total = run.config.iterations
    step = records[-1]["step"] if records else run.recorder.start_step
    server_line()
    if run.queued:
        scheduler = server_scheduler()
        soonest = scheduler.status()["soonest_end_s"]
        when = (
            f"; the soonest run now training should end in about {soonest:.0f} s"
            if soonest is not None
            else ""
        )
        st.info(
            f"`{run.label}` is queued: number {scheduler.position(run.ticket)} in line for one "
            f"of the server's {scheduler.config.max_active} training places{when}. It starts "
            "by itself; **Stop** leaves the queue.",
            icon=":material/hourglass_top:",
        )
    elif run.running:
        st.progress(min(step / total, 1.0), text=f"`{run.label}`: step {step}/{total}")
    elif run.error is not None:
        show_error(*run.error)
    elif run.preempted:
        st.warning(
            f"`{run.label}` stopped at step {step}/{total} after "
            f"{server_scheduler().config.max_run_s:.0f} s of training, because another "
            "visitor was waiting for a place. Its state is saved: **Resume** continues it "
            "(in the queue if the server is full)."
        )
    elif run.reason == "left the queue":
        st.info(f"`{run.label}` left the queue before it started.")
    else:
        st.success(f"`{run.label}` {run.reason} at step {step}/{total}.")
    if records:
        last = records[-1]
        m1, m2, m3, m4, m5 = st.columns(5)
        m1.metric("Step", f"{step}/{total}")
        m2.metric("Loss", f"{last['loss']:.4f}")
        m3.metric(
            "Throughput",
            f"{last['samples_per_s']:.0f} samples/s",
            help="Training samples per second over the latest log interval; runs training "
            "at the same time share the cores.",
        )
        m4.metric("ETA", f"{last['eta_s']:.0f} s" if run.running else "-")
        m5.metric(
            "Memory",
            f"{run.memory_mb:.0f} MiB" if run.memory_mb else "-",
            help="What the run's process costs: its proportional set size (pages shared "
            "with the other runs counted in part), read from /proc while it trains.",
        )
        left, right = st.columns([3, 2])
        with left:
            loss_chart(records)
        with right:
            if preview is not None:
                show_preview(preview, run.config.data)
            else:
                st.caption("No preview yet (see *Preview every*).")
        trajectory = run.recorder.latest_trajectory()
        if trajectory is not None and trajectory[2].ndim == 5:  # (T, B, C, H, W): images
            show_trajectory(*trajectory)
    elif run.running and not run.queued:
        st.caption("Starting: the first record comes after a few steps.")
    if not run.running and run.error is None and run.checkpoint and not run.registered:
        add_session_checkpoint(run.label, run.checkpoint)
        run.registered = True
    if run.running:
        return
    if st.session_state.get("tr_was_running"):
        st.session_state["tr_was_running"] = False
        st.rerun()  # re-enable Start and Resume outside the fragment


st.title("Train")
st.caption(
    "Train a velocity network by flow matching in the background. The run belongs to this "
    "browser tab: its checkpoint is written to the session's temporary folder and can be "
    "picked on the other pages while this session lasts."
)
chosen = config_controls()
run = current_run()
running = run is not None and run.running
b1, b2, b3, _ = st.columns([1, 1, 1, 3])
busy = None
if b1.button("Start", type="primary", disabled=running or chosen is None, key="tr_start"):
    try:
        start_run(*chosen)
    except ServerBusy as error:
        busy = error
    else:
        st.rerun()  # redraw the buttons with Start disabled
if b2.button("Stop", disabled=not running, key="tr_stop"):
    run.stop()
    with st.spinner("Stopping at the next step; the state is saved..."):
        run.thread.join(timeout=60)
    st.rerun()
if b3.button("Resume", disabled=run is None or not run.resumable, key="tr_resume"):
    try:
        run.start(resume=True)
    except ServerBusy as error:
        busy = error
    else:
        st.rerun()
if busy is not None:
    st.error(str(busy), icon=":material/group:")
st.session_state["tr_was_running"] = running

st.fragment(show_run, run_every=REFRESH_S if running else None)()

trained = session_checkpoints()
if trained:
    st.subheader("Checkpoints of this session")
    st.dataframe(
        pd.DataFrame([{"checkpoint": k, "file": v} for k, v in trained.items()]),
        hide_index=True,
    )
    st.caption("The Solver lab and the Likelihood lab list these beside the shipped models.")

"""Solver lab: one model, one batch of noise, every fixed-step solver at several NFE budgets."""

from __future__ import annotations

import numpy as np
import pandas as pd
import plotly.graph_objects as go
import streamlit as st
import torch
from plotly.subplots import make_subplots

from ecnf import integrate, load_images, wasserstein2
from ecnf.data import TOY_EXTENT, DatasetNotFoundError, to_model_range
from ecnf.evaluation import BUDGETS, image_feature_net, solver_grid, stepped_methods, toy_sets
from ecnf.export import image_grid
from ecnf.metrics import CLASSIFIER_DATASETS
from ecnf.metrics.images import feature_statistics, frechet_distance
from ecnf.metrics.inception import default_inception_weights_path
from ecnf_display.budget import is_large
from ecnf_display.figures import add_point_cloud, log_axis, log_ticks
from ecnf_display.labs import chord_deviation, straightness
from ecnf_display.leaderboard import shipped_leaderboard
from studio import (
    TOLERANCES,
    checkpoint_meta,
    confirm_cpu_run,
    enlarged,
    file_stamp,
    image_checkpoints,
    list_checkpoints,
    load_model,
    model_device,
    offer_import,
    set_active_checkpoint,
    show_error,
)
from studio.training import session_checkpoints

BUDGET_CHOICES = (1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 32, 40)
SHOWN_POINTS, SHOWN_IMAGES = 500, 8


def all_checkpoints() -> dict[str, str]:
    options = {f"2d/{k}": v for k, v in list_checkpoints("2d").items()}
    return options | image_checkpoints() | session_checkpoints()


@st.cache_resource(max_entries=4, show_spinner=False)
def feature_net(dataset: str):
    """The shipped classifier of ``dataset``; else Inception-v3 (FID) when its weights are on
    this machine; else ``None`` (only samples are shown)."""
    if dataset in CLASSIFIER_DATASETS:
        return image_feature_net(dataset)
    weights = default_inception_weights_path()
    return image_feature_net(dataset, weights) if weights.is_file() else None


@st.cache_data(max_entries=8, show_spinner=False)
def real_features(dataset: str, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Classifier features of n test images and of n training images (the floor's pair)."""
    net = feature_net(dataset)
    test = to_model_range(load_images(dataset, train=False)[:n])
    train = to_model_range(load_images(dataset, train=True)[:n])
    return net.features(test).numpy(), net.features(train).numpy()


def fd(features: np.ndarray, reference: np.ndarray) -> float:
    return frechet_distance(*feature_statistics(features), *feature_statistics(reference))


def noise_and_judge(path: str, stamp: int, n: int, seed: int):
    """The seeded noise batch and a function scoring samples (lower is better), its floor."""
    meta = checkpoint_meta(path, stamp)
    shape = tuple(meta["model_config"]["data_shape"])
    if shape == (2,):
        x0, fresh, other = toy_sets(meta["dataset"], meta.get("source", "gaussian"), n, seed)
        return x0, lambda x: wasserstein2(x.cpu(), fresh), wasserstein2(other, fresh)
    x0 = torch.randn((n, *shape), generator=torch.Generator().manual_seed(seed))
    dataset = meta["dataset"]
    net = feature_net(dataset)
    if net is None:
        return x0, None, None
    test, train = real_features(dataset, n)
    return x0, lambda x: fd(net.features(x.cpu()).numpy(), test), fd(train, test)


@st.cache_data(max_entries=16, show_spinner=False)
def solver_sweep(path: str, stamp: int, budgets: tuple[int, ...], n: int, seed: int) -> dict:
    model = load_model(path, stamp)
    device = model_device(model)
    x0, judge, floor = noise_and_judge(path, stamp, n, seed)
    rows, samples = [], {}
    for method, steps, nfe in solver_grid(budgets, stepped_methods(model)):
        sol = integrate(model, x0.to(device), method=method, steps=steps, return_trajectory=True)
        trajectory = sol.trajectory.cpu()
        rows.append(
            {
                "method": method,
                "steps": steps,
                "nfe": sol.nfe,
                "quality": judge(sol.x) if judge else None,
                "straightness": straightness(trajectory).mean().item(),
                "chord deviation": chord_deviation(trajectory, sol.times.cpu()).mean().item(),
            }
        )
        shown = sol.x.cpu()
        if shown.ndim == 2:
            samples[(method, nfe)] = shown[:SHOWN_POINTS].numpy()
        else:
            samples[(method, nfe)] = image_grid(shown[:SHOWN_IMAGES], nrow=SHOWN_IMAGES // 2)
    return {"rows": rows, "samples": samples, "floor": floor}


@st.cache_data(max_entries=16, show_spinner=False)
def adaptive_run(path: str, stamp: int, tol: float, n: int, seed: int) -> dict:
    model = load_model(path, stamp)
    x0, judge, _ = noise_and_judge(path, stamp, n, seed)
    sol = integrate(model, x0.to(model_device(model)), method="dopri5", rtol=tol, atol=tol)
    return {"nfe": sol.nfe, "quality": judge(sol.x) if judge else None}


def quality_figure(rows: pd.DataFrame, floor: float | None, name: str, adaptive: dict):
    fig = go.Figure()
    for method, part in rows.groupby("method", sort=False):
        fig.add_scatter(x=part["nfe"], y=part["quality"], mode="lines+markers", name=method)
    if adaptive["quality"] is not None:
        fig.add_scatter(
            x=[adaptive["nfe"]],
            y=[adaptive["quality"]],
            mode="markers",
            marker={"symbol": "star", "size": 12},
            name="dopri5",
        )
    if floor is not None:
        fig.add_hline(
            y=floor, line_dash="dash", line_color="grey", annotation_text="data-vs-data floor"
        )
    nfes = [*rows["nfe"], adaptive["nfe"]]
    log_axis(fig, "x", sorted(set(nfes)), "NFE (velocity evaluations)")
    log_axis(fig, "y", log_ticks([*rows["quality"], adaptive["quality"], floor]), name)
    fig.update_layout(height=380, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


def small_multiples_2d(samples: dict, methods: list[str], budgets: list[int]) -> go.Figure:
    fig = make_subplots(
        rows=len(methods),
        cols=len(budgets),
        row_titles=methods,
        column_titles=[f"NFE {b}" for b in budgets],
        horizontal_spacing=0.01,
        vertical_spacing=0.02,
    )
    for i, method in enumerate(methods, start=1):
        for j, nfe in enumerate(budgets, start=1):
            x = samples.get((method, nfe))
            if x is not None:
                add_point_cloud(fig, x, row=i, col=j)
    fig.update_xaxes(range=[-TOY_EXTENT, TOY_EXTENT], showticklabels=False)
    fig.update_yaxes(range=[-TOY_EXTENT, TOY_EXTENT], showticklabels=False)
    fig.update_layout(height=140 * len(methods) + 60, margin={"l": 10, "r": 30, "t": 40, "b": 10})
    return fig


st.title("Solver lab")
st.caption(
    "The same noise, integrated by every fixed-step solver at each budget of velocity "
    "evaluations (NFE): how quickly does each one reach the model's own samples?"
)
options = all_checkpoints()
if not any(label.startswith("imported/") for label in options):
    offer_import("sl")
if not options:
    st.info("No checkpoint found: train one on the Train page or add shipped ones.")
    st.stop()
names = list(options)
default = names.index("2d/moons_otcfm") if "2d/moons_otcfm" in names else 0
label = st.selectbox("Model", names, index=default, key="sl_model")
path = options[label]
try:
    stamp = file_stamp(path)
    meta = checkpoint_meta(path, stamp)
    is_2d = tuple(meta["model_config"]["data_shape"]) == (2,)
    large = not is_2d and is_large(load_model(path, stamp))
except (ValueError, OSError, KeyError) as error:
    show_error(error, "choose another checkpoint.")
    st.stop()
set_active_checkpoint(label)
c1, c2, c3, c4 = st.columns([3, 1, 1, 1])
budgets = c1.multiselect("NFE budgets", BUDGET_CHOICES, default=list(BUDGETS), key="sl_budgets")
counts = (250, 500, 1000, 2000) if is_2d else (4, 8, 16, 32) if large else (32, 64, 128, 256)
n = c2.select_slider("Samples", counts, value=counts[1], key=f"sl_n_{is_2d}_{large}")
seed = int(c3.number_input("Seed", 0, 2**31 - 1, 0, key="sl_seed"))
tol = c4.select_slider(
    "dopri5 tolerance",
    TOLERANCES,
    value=1e-3,
    format_func=lambda v: f"{v:g}",
    key="sl_tol",
)
if not budgets:
    st.info("Pick at least one NFE budget.")
    st.stop()
budgets = tuple(sorted(budgets))
if large:
    evaluations = sum(nfe for _, _, nfe in solver_grid(budgets))
    what = "every fixed-step solve; dopri5 adds its own"
    if not confirm_cpu_run("sl", path, stamp, n, evaluations, (budgets, seed, tol), what=what):
        st.stop()
try:
    with st.spinner("Integrating every solver at every budget..."):
        sweep = solver_sweep(path, stamp, budgets, n, seed)
        adaptive = adaptive_run(path, stamp, tol, n, seed)
except (ValueError, OSError, DatasetNotFoundError) as error:
    show_error(error, "choose another model or fewer samples.")
    st.stop()

rows = pd.DataFrame(sweep["rows"])
if rows.empty:
    st.info("No solver can spend these budgets exactly; add a budget divisible by 2 or 4.")
    st.stop()
quality_name = f"W2 to fresh {meta['dataset']}" if is_2d else None
if not is_2d and feature_net(meta["dataset"]) is not None:
    quality_name = feature_net(meta["dataset"]).metric_prefix
m1, m2, m3 = st.columns(3)
m1.metric(
    "dopri5 NFE", adaptive["nfe"], help=f"evaluations it really used at rtol = atol = {tol:g}"
)
if adaptive["quality"] is not None:
    m2.metric(f"dopri5 {quality_name}", f"{adaptive['quality']:.4g}")
if sweep["floor"] is not None:
    m3.metric("Data-vs-data floor", f"{sweep['floor']:.4g}")

st.subheader("Quality against NFE")
if quality_name is None:
    st.info(
        f"No shipped classifier judges `{meta['dataset']}` images, and no Inception-v3 weights "
        f"are at `{default_inception_weights_path()}` for FID; only samples are shown."
    )
else:
    st.plotly_chart(quality_figure(rows, sweep["floor"], quality_name, adaptive), key="sl_quality")
    if is_2d:
        how = (
            f"exact W2 between {n} samples and {n} fresh data points; the floor is W2 between "
            "two fresh data sets of the same size"
        )
    else:
        features = (
            "FID (Inception-v3 features)"
            if quality_name == "FID"
            else f"Frechet distance in the features of the shipped {meta['dataset']} "
            f"classifier ({quality_name}, not FID)"
        )
        how = (
            f"{features} between {n} samples and {n} test images; the floor compares {n} "
            "training images with the same test images"
        )
    st.caption(f"Lower is better: {how}. Noise seed {seed}.")

st.subheader("Samples")
methods = list(dict.fromkeys(rows["method"]))
if is_2d:
    st.plotly_chart(
        small_multiples_2d(sweep["samples"], methods, list(budgets)), key="sl_multiples"
    )
else:
    for method in methods:
        st.caption(f"**{method}**")
        columns = st.columns(len(budgets))
        for column, nfe in zip(columns, budgets, strict=True):
            grid = sweep["samples"].get((method, nfe))
            if grid is not None:
                column.image(enlarged(grid, 160), caption=f"NFE {nfe}")
st.caption("An empty cell: the solver cannot spend that budget exactly.")

st.subheader("Straightness")
fig = go.Figure()
for method, part in rows.groupby("method", sort=False):
    fig.add_scatter(x=part["nfe"], y=part["straightness"], mode="lines+markers", name=method)
fig.add_hline(y=1.0, line_dash="dash", line_color="grey", annotation_text="straight")
log_axis(fig, "x", sorted(set(rows["nfe"])), "NFE")
fig.update_yaxes(title="path length / endpoint distance")
fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10})
st.plotly_chart(fig, key="sl_straightness")
st.caption(
    "Mean over samples of the recorded path's length divided by the distance from noise to "
    "sample (1 = a straight line, `ecnf_display.labs.straightness`); the chord deviation in "
    "the table is the mean distance from the constant-speed straight path. Few steps record few "
    "points, so coarse solvers always look straight: read the value at the largest NFE."
)
st.dataframe(rows.rename(columns={"quality": quality_name or "quality"}), hide_index=True)

st.subheader("Few-step leaderboard of the shipped models")
st.caption(
    "Each objective's shipped model at exactly 1, 2 and 4 network evaluations, at its best "
    "fixed-step solver for that budget, from the evaluations saved beside the checkpoints "
    "(the same table as checkpoints/RESULTS.md). MeanFlow models jump with their average "
    "velocity (solver `meanflow`); pick one above to sweep it live."
)
with st.expander("Show the leaderboard", expanded=False):
    st.markdown(shipped_leaderboard())

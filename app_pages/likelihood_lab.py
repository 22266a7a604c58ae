"""Likelihood lab: exact divergence against Hutchinson's estimate, densities and bits/dim."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch

from ecnf import bits_per_dim, dequantize, load_images, log_prob, sample_toy
from ecnf.data import TOY_EXTENT, DatasetNotFoundError, to_model_range
from ecnf.likelihood import PROBES
from ecnf_display.budget import is_large
from ecnf_display.figures import density_figure
from ecnf_display.labs import repeated_log_prob
from ecnf_display.playground import log_density_grid
from studio import (
    checkpoint_meta,
    confirm_cpu_run,
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

GRID = 50


def checkpoints_by_kind() -> tuple[dict[str, str], dict[str, str]]:
    """``({label: path} of 2D models, {label: path} of image models)``."""
    flat = {f"2d/{k}": v for k, v in list_checkpoints("2d").items()}
    images = image_checkpoints()
    for label, path in session_checkpoints().items():
        try:
            shape = checkpoint_meta(path, file_stamp(path))["model_config"]["data_shape"]
        except (ValueError, OSError, KeyError):
            continue
        (flat if len(shape) == 1 else images)[label] = path
    return flat, images


@st.cache_data(max_entries=32, show_spinner=False)
def estimator_spread(
    path: str, stamp: int, n: int, steps: int, probes: int, probe: str, repeats: int, seed: int
) -> dict:
    """Exact log p of n fresh data points, and ``repeats`` Hutchinson estimates of it."""
    model = load_model(path, stamp)
    meta = checkpoint_meta(path, stamp)
    x1 = sample_toy(meta["dataset"], n, generator=torch.Generator().manual_seed(seed))
    x1 = x1.to(model_device(model))
    exact = log_prob(model, x1, method="rk4", steps=steps, divergence="exact")
    est, nfe = repeated_log_prob(
        model, x1, repeats, num_probes=probes, probe=probe, seed=seed, method="rk4", steps=steps
    )
    est = est.cpu()
    return {
        "exact": exact.log_prob.mean().item(),
        "estimates": est.mean(1).numpy(),  # (R,) batch means of log p
        "point_std": est.std(0).mean().item(),
        "nfe_exact": exact.nfe,
        "nfe": nfe,
    }


@st.cache_data(max_entries=16, show_spinner=False)
def density(path: str, stamp: int) -> dict:
    grid = log_density_grid(load_model(path, stamp), lim=TOY_EXTENT, n=GRID, method="rk4", steps=10)
    return {"xs": grid.xs.numpy(), "ys": grid.ys.numpy(), "log_prob": grid.log_prob.numpy()}


@st.cache_data(max_entries=16, show_spinner=False)
def image_bpd(path: str, stamp: int, n: int, steps: int, probes: int, seed: int) -> dict:
    """Bits/dim of n dequantized test images, Hutchinson (Rademacher) with rk4."""
    model = load_model(path, stamp)
    meta = checkpoint_meta(path, stamp)
    g = torch.Generator().manual_seed(seed)
    x = dequantize(to_model_range(load_images(meta["dataset"], train=False)[:n]), generator=g)
    res = log_prob(
        model,
        x.to(model_device(model)),
        method="rk4",
        steps=steps,
        divergence="hutchinson",
        num_probes=probes,
        generator=torch.Generator(device=model_device(model)).manual_seed(seed),
    )
    bpd = bits_per_dim(res.log_prob.cpu(), x[0].numel()).numpy()
    return {"bpd": bpd, "nfe": res.nfe, "dataset": meta["dataset"], "n": len(bpd)}


def spread_figure(res: dict) -> go.Figure:
    fig = go.Figure(go.Histogram(x=res["estimates"], name="Hutchinson", nbinsx=20))
    fig.add_vline(
        x=res["exact"], line_dash="dash", line_color="#d62728", annotation_text="exact trace"
    )
    fig.update_xaxes(title="mean log p over the points (nats)")
    fig.update_yaxes(title="repeats")
    fig.update_layout(height=320, margin={"l": 10, "r": 10, "t": 30, "b": 10}, bargap=0.05)
    return fig


def flow_section(options: dict[str, str]) -> None:
    names = list(options)
    default = names.index("2d/moons_otcfm") if "2d/moons_otcfm" in names else 0
    label = st.selectbox("2D model", names, index=default, key="ll_model")
    path = options[label]
    set_active_checkpoint(label)
    c1, c2, c3, c4 = st.columns(4)
    probes = c1.slider("Hutchinson probes", 1, 16, 1, key="ll_probes")
    probe = c2.radio("Probe", PROBES, horizontal=True, key="ll_probe")
    repeats = c3.slider("Repeats (seeds)", 5, 100, 30, step=5, key="ll_repeats")
    steps = c4.slider("RK4 steps", 2, 40, 10, key="ll_steps")
    n, seed = 128, 0
    try:
        stamp = file_stamp(path)
        with st.spinner("Integrating the change of variables..."):
            res = estimator_spread(path, stamp, n, steps, probes, probe, repeats, seed)
            dens = density(path, stamp)
    except (ValueError, OSError, KeyError) as error:
        show_error(error, "choose another checkpoint.")
        return
    spread = float(np.std(res["estimates"], ddof=1))
    m1, m2, m3, m4 = st.columns(4)
    m1.metric("Exact mean log p", f"{res['exact']:.4f}")
    m2.metric("Hutchinson mean", f"{np.mean(res['estimates']):.4f}")
    m3.metric("Spread over repeats", f"{spread:.4f}", help="std of the batch-mean estimate")
    m4.metric("Per-point std", f"{res['point_std']:.4f}", help="std of one point's estimate")
    st.plotly_chart(spread_figure(res), key="ll_spread")
    st.caption(
        f"{n} fresh data points (seed {seed}), integrated from t = 1 to t = 0 with RK4 "
        f"({steps} steps, NFE = {res['nfe']}). Exact: the Jacobian trace by autograd; "
        f"Hutchinson: {probes} {probe} probe(s) per point, fixed along each solve, "
        f"{repeats} independent draws. More probes shrink the spread like 1/sqrt(probes)."
    )
    st.subheader("Density of the model")
    st.plotly_chart(density_figure(dens, log_scale=True), key="ll_density")
    st.caption(
        f"log p(x) on a {GRID} x {GRID} grid, exact divergence, RK4 with 10 steps "
        "(clipped 12 nats below the maximum)."
    )


def image_section(options: dict[str, str]) -> None:
    label = st.selectbox("Image model", list(options), key="ll_image_model")
    path = options[label]
    c1, c2, c3 = st.columns(3)
    n = c1.select_slider("Test images", [4, 8, 16, 32, 64], value=8, key="ll_images")
    steps = c2.slider("RK4 steps", 2, 20, 5, key="ll_image_steps")
    probes = c3.slider("Probes", 1, 4, 1, key="ll_image_probes")
    try:
        stamp = file_stamp(path)
        if is_large(load_model(path, stamp)):
            load_images(checkpoint_meta(path, stamp)["dataset"], train=False)  # data present?
            what = "RK4's NFE, each with a backward pass per probe on top"
            if not confirm_cpu_run("ll", path, stamp, n, 4 * steps, (steps, probes), what=what):
                return
        with st.spinner("Estimating bits per dimension..."):
            res = image_bpd(path, stamp, n, steps, probes, 0)
    except (ValueError, OSError, KeyError, DatasetNotFoundError) as error:
        show_error(error, "choose another checkpoint, or get its data set.")
        return
    bpd = res["bpd"]
    sem = bpd.std(ddof=1) / np.sqrt(len(bpd)) if len(bpd) > 1 else float("nan")
    m1, m2 = st.columns(2)
    m1.metric("Bits per dimension", f"{bpd.mean():.3f} ± {sem:.3f}")
    m2.metric("NFE", res["nfe"])
    st.caption(
        f"Mean ± standard error over the first {res['n']} `{res['dataset']}` test images, "
        "uniformly dequantized to 256 levels; log p by Hutchinson's estimator "
        f"({probes} Rademacher probe(s), seed 0) with RK4 in {steps} steps, then "
        "bpd = -(log p + D log(2/256)) / (D log 2). A rough estimate, not a benchmark number."
    )


st.title("Likelihood lab")
st.caption(
    "A CNF's log-density comes from integrating the divergence of its velocity along the flow: "
    "exactly (one backward pass per dimension) or with Hutchinson's unbiased estimate."
)
flat, images = checkpoints_by_kind()
st.header("Exact trace against Hutchinson")
if flat:
    flow_section(flat)
else:
    st.info("No 2D checkpoint found: train one on the Train page.")
st.header("Bits per dimension of an image model")
if not any(label.startswith("imported/") for label in images):
    offer_import("ll")
if images:
    image_section(images)
else:
    st.info("No image checkpoint found: train one on the Train page.")

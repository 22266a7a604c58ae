"""Home: what a CNF and flow matching are, a picture, a live gallery, links to every page."""

from __future__ import annotations

import numpy as np
import plotly.graph_objects as go
import streamlit as st
import torch
from plotly.subplots import make_subplots

from ecnf import integrate, sample_toy
from ecnf.data import TOY_EXTENT
from ecnf.export import image_grid
from ecnf_display.figures import add_point_cloud
from studio import PAGES, enlarged, file_stamp, list_checkpoints, load_model, model_device

GALLERY_TARGETS = ("moons", "8gaussians", "checkerboard", "2spirals", "swissroll")
GALLERY_POINTS, GALLERY_STEPS = 1000, 10
# RK4 with 5 steps (20 evaluations) of 8 images: about 1.5 s for a 28 x 28 UNet
# on two CPU cores, half of what 16 images took (benchmarks/RESULTS.md, section 5)
IMAGE_STEPS, IMAGE_COUNT = 5, 8


@st.cache_data(max_entries=8, show_spinner=False)
def picture(path: str, stamp: int) -> dict:
    """Straight training paths (independent pairs) beside the learned flow's trajectories."""
    g = torch.Generator().manual_seed(0)
    x0 = sample_toy("gaussian", 60, generator=g)
    x1 = sample_toy("moons", 60, generator=g)
    model = load_model(path, stamp)
    sol = integrate(
        model, x0.to(model_device(model)), method="rk4", steps=20, return_trajectory=True
    )
    return {"x0": x0.numpy(), "x1": x1.numpy(), "flow": sol.trajectory.cpu().numpy()}


@st.cache_data(max_entries=16, show_spinner=False)
def gallery_samples(path: str, stamp: int) -> tuple[np.ndarray, int]:
    """1000 samples of a 2D checkpoint, RK4 with 10 steps, from seeded Gaussian noise."""
    model = load_model(path, stamp)
    x0 = sample_toy("gaussian", GALLERY_POINTS, generator=torch.Generator().manual_seed(0))
    sol = integrate(model, x0.to(model_device(model)), method="rk4", steps=GALLERY_STEPS)
    return sol.x.cpu().numpy(), sol.nfe


@st.cache_data(max_entries=8, show_spinner=False)
def image_samples(path: str, stamp: int) -> tuple[np.ndarray, int]:
    """IMAGE_COUNT samples of an image checkpoint, RK4 with IMAGE_STEPS steps, 4 to a row."""
    model = load_model(path, stamp)
    shape = tuple(model.config.data_shape)
    x0 = torch.randn((IMAGE_COUNT, *shape), generator=torch.Generator().manual_seed(0))
    sol = integrate(model, x0.to(model_device(model)), method="rk4", steps=IMAGE_STEPS)
    return image_grid(sol.x.cpu(), nrow=4), sol.nfe


def lines(a: np.ndarray, b: np.ndarray) -> tuple[list, list]:
    """Segments a[i] -> b[i] as one polyline broken by None (one plotly trace)."""
    xs, ys = [], []
    for p, q in zip(a, b, strict=True):
        xs += [p[0], q[0], None]
        ys += [p[1], q[1], None]
    return xs, ys


def paths(trajectory: np.ndarray) -> tuple[list, list]:
    """Every particle's path (T, N, 2) as one polyline broken by None."""
    xs, ys = [], []
    for k in range(trajectory.shape[1]):
        xs += [*trajectory[:, k, 0], None]
        ys += [*trajectory[:, k, 1], None]
    return xs, ys


def picture_figure(pic: dict) -> go.Figure:
    fig = make_subplots(
        rows=1,
        cols=2,
        subplot_titles=(
            "Training: straight lines x_t = (1 - t) x0 + t x1",
            "Sampling: the learned flow dx/dt = v(x, t)",
        ),
    )
    grey, blue, red = "rgba(120,120,120,0.35)", "#1f77b4", "#d62728"
    lx, ly = lines(pic["x0"], pic["x1"])
    fig.add_scatter(x=lx, y=ly, mode="lines", line={"color": grey, "width": 1}, row=1, col=1)
    px, py = paths(pic["flow"])
    fig.add_scatter(x=px, y=py, mode="lines", line={"color": grey, "width": 1}, row=1, col=2)
    for col, end in ((1, pic["x1"]), (2, pic["flow"][-1])):
        for points, color, name in ((pic["x0"], blue, "noise x0"), (end, red, "data x1")):
            fig.add_scatter(
                x=points[:, 0],
                y=points[:, 1],
                mode="markers",
                marker={"color": color, "size": 5},
                name=name,
                showlegend=col == 1,
                row=1,
                col=col,
            )
    fig.update_traces(selector={"mode": "lines"}, showlegend=False, hoverinfo="skip")
    fig.update_xaxes(range=[-TOY_EXTENT, TOY_EXTENT], showticklabels=False)
    fig.update_yaxes(range=[-TOY_EXTENT, TOY_EXTENT], showticklabels=False, scaleanchor="x")
    fig.update_layout(height=380, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


def gallery_figure(samples: dict[str, np.ndarray]) -> go.Figure:
    fig = make_subplots(rows=1, cols=len(samples), subplot_titles=list(samples))
    for i, x in enumerate(samples.values(), start=1):
        add_point_cloud(fig, x, row=1, col=i)
        fig.update_xaxes(range=[-TOY_EXTENT, TOY_EXTENT], showticklabels=False, row=1, col=i)
        fig.update_yaxes(
            range=[-TOY_EXTENT, TOY_EXTENT],
            showticklabels=False,
            scaleanchor=f"x{i if i > 1 else ''}",
            row=1,
            col=i,
        )
    fig.update_layout(height=300, margin={"l": 10, "r": 10, "t": 40, "b": 10})
    return fig


st.title("ECNF studio")
st.markdown(
    "A **continuous normalizing flow** (CNF) turns noise into data by following a velocity "
    "field: a sample of a simple source $p_0$ (here a standard normal) is carried along the "
    "ordinary differential equation below from $t = 0$ to $t = 1$, and where it lands is a "
    "sample of the model. Because the map is invertible, the same field also gives exact "
    "log-densities. **Flow matching** trains the velocity network $v_\\theta$ without ever "
    "solving that ODE: pair noise $x_0$ with data $x_1$, pick a time $t$, and regress the "
    "network at the point on the straight line between them onto the line's direction."
)
eq1, eq2, eq3 = st.columns(3)
eq1.latex(r"\frac{dx}{dt} = v_\theta(x, t), \quad x(0) = x_0 \sim p_0")
eq2.latex(r"x_t = (1 - t)\, x_0 + t\, x_1")
eq3.latex(r"\mathcal{L}(\theta) = \mathbb{E}\,\lVert v_\theta(x_t, t) - (x_1 - x_0) \rVert^2")
st.caption(
    "OT-CFM pairs each batch by minibatch optimal transport so that the lines cross less and "
    "the learned flow is straighter: fewer solver steps give the same samples."
)

shipped_2d = list_checkpoints("2d")
st.header("The picture")
try:
    pic = picture(shipped_2d["moons_fm"], file_stamp(shipped_2d["moons_fm"]))
except KeyError:
    st.info("The picture uses the shipped checkpoint `moons_fm`, which is not there.")
except (ValueError, OSError) as error:
    st.warning(f"The picture could not be drawn: {error}")
else:
    st.plotly_chart(picture_figure(pic), key="home_picture")
    st.caption(
        "Left: the straight paths flow matching trains on (random pairs cross). Right: the "
        "shipped `moons_fm` model integrated with RK4 (20 steps) from the same noise: the "
        "learned paths cannot cross, so they bend."
    )

st.header("Gallery")
loss = st.radio(
    "Training objective",
    ["otcfm", "fm"],
    format_func={"otcfm": "OT-CFM", "fm": "flow matching"}.get,
    horizontal=True,
    key="home_gallery_loss",
)
found = {t: shipped_2d[f"{t}_{loss}"] for t in GALLERY_TARGETS if f"{t}_{loss}" in shipped_2d}
results = {}
with st.spinner("Sampling the shipped 2D models..."):
    for target, path in found.items():
        try:
            results[target] = gallery_samples(path, file_stamp(path))
        except (ValueError, OSError) as error:
            st.warning(f"`{target}_{loss}` could not be sampled: {error}")
if results:
    st.plotly_chart(gallery_figure({t: x for t, (x, _) in results.items()}), key="home_gallery")
    nfe = next(iter(results.values()))[1]
    st.caption(
        f"Generated live: {GALLERY_POINTS} points per model from the same Gaussian noise "
        f"(seed 0), RK4 with {GALLERY_STEPS} steps (NFE = {nfe}), shipped `*_{loss}` checkpoints."
    )
elif not found:
    st.info("No shipped 2D checkpoints were found; train one on the 2D playground.")

shipped_images = list_checkpoints("images")
if shipped_images:
    st.subheader("Images")
    columns = st.columns(min(len(shipped_images), 3))
    for column, (name, path) in zip(columns, list(shipped_images.items())[:3], strict=False):
        try:
            with column, st.spinner(f"Sampling `{name}`..."):
                grid, nfe = image_samples(path, file_stamp(path))
        except (ValueError, OSError) as error:
            column.warning(f"`{name}` could not be sampled: {error}")
        else:
            column.image(
                enlarged(grid, 480), caption=f"{name}: {IMAGE_COUNT} samples, RK4, NFE = {nfe}"
            )
else:
    st.caption("No image checkpoint is shipped yet; the Image trajectories page can train one.")

st.header("Pages")
for path, _, title, icon in PAGES[1:]:
    st.page_link(path, label=title, icon=icon)

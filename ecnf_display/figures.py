"""Plotly figure builders for 2D flows, shared by the studio, the demo and the notebooks.

They take NumPy arrays (computed by :mod:`ecnf`) and return ``plotly.graph_objects.Figure``;
plotly is imported here only, never by ``import ecnf`` (``pip install ecnf[display]``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import numpy as np
import plotly.graph_objects as go

from ecnf.data import TOY_EXTENT

__all__ = [
    "add_point_cloud",
    "density_figure",
    "field_figure",
    "log_axis",
    "log_ticks",
    "square_axes",
    "trajectory_figure",
]


def add_point_cloud(fig: go.Figure, x: np.ndarray, row: int, col: int) -> None:
    """Small blue markers of 2D points ``x`` (shape ``(N, 2)``) in one subplot cell."""
    fig.add_scattergl(
        x=x[:, 0],
        y=x[:, 1],
        mode="markers",
        marker={"size": 2, "color": "#1f77b4"},
        showlegend=False,
        hoverinfo="skip",
        row=row,
        col=col,
    )


def square_axes(fig: go.Figure, height: int = 520, lim: float = TOY_EXTENT) -> go.Figure:
    """Equal-aspect axes on the square [-lim, lim]^2."""
    fig.update_xaxes(range=[-lim, lim], zeroline=False)
    fig.update_yaxes(range=[-lim, lim], zeroline=False, scaleanchor="x", scaleratio=1)
    fig.update_layout(height=height, margin={"l": 10, "r": 10, "t": 30, "b": 10})
    return fig


def trajectory_figure(
    res: dict, max_points: int = 600, max_frames: int = 51, paths_shown: int = 150
) -> go.Figure:
    """Particles from noise (t = 0) to data (t = 1), a play button and a time slider.

    ``res`` holds ``trajectory`` (T, N, 2), ``times`` (T,) and ``reference`` (M, 2) arrays.
    """
    trajectory, times = res["trajectory"][:, :max_points], res["times"]
    frames = np.unique(np.linspace(0, len(times) - 1, min(len(times), max_frames)).round())
    frames = frames.astype(int)
    ref = res["reference"][:max_points]
    xs, ys = [], []
    for k in range(min(paths_shown, trajectory.shape[1])):
        xs += [*trajectory[:, k, 0], None]
        ys += [*trajectory[:, k, 1], None]
    fig = go.Figure()
    fig.add_scatter(
        x=ref[:, 0],
        y=ref[:, 1],
        mode="markers",
        name="fresh data",
        marker={"size": 3, "color": "rgba(150,150,150,0.5)"},
    )
    fig.add_scatter(
        x=xs,
        y=ys,
        mode="lines",
        name="paths",
        hoverinfo="skip",
        line={"width": 0.7, "color": "rgba(214,39,40,0.25)"},
    )
    first = trajectory[frames[0]]
    fig.add_scatter(
        x=first[:, 0],
        y=first[:, 1],
        mode="markers",
        name="particles",
        marker={"size": 4, "color": "#1f77b4"},
    )
    fig.frames = [
        go.Frame(
            data=[go.Scatter(x=trajectory[k, :, 0], y=trajectory[k, :, 1])],
            traces=[2],
            name=str(k),
        )
        for k in frames
    ]
    step_args = {"mode": "immediate", "frame": {"duration": 0, "redraw": False}}
    fig.update_layout(
        sliders=[
            {
                "active": 0,
                "currentvalue": {"prefix": "t = "},
                "pad": {"t": 30},
                "steps": [
                    {"label": f"{times[k]:.2f}", "method": "animate", "args": [[str(k)], step_args]}
                    for k in frames
                ],
            }
        ],
        updatemenus=[
            {
                "type": "buttons",
                "showactive": False,
                "x": 0.0,
                "y": 1.08,
                "xanchor": "left",
                "direction": "left",
                "buttons": [
                    {
                        "label": "Play",
                        "method": "animate",
                        "args": [
                            None,
                            {"frame": {"duration": 80, "redraw": False}, "fromcurrent": True},
                        ],
                    },
                    {
                        "label": "Pause",
                        "method": "animate",
                        "args": [[None], {"mode": "immediate", "frame": {"duration": 0}}],
                    },
                ],
            }
        ],
        legend={"orientation": "h", "y": -0.05},
    )
    return square_axes(fig, 600)


def field_figure(points: np.ndarray, v: np.ndarray, particles: np.ndarray, t: float) -> go.Figure:
    """Arrows of v(x, t) on a grid (scaled to the grid spacing), with the particles at t."""
    speed = np.linalg.norm(v, axis=1)
    spacing = points[1, 0] - points[0, 0]
    scale = 0.9 * spacing / max(float(np.quantile(speed, 0.95)), 1e-8)
    tips = points + scale * v
    xs, ys, sizes = [], [], []
    for p, q in zip(points, tips, strict=True):
        xs += [p[0], q[0], None]
        ys += [p[1], q[1], None]
        sizes += [0, 7, 0]
    fig = go.Figure()
    fig.add_scatter(
        x=particles[:, 0],
        y=particles[:, 1],
        mode="markers",
        name=f"particles at t = {t:.2f}",
        marker={"size": 3, "color": "rgba(31,119,180,0.35)"},
    )
    fig.add_scatter(
        x=xs,
        y=ys,
        mode="lines+markers",
        name="v(x, t)",
        hoverinfo="skip",
        line={"width": 1.2, "color": "#d62728"},
        marker={"symbol": "arrow", "angleref": "previous", "size": sizes, "color": "#d62728"},
    )
    fig.update_layout(legend={"orientation": "h", "y": -0.05})
    return square_axes(fig)


def density_figure(d: dict, log_scale: bool) -> go.Figure:
    """Heatmap of a density grid ``{"xs", "ys", "log_prob"}`` (p or log p)."""
    z = d["log_prob"] if log_scale else np.exp(d["log_prob"])
    if log_scale:
        z = np.maximum(z, z.max() - 12.0)  # keep the colour range readable
    fig = go.Figure(
        go.Heatmap(
            x=d["xs"],
            y=d["ys"],
            z=z,
            colorscale="Viridis",
            colorbar={"title": "log p" if log_scale else "p"},
        )
    )
    return square_axes(fig)


def log_ticks(values: Iterable[float | None]) -> list[float]:
    """Tick positions for a log axis over the positive, finite ``values``: 1, 2 and 5 times
    powers of ten inside their range, or the range's ends (two significant digits) when
    fewer than two such numbers fall inside it.

    Example:
        >>> log_ticks([0.23, 0.31, 3.2])
        [0.5, 1.0, 2.0]
        >>> log_ticks([0.21, 0.24])
        [0.21, 0.24]
    """
    kept = [float(v) for v in values if v is not None and math.isfinite(v) and v > 0]
    if not kept:
        return []
    lo, hi = min(kept), max(kept)
    ticks = [
        float(f"{m * 10.0**k:.12g}")
        for k in range(math.floor(math.log10(lo)), math.floor(math.log10(hi)) + 1)
        for m in (1, 2, 5)
        if lo <= m * 10.0**k <= hi
    ]
    if len(ticks) < 2:
        ticks = sorted({*ticks, float(f"{lo:.2g}"), float(f"{hi:.2g}")})
    return ticks


def log_axis(fig: go.Figure, axis: str, ticks: Iterable[float], title: str) -> go.Figure:
    """Make ``axis`` (``"x"`` or ``"y"``) logarithmic with ``ticks`` written out in full.

    Plotly's own minor log ticks show only a leading digit (20 reads "2", 0.3 reads "3");
    explicit labels avoid that.
    """
    ticks = list(ticks)
    update = fig.update_xaxes if axis == "x" else fig.update_yaxes
    update(type="log", title=title, tickvals=ticks, ticktext=[f"{t:g}" for t in ticks])
    return fig

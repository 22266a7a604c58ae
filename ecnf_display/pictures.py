"""Matplotlib pictures of 2D samples, and pixel enlarging, for the studio, demo and notebooks.

They take tensors and return figures or uint8 arrays; matplotlib is imported inside the
functions that draw, so importing this module costs nothing until a picture is made.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from torch import Tensor

__all__ = ["enlarged", "points_image", "save_scatter", "scatter_figure", "scatter_image"]


def enlarged(image: np.ndarray, width: int = 480) -> np.ndarray:
    """Repeat pixels so a small image is shown about ``width`` wide without blurring.

    Example:
        >>> enlarged(np.zeros((8, 10), np.uint8), width=35).shape
        (24, 30)
    """
    scale = max(1, width // image.shape[1])
    return image.repeat(scale, axis=0).repeat(scale, axis=1)


def points_image(
    points: np.ndarray,
    size: int = 320,
    lim: float | None = None,
    radius: int = 1,
    colours: np.ndarray | None = None,
) -> np.ndarray:
    """2D ``points`` (N, 2) as a ``size`` x ``size`` RGB image of the square ``[-lim, lim]^2``
    (``y`` up), drawn without matplotlib: a live view redraws it every few seconds.
    ``colours`` (N, 3), uint8, gives each point its own colour (blue otherwise).

    Example:
        >>> image = points_image(np.zeros((1, 2)), size=11, lim=1.0, radius=0)
        >>> image.shape, image[5, 5].tolist(), image[1, 1].tolist(), image[0, 0].tolist()
        ((11, 11, 3), [31, 119, 180], [255, 255, 255], [200, 200, 200])
    """
    if lim is None:
        from ecnf.data import TOY_EXTENT

        lim = TOY_EXTENT
    image = np.full((size, size, 3), 255, np.uint8)
    scale = (size - 1) / (2 * lim)
    cols = np.rint((np.asarray(points)[:, 0] + lim) * scale).astype(int)
    rows = np.rint((lim - np.asarray(points)[:, 1]) * scale).astype(int)
    paint = (
        np.broadcast_to(np.array((31, 119, 180), np.uint8), (len(rows), 3))
        if colours is None
        else np.asarray(colours, np.uint8)
    )
    for dr in range(-radius, radius + 1):
        for dc in range(-radius, radius + 1):
            r, c = rows + dr, cols + dc
            inside = (r >= 0) & (r < size) & (c >= 0) & (c < size)
            image[r[inside], c[inside]] = paint[inside]
    image[[0, -1], :] = image[:, [0, -1]] = 200  # the frame of the square
    return image


def scatter_figure(
    samples: Tensor, reference: Tensor | None = None, title: str = "", lim: float | None = None
):
    """A matplotlib scatter of 2D ``samples`` over optional ``reference`` points."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    _draw_scatter(ax, samples, reference, title, lim)
    fig.tight_layout()
    return fig


def _draw_scatter(
    ax, samples: Tensor, reference: Tensor | None, title: str, lim: float | None
) -> None:
    """Samples in blue over the reference data in grey, on the square ``[-lim, lim]^2``
    (``lim`` defaults to the toy data's extent)."""
    if lim is None:
        from ecnf.data import TOY_EXTENT

        lim = TOY_EXTENT
    if reference is not None:
        r = reference.detach().float().cpu().numpy()
        ax.scatter(r[:, 0], r[:, 1], s=2, c="0.75", label="data")
    s = samples.detach().float().cpu().numpy()
    ax.scatter(s[:, 0], s[:, 1], s=2, c="tab:blue", label="samples")
    ax.set(xlim=(-lim, lim), ylim=(-lim, lim), aspect="equal", title=title)
    ax.set_xticks([])
    ax.set_yticks([])
    if reference is not None:
        ax.legend(loc="upper right", fontsize=7, markerscale=3)


def scatter_image(
    samples: Tensor,
    reference: Tensor | None = None,
    title: str = "",
    lim: float | None = None,
    size: int = 400,
) -> np.ndarray:
    """The scatter of :func:`scatter_figure` as a ``(size, size, 3)`` uint8 RGB array.

    It draws on a figure of its own through matplotlib's Agg canvas, never through pyplot's
    global state, so servers may call it from several threads at once.

    Example:
        >>> import torch
        >>> scatter_image(torch.zeros(5, 2), size=200).shape
        (200, 200, 3)
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(size / 100, size / 100), dpi=100)
    canvas = FigureCanvasAgg(fig)
    _draw_scatter(fig.add_subplot(), samples, reference, title, lim)
    fig.tight_layout()
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def save_scatter(
    path: str | Path, samples: Tensor, reference: Tensor | None = None, title: str = ""
) -> Path:
    """Write :func:`scatter_figure` as a PNG."""
    import matplotlib.pyplot as plt

    fig = scatter_figure(samples, reference, title)
    fig.savefig(path)
    plt.close(fig)
    return Path(path)

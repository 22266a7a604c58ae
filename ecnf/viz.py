"""Figure builders shared by the CLI, the studio, the Gradio demo and the notebooks.

They take tensors and return arrays or figures. Plotting libraries are imported inside the
functions that need them, so ``import ecnf`` stays free of them.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

__all__ = [
    "enlarged",
    "image_grid",
    "save_image_grid",
    "save_scatter",
    "save_trajectory_gif",
    "scatter_figure",
    "scatter_image",
    "trajectory_frames",
]


def enlarged(image: np.ndarray, width: int = 480) -> np.ndarray:
    """Repeat pixels so a small image is shown about ``width`` wide without blurring.

    Example:
        >>> enlarged(np.zeros((8, 10), np.uint8), width=35).shape
        (24, 30)
    """
    scale = max(1, width // image.shape[1])
    return image.repeat(scale, axis=0).repeat(scale, axis=1)


def image_grid(images: Tensor, nrow: int | None = None, padding: int = 2) -> np.ndarray:
    """Tile images in model range ``[-1, 1]``, shape ``(N, C, H, W)``, into one uint8 array.

    Returns an array of shape ``(rows*(H+p)+p, cols*(W+p)+p)`` for one channel or with a
    trailing channel axis of 3 for colour.
    """
    if images.ndim != 4:
        raise ValueError(f"images must have shape (N, C, H, W), got {tuple(images.shape)}")
    n, c, h, w = images.shape
    nrow = nrow or math.ceil(math.sqrt(n))
    rows = math.ceil(n / nrow)
    pixels = ((images.detach().float().cpu().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    grid = torch.full(
        (c, rows * (h + padding) + padding, nrow * (w + padding) + padding), 255, dtype=torch.uint8
    )
    for i in range(n):
        r, col = divmod(i, nrow)
        y, x = padding + r * (h + padding), padding + col * (w + padding)
        grid[:, y : y + h, x : x + w] = pixels[i]
    arr = grid.permute(1, 2, 0).numpy()
    return arr[..., 0] if c == 1 else arr


def save_image_grid(
    path: str | Path, images: Tensor, nrow: int | None = None, scale: int = 1
) -> Path:
    """Write :func:`image_grid` as a PNG, enlarged ``scale`` times with nearest neighbours."""
    from PIL import Image

    img = Image.fromarray(image_grid(images, nrow))
    if scale > 1:
        img = img.resize((img.width * scale, img.height * scale), Image.NEAREST)
    img.save(path)
    return Path(path)


def scatter_figure(
    samples: Tensor, reference: Tensor | None = None, title: str = "", lim: float = 4.5
):
    """A matplotlib scatter of 2D ``samples`` over optional ``reference`` points."""
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4, 4), dpi=100)
    _draw_scatter(ax, samples, reference, title, lim)
    fig.tight_layout()
    return fig


def _draw_scatter(ax, samples: Tensor, reference: Tensor | None, title: str, lim: float) -> None:
    """Samples in blue over the reference data in grey, on the square ``[-lim, lim]^2``."""
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
    lim: float = 4.5,
    size: int = 400,
) -> np.ndarray:
    """The scatter of :func:`scatter_figure` as a ``(size, size, 3)`` uint8 RGB array.

    It draws on a figure of its own through matplotlib's Agg canvas, never through pyplot's
    global state, so servers may call it from several threads at once.

    Example:
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


def trajectory_frames(trajectory: Tensor, size: int = 256, lim: float = 4.5) -> list[np.ndarray]:
    """One uint8 RGB frame per time of a trajectory ``(T, N, *dims)``.

    Images are tiled with :func:`image_grid`; 2D points are drawn as dots on a white square.
    """
    frames = []
    for x in trajectory:
        if x.ndim == 4:
            arr = image_grid(x)
            if arr.ndim == 2:
                arr = np.repeat(arr[..., None], 3, axis=2)
        elif x.ndim == 2 and x.shape[1] == 2:
            arr = np.full((size, size, 3), 255, dtype=np.uint8)
            pix = ((x.detach().cpu().numpy() + lim) / (2 * lim) * (size - 1)).round().astype(int)
            keep = (pix >= 0).all(1) & (pix < size).all(1)
            arr[size - 1 - pix[keep, 1], pix[keep, 0]] = (31, 119, 180)
        else:
            raise ValueError(f"cannot draw states of shape {tuple(x.shape)}")
        frames.append(arr)
    return frames


def save_trajectory_gif(
    path: str | Path, trajectory: Tensor, duration_ms: int = 80, scale: int = 2
) -> Path:
    """Write a trajectory (noise to data) as an animated GIF that holds the last frame."""
    from PIL import Image

    images = [Image.fromarray(f) for f in trajectory_frames(trajectory)]
    if scale > 1:
        images = [im.resize((im.width * scale, im.height * scale), Image.NEAREST) for im in images]
    durations = [duration_ms] * (len(images) - 1) + [1000]
    images[0].save(path, save_all=True, append_images=images[1:], duration=durations, loop=0)
    return Path(path)

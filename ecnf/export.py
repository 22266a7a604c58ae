"""Files a run writes: image grids and 2D point clouds as PNG, trajectories as GIF.

The CLI (``ecnf sample``, ``ecnf train``'s previews) writes these; they take tensors and need
only NumPy and Pillow. Interactive figures for the studio, the demo and the notebooks live in
``ecnf_display``, which builds on :func:`image_grid` and :func:`points_image`.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from .data import TOY_EXTENT

__all__ = [
    "image_grid",
    "points_image",
    "save_image_grid",
    "save_points",
    "save_trajectory_gif",
    "trajectory_frames",
]

_BLUE, _GREY = (31, 119, 180), (191, 191, 191)


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


def _dots(arr: np.ndarray, points: Tensor, colour, lim: float, radius: int) -> None:
    """Paint 2D ``points`` on the square ``[-lim, lim]^2`` as dots of ``radius`` pixels."""
    size = arr.shape[0]
    pix = ((points.detach().float().cpu().numpy() + lim) / (2 * lim) * (size - 1)).round()
    pix = pix.astype(int)
    for dy in range(-radius, radius + 1):
        for dx in range(-radius, radius + 1):
            row, col = size - 1 - pix[:, 1] + dy, pix[:, 0] + dx
            keep = (row >= 0) & (row < size) & (col >= 0) & (col < size)
            arr[row[keep], col[keep]] = colour


def points_image(
    points: Tensor,
    reference: Tensor | None = None,
    *,
    size: int = 256,
    lim: float = TOY_EXTENT,
    radius: int = 0,
) -> np.ndarray:
    """2D ``points`` (blue) over optional ``reference`` points (grey) on a white square.

    Returns a ``(size, size, 3)`` uint8 RGB array of the square ``[-lim, lim]^2``; points
    outside it are left out.

    Example:
        >>> img = points_image(torch.zeros(1, 2), size=5)
        >>> img.shape, img[2, 2].tolist(), img[0, 0].tolist()
        ((5, 5, 3), [31, 119, 180], [255, 255, 255])
    """
    for name, x in (("points", points), ("reference", reference)):
        if x is not None and (x.ndim != 2 or x.shape[1] != 2):
            raise ValueError(f"{name} must have shape (N, 2), got {tuple(x.shape)}")
    arr = np.full((size, size, 3), 255, dtype=np.uint8)
    if reference is not None:
        _dots(arr, reference, _GREY, lim, radius)
    _dots(arr, points, _BLUE, lim, radius)
    return arr


def save_points(
    path: str | Path, points: Tensor, reference: Tensor | None = None, size: int = 512
) -> Path:
    """Write :func:`points_image` (dots of 3x3 pixels) as a PNG."""
    from PIL import Image

    Image.fromarray(points_image(points, reference, size=size, radius=1)).save(path)
    return Path(path)


def trajectory_frames(
    trajectory: Tensor, size: int = 256, lim: float = TOY_EXTENT
) -> list[np.ndarray]:
    """One uint8 RGB frame per time of a trajectory ``(T, N, *dims)``.

    Images are tiled with :func:`image_grid`; 2D points are drawn by :func:`points_image`.
    """
    frames = []
    for x in trajectory:
        if x.ndim == 4:
            arr = image_grid(x)
            if arr.ndim == 2:
                arr = np.repeat(arr[..., None], 3, axis=2)
        elif x.ndim == 2 and x.shape[1] == 2:
            arr = points_image(x, size=size, lim=lim)
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

r"""2D distributions drawn by hand, typed as a word or read from a picture.

A picture becomes a distribution through its *ink*: every pixel carries the weight
:func:`ink_of` gives it, and the density is piecewise constant, proportional to that weight
on each pixel's square. :class:`Drawing` samples it exactly: a pixel with probability
proportional to its ink, then a uniform point in its square. A filled shape therefore
gives points uniform on the shape, and fresh data can be drawn at will, so the
data-vs-data floor of every metric is well defined.

A drawing is cropped to its ink, resized (by area averaging, which keeps each region's
share of the mass) so its longer side has :data:`DRAWING_SIZE` pixels, centred, and scaled
so the longer side spans ``[-DRAWING_HALF_WIDTH, DRAWING_HALF_WIDTH]``: the scale of the
2D toys.

Training and evaluation name a drawing as ``"drawn:<file>"`` wherever a toy name is
accepted (:func:`~ecnf.data.sample_toy`, ``TrainConfig(data=..., source=...)``,
``python -m ecnf train --data drawn:heart.png``). :func:`save_drawing` writes the prepared
density as a greyscale PNG (dark is dense) named by its content, and returns that name.
"""

from __future__ import annotations

import hashlib
import io
import os
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Generator, Tensor

__all__ = [
    "DRAWING_HALF_WIDTH",
    "DRAWING_SIZE",
    "DRAWN_PREFIX",
    "Drawing",
    "drawing_file",
    "ink_of",
    "is_drawn",
    "load_drawing",
    "points_from_image",
    "save_drawing",
    "text_image",
]

#: Prefix of a drawn distribution's name: ``"drawn:<picture file>"``.
DRAWN_PREFIX = "drawn:"
#: Pixels on the longer side of a prepared drawing.
DRAWING_SIZE = 128
#: The prepared drawing's longer side spans ``[-DRAWING_HALF_WIDTH, DRAWING_HALF_WIDTH]``.
DRAWING_HALF_WIDTH = 3.5
#: Ink below this (out of 1) counts as background when cropping.
_CROP_THRESHOLD = 0.05
#: Drawings with less total ink than this many full pixels are refused as empty.
_MIN_INK = 4.0


def is_drawn(name: str) -> bool:
    """Whether ``name`` names a drawn distribution (``"drawn:<file>"``)."""
    return isinstance(name, str) and name.startswith(DRAWN_PREFIX)


def drawing_file(name: str) -> Path:
    """The picture file of the drawn distribution ``name``."""
    if not is_drawn(name) or not name[len(DRAWN_PREFIX) :]:
        raise ValueError(f"{name!r} is not a drawn distribution; write 'drawn:<picture file>'")
    return Path(name[len(DRAWN_PREFIX) :]).expanduser()


def ink_of(image) -> np.ndarray:
    """The ink of each pixel, in ``[0, 1]``, shape ``(H, W)``.

    ``image`` is a PIL image or an array of shape ``(H, W)``, ``(H, W, 3)`` or
    ``(H, W, 4)`` (uint8, or floats in ``[0, 1]``). A picture with transparent pixels
    (a canvas drawn on a transparent background) has its opacity as ink, whatever the
    colour; an opaque one has its darkness, ``1 - luma`` (ITU-R 601-2 weights, as PIL's
    greyscale): dark pixels are dense.

    Example:
        >>> ink_of(np.array([[0, 255], [128, 0]], dtype=np.uint8)).round(2).tolist()
        [[1.0, 0.0], [0.5, 1.0]]
    """
    array = _as_array(image)
    if array.ndim == 2:
        grey, alpha = array, None
    elif array.ndim == 3 and array.shape[2] in (3, 4):
        grey = array[..., :3] @ np.array([0.299, 0.587, 0.114])
        alpha = array[..., 3] if array.shape[2] == 4 else None
    else:
        raise ValueError(
            f"a picture must have shape (H, W), (H, W, 3) or (H, W, 4), got {array.shape}"
        )
    ink = alpha if alpha is not None and (alpha < 1).any() else 1.0 - grey
    # the luma weights sum to 1 only up to rounding: white must carry no ink at all
    return np.where(ink < 1e-9, 0.0, np.clip(ink, 0.0, 1.0))


def _as_array(image) -> np.ndarray:
    """``image`` as float64 in ``[0, 1]``."""
    from PIL import Image

    if isinstance(image, Image.Image):
        if image.mode not in ("L", "RGB", "RGBA"):
            image = image.convert("RGBA" if "A" in image.getbands() else "RGB")
        return np.asarray(image, dtype=np.float64) / 255.0
    array = np.asarray(image)
    if array.dtype == np.uint8:
        return array.astype(np.float64) / 255.0
    if not np.issubdtype(array.dtype, np.floating) and not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"a picture must hold numbers, got dtype {array.dtype}")
    array = array.astype(np.float64)
    if not np.isfinite(array).all():
        raise ValueError("the picture contains NaN or infinite values")
    if array.size and (array.min() < 0 or array.max() > 1):
        raise ValueError(
            f"a picture of floats must lie in [0, 1], got values in "
            f"[{array.min():g}, {array.max():g}]; pass uint8 for 0-255"
        )
    return array


@dataclass(frozen=True, eq=False)
class Drawing:
    r"""A piecewise-constant 2D density: weight ``ink[i, j]`` on pixel ``(i, j)``'s square.

    Row 0 is the top of the picture. The longer side spans
    ``[-half_width, half_width]``, the picture is centred on the origin, and its pixels
    are squares of side ``2 half_width / max(H, W)``.

    Arguments:
        ink: non-negative weights, shape ``(H, W)``; their scale does not matter.
        half_width: half the extent of the longer side.

    Example:
        >>> disk = Drawing.from_image(text_image("o"))
        >>> x = disk.sample(1000, generator=torch.Generator().manual_seed(0))
        >>> x.shape, bool(x.abs().max() <= DRAWING_HALF_WIDTH)
        (torch.Size([1000, 2]), True)
    """

    ink: np.ndarray
    half_width: float = DRAWING_HALF_WIDTH

    def __post_init__(self) -> None:
        ink = np.asarray(self.ink, dtype=np.float64)
        if ink.ndim != 2 or min(ink.shape) < 1:
            raise ValueError(f"ink must have shape (H, W), got {ink.shape}")
        if not np.isfinite(ink).all() or (ink < 0).any():
            raise ValueError("ink must be finite and non-negative")
        if not ink.sum() > 0:
            raise ValueError(
                "the drawing is empty (no ink to draw points from): draw, write or upload "
                "something dark on a light background, or opaque on a transparent one"
            )
        if not self.half_width > 0:
            raise ValueError(f"half_width must be > 0, got {self.half_width!r}")
        object.__setattr__(self, "ink", ink)

    @classmethod
    def from_image(cls, image, *, size: int = DRAWING_SIZE, crop: bool = True) -> Drawing:
        """The drawing of a picture: its ink (:func:`ink_of`), cropped to where the ink is
        and resized by area averaging so the longer side has ``size`` pixels."""
        ink = ink_of(image)
        if crop:
            rows = np.flatnonzero((ink > _CROP_THRESHOLD).any(axis=1))
            cols = np.flatnonzero((ink > _CROP_THRESHOLD).any(axis=0))
            if rows.size == 0:
                raise ValueError(
                    "the drawing is empty (no ink to draw points from): draw, write or "
                    "upload something dark on a light background, or opaque on a "
                    "transparent one"
                )
            ink = ink[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        if ink.sum() < _MIN_INK:
            raise ValueError(
                f"the drawing holds too little ink ({ink.sum():.1f} pixels' worth, at least "
                f"{_MIN_INK:g} needed): draw a larger shape"
            )
        return cls(_resize(ink, size))

    def sample(
        self,
        n: int,
        *,
        generator: Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """``n`` exact samples, shape ``(n, 2)``: a pixel by its ink, then uniform in it."""
        where = generator.device if generator is not None else torch.device("cpu")
        height, width = self.ink.shape
        weights = _weights(self.ink.tobytes(), self.ink.shape).to(where)
        flat = torch.multinomial(weights, n, replacement=True, generator=generator)
        jitter = torch.rand(n, 2, generator=generator, device=where, dtype=torch.float64)
        side = 2 * self.half_width / max(height, width)
        col = (flat % width).to(torch.float64) + jitter[:, 0]
        row = torch.div(flat, width, rounding_mode="floor").to(torch.float64) + jitter[:, 1]
        points = torch.stack([(col - width / 2) * side, (height / 2 - row) * side], dim=1)
        points = points.to(dtype)
        return points if device is None else points.to(device)

    def to_png(self) -> bytes:
        """The density as an 8-bit greyscale PNG, dark where dense (white: no ink)."""
        from PIL import Image

        ink = self.ink / self.ink.max()
        grey = np.round(255 * (1 - ink)).astype(np.uint8)
        buffer = io.BytesIO()
        Image.fromarray(grey, mode="L").save(buffer, format="PNG")
        return buffer.getvalue()


@lru_cache(maxsize=8)
def _weights(ink_bytes: bytes, shape: tuple[int, int]) -> Tensor:
    """The flattened pixel weights as a float64 tensor, cached across batches."""
    return torch.from_numpy(np.frombuffer(ink_bytes, dtype=np.float64).copy()).reshape(-1)


def _resize(ink: np.ndarray, size: int) -> np.ndarray:
    """Area-average ``ink`` so its longer side has ``size`` pixels (the mass of each region
    is kept in proportion)."""
    from PIL import Image

    height, width = ink.shape
    scale = size / max(height, width)
    shape = (max(1, round(width * scale)), max(1, round(height * scale)))
    if shape == (width, height):
        return ink
    image = Image.fromarray(ink.astype(np.float32), mode="F")
    method = Image.Resampling.BOX if scale < 1 else Image.Resampling.NEAREST
    return np.clip(np.asarray(image.resize(shape, method), dtype=np.float64), 0.0, None)


def text_image(text: str, *, font_size: int = 160):
    """``text`` in black on white, as a greyscale PIL image, in Pillow's built-in font.

    Example:
        >>> text_image("flow").mode
        'L'
    """
    from PIL import Image, ImageDraw, ImageFont

    text = text.strip() if isinstance(text, str) else ""
    if not text:
        raise ValueError("type a word to draw (the text is empty)")
    if len(text) > 40:
        raise ValueError(f"the text has {len(text)} characters; 40 at most make a readable cloud")
    font = ImageFont.load_default(size=font_size)
    left, top, right, bottom = ImageDraw.Draw(Image.new("L", (1, 1))).textbbox(
        (0, 0), text, font=font
    )
    margin = font_size // 8
    image = Image.new("L", (right - left + 2 * margin, bottom - top + 2 * margin), 255)
    ImageDraw.Draw(image).text((margin - left, margin - top), text, fill=0, font=font)
    return image


def points_from_image(
    image, n: int, *, generator: Generator | None = None, size: int = DRAWING_SIZE
) -> Tensor:
    """``n`` points drawn from a picture's ink, shape ``(n, 2)``: the density is in
    proportion to the ink (see :class:`Drawing`).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> tuple(points_from_image(text_image("ECNF"), 500, generator=g).shape)
        (500, 2)
    """
    from .._checks import check_positive_int

    check_positive_int("n", n)
    return Drawing.from_image(image, size=size).sample(n, generator=generator)


def save_drawing(image, folder: str | os.PathLike[str], *, size: int = DRAWING_SIZE) -> str:
    """Prepare a picture (:meth:`Drawing.from_image`), store its density as a PNG in
    ``folder`` under a name taken from its content, and return ``"drawn:<that file>"``.

    Saving the same drawing twice gives the same name and rewrites nothing.
    """
    png = Drawing.from_image(image, size=size).to_png()
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{hashlib.sha256(png).hexdigest()[:16]}.png"
    if not path.exists():
        partial = path.with_suffix(f".{os.getpid()}.partial")
        partial.write_bytes(png)
        partial.replace(path)
    return f"{DRAWN_PREFIX}{path}"


def load_drawing(name: str) -> Drawing:
    """The drawing that ``name`` (``"drawn:<file>"``) refers to, read once and cached.

    The file is used as it is (no cropping or resizing), so a file written by
    :func:`save_drawing` loads back to the same density.
    """
    path = drawing_file(name)
    try:
        stat = path.stat()
    except OSError as error:
        raise ValueError(
            f"the drawing {name!r} cannot be read: {path} does not exist (drawings made in "
            "the studio live in its session folder; save the picture and name it again)"
        ) from error
    return _load(str(path.resolve()), stat.st_mtime_ns, stat.st_size)


@lru_cache(maxsize=16)
def _load(path: str, mtime_ns: int, size: int) -> Drawing:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            image.load()
            ink = ink_of(image)
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"the drawing file {path} is not a picture PIL can read") from error
    return Drawing(ink)

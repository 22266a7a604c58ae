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

Strokes of different colours are classes: :meth:`Drawing.from_image` with ``colours=True``
gives each inked pixel the label of its colour (the colours that carry at least
:data:`MIN_COLOUR_SHARE` of the ink, each pixel to the nearest of them), for
class-conditional training (:func:`~ecnf.data.sample_toy_labelled`).

Training and evaluation name a drawing as ``"drawn:<file>"`` wherever a toy name is
accepted (:func:`~ecnf.data.sample_toy`, ``TrainConfig(data=..., source=...)``,
``python -m ecnf train --data drawn:heart.png``). :func:`save_drawing` writes the prepared
density as a greyscale PNG (dark is dense; for a drawing of several colours, an RGBA PNG whose
opacity is the density and whose colours are the classes) named by its content, and returns
that name.
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
    "MIN_COLOUR_SHARE",
    "Drawing",
    "colour_labels",
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
#: A colour is a class of a drawing when it carries at least this share of the ink.
MIN_COLOUR_SHARE = 0.02
#: Colours closer than this (RGB distance, 0-255 per channel) are one class.
_SAME_COLOUR = 64.0


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
    #: For a drawing of several colours: the class of each pixel (-1 where there is no ink)
    labels: np.ndarray | None = None
    #: and the colour of each class, as ``#rrggbb``.
    colours: tuple[str, ...] = ()

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
        if self.labels is not None:
            labels = np.asarray(self.labels, dtype=np.int64)
            if labels.shape != ink.shape:
                raise ValueError(f"labels must have the ink's shape {ink.shape}")
            k = len(self.colours)
            if k < 2 or labels.max() >= k or (labels[ink > 0] < 0).any():
                raise ValueError(f"labels must name one of {k} (at least 2) colours where inked")
            object.__setattr__(self, "labels", labels)
        elif self.colours:
            raise ValueError("colours come with labels, one per pixel")

    @property
    def palette(self) -> np.ndarray:
        """The classes' colours as RGB, uint8 of shape ``(K, 3)`` (``K = 0``: no classes)."""
        return np.array([_rgb(c) for c in self.colours], dtype=np.uint8).reshape(-1, 3)

    @property
    def class_names(self) -> tuple[str, ...]:
        """The drawing's classes (``"colour #rrggbb"``); empty for a drawing of one colour."""
        return tuple(f"colour {c}" for c in self.colours)

    @classmethod
    def from_image(
        cls, image, *, size: int = DRAWING_SIZE, crop: bool = True, colours: bool = False
    ) -> Drawing:
        """The drawing of a picture: its ink (:func:`ink_of`), cropped to where the ink is
        and resized by area averaging so the longer side has ``size`` pixels.

        With ``colours``, the strokes' colours become classes when there are at least two
        (see :func:`colour_labels`)."""
        ink = ink_of(image)
        labels, palette = colour_labels(image, ink) if colours else (None, ())
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
            if labels is not None:
                labels = labels[rows[0] : rows[-1] + 1, cols[0] : cols[-1] + 1]
        if ink.sum() < _MIN_INK:
            raise ValueError(
                f"the drawing holds too little ink ({ink.sum():.1f} pixels' worth, at least "
                f"{_MIN_INK:g} needed): draw a larger shape"
            )
        if labels is None:
            return cls(_resize(ink, size))
        # each class's ink resized on its own keeps every class's share of the mass
        layers = [_resize(np.where(labels == k, ink, 0.0), size) for k in range(len(palette))]
        stacked = np.stack(layers)
        total = stacked.sum(0)
        resized = np.where(total > 0, stacked.argmax(0), -1)
        return cls(total, labels=resized, colours=palette)

    def sample(
        self,
        n: int,
        *,
        generator: Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> Tensor:
        """``n`` exact samples, shape ``(n, 2)``: a pixel by its ink, then uniform in it."""
        return self._sample(n, generator, device, dtype)[0]

    def sample_labelled(
        self,
        n: int,
        *,
        generator: Generator | None = None,
        device: torch.device | str | None = None,
        dtype: torch.dtype = torch.float32,
    ) -> tuple[Tensor, Tensor]:
        """The points of :meth:`sample` (the same for the same generator) and the class of
        the pixel each fell in; for a drawing of several colours."""
        if self.labels is None:
            raise ValueError(
                "this drawing has one colour, so no classes: draw strokes in two colours or more"
            )
        points, flat = self._sample(n, generator, device, dtype)
        labels = torch.from_numpy(self.labels.reshape(-1))[flat.cpu()]
        return points, labels.to(points.device)

    def _sample(self, n, generator, device, dtype) -> tuple[Tensor, Tensor]:
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
        return (points if device is None else points.to(device)), flat

    def to_png(self) -> bytes:
        """The density as an 8-bit greyscale PNG, dark where dense (white: no ink); for a
        drawing of several colours an RGBA PNG, the density as opacity, each class in its
        colour."""
        from PIL import Image

        ink = self.ink / self.ink.max()
        buffer = io.BytesIO()
        if self.labels is None:
            grey = np.round(255 * (1 - ink)).astype(np.uint8)
            Image.fromarray(grey, mode="L").save(buffer, format="PNG")
            return buffer.getvalue()
        palette = np.vstack([self.palette, [255, 255, 255]]).astype(np.uint8)
        rgba = np.empty((*ink.shape, 4), dtype=np.uint8)
        rgba[..., :3] = palette[self.labels]  # label -1 takes the last row: white
        rgba[..., 3] = np.round(255 * ink).astype(np.uint8)
        Image.fromarray(rgba, mode="RGBA").save(buffer, format="PNG")
        return buffer.getvalue()


def _rgb(colour: str) -> tuple[int, int, int]:
    return tuple(int(colour[i : i + 2], 16) for i in (1, 3, 5))


def colour_labels(image, ink: np.ndarray | None = None) -> tuple[np.ndarray | None, tuple]:
    """The colour classes of a picture's ink: ``(labels, colours)``.

    The colours are those of the strongly inked pixels (ink above 1/2, so the blended
    edges of strokes do not count), rounded to 16 levels per channel, that carry at least
    :data:`MIN_COLOUR_SHARE` of that ink, ordered by their share, a colour within
    :data:`_SAME_COLOUR` of a stronger one merged into it. Every inked pixel (ink above the
    background threshold) takes the nearest of them, so an edge goes with its stroke; the
    others -1. With fewer than two colours the picture has no classes: ``(None, ())``.
    On an opaque picture the ink is the darkness, so pale strokes weigh little.

    Example:
        >>> red_blue = np.zeros((4, 4, 3), dtype=np.uint8) + 255
        >>> red_blue[:, :2] = (220, 20, 20); red_blue[:, 3] = (20, 20, 220)
        >>> labels, colours = colour_labels(red_blue)
        >>> colours, labels[0].tolist()
        (('#d81818', '#1818d8'), [0, 0, -1, 1])
    """
    array = _as_array(image)
    ink = ink_of(image) if ink is None else ink
    if array.ndim != 3:
        return None, ()
    rgb = array[..., :3]
    inked, core = ink > _CROP_THRESHOLD, ink > 0.5
    if not core.any():
        return None, ()
    levels = np.floor(rgb[core] * 15.999).astype(np.int64)  # 16 levels per channel
    keys = levels[:, 0] * 256 + levels[:, 1] * 16 + levels[:, 2]
    mass = np.bincount(keys, weights=ink[core], minlength=4096)
    share = mass / mass.sum()
    kept: list[np.ndarray] = []
    for key in np.argsort(-share, kind="stable"):
        if share[key] < MIN_COLOUR_SHARE:
            break
        centre = np.array([key // 256, (key // 16) % 16, key % 16]) * 16 + 8
        if all(np.linalg.norm(centre - other) > _SAME_COLOUR for other in kept):
            kept.append(centre)
    if len(kept) < 2:
        return None, ()
    centres = np.stack(kept)
    colours = tuple("#{:02x}{:02x}{:02x}".format(*c) for c in centres)
    distance = ((rgb[..., None, :] * 255 - centres[None, None]) ** 2).sum(-1)
    labels = np.where(inked, distance.argmin(-1), -1)
    return labels, colours


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


def save_drawing(
    image, folder: str | os.PathLike[str], *, size: int = DRAWING_SIZE, colours: bool = False
) -> str:
    """Prepare a picture (:meth:`Drawing.from_image`, its colours as classes with
    ``colours``), store its density as a PNG in ``folder`` under a name taken from its
    content, and return ``"drawn:<that file>"``.

    Saving the same drawing twice gives the same name and rewrites nothing.
    """
    png = Drawing.from_image(image, size=size, colours=colours).to_png()
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
            coloured = image.mode in ("RGB", "RGBA", "P")
            labels, colours = colour_labels(image, ink) if coloured else (None, ())
    except (UnidentifiedImageError, OSError) as error:
        raise ValueError(f"the drawing file {path} is not a picture PIL can read") from error
    if labels is None:
        return Drawing(ink)
    # a pixel's class is its colour; faint pixels under the threshold take their nearest
    return Drawing(ink, labels=np.where(ink > 0, _nearest(image, colours), -1), colours=colours)


def _nearest(image, colours: tuple[str, ...]) -> np.ndarray:
    rgb = _as_array(image)[..., :3] * 255
    centres = np.array([_rgb(c) for c in colours], dtype=np.float64)
    return ((rgb[..., None, :] - centres[None, None]) ** 2).sum(-1).argmin(-1)

"""Choosing a 2D distribution in the studio: a built-in toy, or your own.

Your own is drawn on a canvas (``streamlit-drawable-canvas``), typed as a word, or uploaded
as a picture. Each becomes a density in proportion to its ink (:mod:`ecnf.data.drawn`),
stored in the session's folder under a name ``"drawn:<file>"`` that training, sampling and
every metric accept like a toy's name.
"""

from __future__ import annotations

import io

import numpy as np
import streamlit as st

from ecnf.data import TOY_DATASETS, is_drawn

from .models import session_workdir
from .ui import show_error

__all__ = ["CANVAS", "KINDS", "distribution_input", "distribution_label"]

TOY, DRAW, WORD, UPLOAD = "A toy", "Draw it", "Type a word", "Upload a picture"
KINDS = (TOY, DRAW, WORD, UPLOAD)
#: The canvas's size in pixels (the drawing is cropped to its ink, so only the shape counts).
CANVAS = {"width": 480, "height": 320}
PREVIEW_POINTS = 1500
#: Shapes the canvas can draw; a filled shape is uniform ink.
TOOLS = {"Brush": "freedraw", "Line": "line", "Rectangle": "rect", "Circle": "circle"}


def distribution_label(name: str) -> str:
    """How a distribution is named on screen: a toy by its name, a drawing by a short id."""
    if is_drawn(name):
        stem = name.rsplit("/", 1)[-1].removesuffix(".png")
        return f"your drawing {stem[:8]}"
    return name


def distribution_input(role: str, default: str, key: str) -> str | None:
    """Widgets to choose the ``role`` distribution ("Target (t = 1)", ...); returns its
    name (a toy's or ``"drawn:<file>"``), or None while your own is still empty."""
    kind = st.radio(role, KINDS, horizontal=True, key=f"{key}_kind")
    if kind == TOY:
        return st.selectbox(
            f"{role}: toy",
            TOY_DATASETS,
            index=TOY_DATASETS.index(default),
            key=f"{key}_toy",
            label_visibility="collapsed",
        )
    picture = {DRAW: _canvas, WORD: _word, UPLOAD: _upload}[kind](key)
    if picture is None:
        return None
    from ecnf.data import save_drawing

    try:
        name = save_drawing(picture, session_workdir() / "drawings", colours=True)
    except ValueError as error:
        show_error(error, "draw, type or upload something with more ink.")
        return None
    _preview(name)
    return name


def _canvas(key: str):
    try:
        from streamlit_drawable_canvas import st_canvas
    except ImportError:
        st.error(
            "Drawing needs `streamlit-drawable-canvas` (`pip install -r requirements.txt`); "
            "type a word or upload a picture instead."
        )
        return None
    c1, c2 = st.columns([2, 1])
    tool = c2.radio("Tool", list(TOOLS), horizontal=True, key=f"{key}_tool")
    stroke = c2.slider("Brush width", 4, 60, 24, key=f"{key}_stroke")
    colour = c2.color_picker("Colour", "#1f3b73", key=f"{key}_colour")
    c2.caption(
        "Where you draw is where the points go, in proportion to the ink: strokes, or "
        "filled rectangles and circles. Strokes of different colours are classes, for a "
        "class-conditional flow. Undo, redo and clear are under the canvas."
    )
    with c1:
        result = st_canvas(
            stroke_width=stroke,
            stroke_color=colour,
            fill_color=colour,
            background_color="",
            drawing_mode=TOOLS[tool],
            return_image_data=True,
            key=f"{key}_canvas",
            **CANVAS,
        )
    try:
        image = result.image_data
    except (AttributeError, RuntimeError, ValueError):
        image = None
    if image is None or not np.asarray(image)[..., 3].any():
        st.info("Draw on the canvas: the points to train on appear below.")
        return None
    return np.asarray(image, dtype=np.uint8)


def _word(key: str):
    text = st.text_input("Word", value="flow", max_chars=40, key=f"{key}_word")
    from ecnf.data import text_image

    try:
        return text_image(text)
    except ValueError as error:
        show_error(error, "type a word of 1 to 40 characters.")
        return None


def _upload(key: str):
    upload = st.file_uploader(
        "Picture (dark pixels are dense; on a transparent picture, opaque ones)",
        type=["png", "jpg", "jpeg", "webp", "bmp"],
        key=f"{key}_upload",
    )
    if upload is None:
        st.info("Upload a picture: its dark pixels become the points to train on.")
        return None
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(upload.getvalue())) as image:
            image.load()
            if max(image.size) > 4096:
                raise ValueError(
                    f"the picture is {image.size[0]} x {image.size[1]} pixels; 4096 at most"
                )
            return image.convert("RGBA")
    except (UnidentifiedImageError, OSError) as error:
        show_error(ValueError(f"{upload.name} is not a picture: {error}"), "upload a PNG or JPEG.")
    except ValueError as error:
        show_error(error, "upload a smaller picture.")
    return None


def _preview(name: str) -> None:
    import torch

    from ecnf.data import sample_toy
    from ecnf_display.pictures import points_image

    points = sample_toy(name, PREVIEW_POINTS, generator=torch.Generator().manual_seed(0))
    colours = _class_colours(name)
    c1, c2 = st.columns([1, 2])
    c1.image(points_image(points.numpy(), size=240, radius=0, colours=colours), width=240)
    c2.caption(
        f"{PREVIEW_POINTS} points drawn from `{distribution_label(name)}`: each pixel's "
        "share of the points is its share of the ink, spread uniformly over the pixel. "
        "The picture is cropped to its ink and scaled to span [-3.5, 3.5]." + _classes_line(name)
    )


def _class_colours(name: str):
    """Each preview point in the colour of its class, for a drawing of several colours."""
    import torch

    from ecnf.data import load_drawing, sample_toy_labelled

    drawing = load_drawing(name)
    if drawing.labels is None:
        return None
    _, labels = sample_toy_labelled(
        name, PREVIEW_POINTS, generator=torch.Generator().manual_seed(0)
    )
    return drawing.palette[labels.numpy()]


def _classes_line(name: str) -> str:
    from ecnf.data import dataset_classes

    classes = dataset_classes(name)
    if not classes:
        return ""
    return f" Its {len(classes)} colours are classes: {', '.join(classes)}."

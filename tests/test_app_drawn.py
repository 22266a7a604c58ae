"""The 2D playground on your own data, headless: a typed word, an upload, the canvas."""

from __future__ import annotations

import io

from helpers import metric, open_app
from PIL import Image, ImageDraw

PLAYGROUND = "app_pages/playground_2d.py"


def own_data(at, kind: str):
    at.radio(key="p2_mode").set_value("Train your own").run()
    at.radio(key="p2_target_kind").set_value(kind).run()
    assert not at.exception, at.exception
    return at


def captions(at) -> str:
    return " ".join(c.value for c in at.caption)


def train_tiny(at):
    at.slider(key="p2_train_steps").set_value(20)
    at.select_slider(key="p2_width").set_value(32)
    at.button(key="p2_train").click().run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]


def test_a_typed_word_is_previewed_trained_on_and_measured(studio):
    at = own_data(open_app(PLAYGROUND), "Type a word")
    at.text_input(key="p2_target_word").set_value("ECNF").run()
    assert len(at.image) == 1  # the preview of the points to train on
    assert "1500 points drawn from `your drawing" in captions(at)
    train_tiny(at)
    assert metric(at, "NFE") == "40"
    w2 = float(next(m.value for m in at.metric if m.label.startswith("W2 to fresh your drawing")))
    assert w2 > float(metric(at, "Data-vs-data floor")) > 0
    assert "→ your drawing" in captions(at)
    for view, caption in (("Velocity field", "v(x, t) on a"), ("Density", "log p(x)")):
        at.session_state["p2_view"] = view
        at.run()
        assert not at.exception, at.exception
        assert any(c.value.startswith(caption) for c in at.main.caption)


def test_an_empty_word_is_refused_and_training_waits(studio):
    at = own_data(open_app(PLAYGROUND), "Type a word")
    at.text_input(key="p2_target_word").set_value("   ").run()
    assert any("text is empty" in e.value for e in at.error)
    assert at.button(key="p2_train").disabled


def test_the_canvas_falls_back_to_a_hint_until_something_is_drawn(studio):
    at = own_data(open_app(PLAYGROUND), "Draw it")
    assert any("Draw on the canvas" in i.value for i in at.info)
    assert at.button(key="p2_train").disabled
    at.radio(key="p2_target_tool").set_value("Circle").run()
    assert not at.exception, at.exception


def test_a_drawn_source_is_used_for_training(studio):
    at = own_data(open_app(PLAYGROUND), "Type a word")
    at.radio(key="p2_source_kind").set_value("Type a word").run()
    at.text_input(key="p2_source_word").set_value("o").run()
    assert len(at.image) == 2
    train_tiny(at)
    assert captions(at).count("your drawing") >= 2
    # the density needs a Gaussian source, and says so
    at.session_state["p2_view"] = "Density"
    at.run()
    assert any("standard normal" in i.value for i in at.info)


def disk_png() -> bytes:
    image = Image.new("L", (200, 200), 255)
    ImageDraw.Draw(image).ellipse((20, 20, 180, 180), fill=0)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def test_an_uploaded_picture_is_previewed_and_a_foreign_file_refused(studio):
    at = own_data(open_app(PLAYGROUND), "Upload a picture")
    assert any("Upload a picture" in i.value for i in at.info)
    at.file_uploader(key="p2_target_upload").set_value(("disk.png", disk_png(), "image/png"))
    at.run()
    assert not at.exception, at.exception
    assert len(at.image) == 1 and not at.button(key="p2_train").disabled
    at.file_uploader(key="p2_target_upload").set_value(("notes.png", b"not a picture", "image/png"))
    at.run()
    assert any("notes.png is not a picture" in e.value for e in at.error)
    assert at.button(key="p2_train").disabled


def two_colour_png() -> bytes:
    image = Image.new("RGB", (200, 200), "white")
    draw = ImageDraw.Draw(image)
    draw.rectangle([20, 20, 179, 39], fill=(220, 30, 30))
    draw.ellipse([60, 80, 140, 160], fill=(30, 30, 220))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_a_two_colour_drawing_trains_a_conditional_flow_guided_by_colour(studio):
    at = own_data(open_app(PLAYGROUND), "Upload a picture")
    assert at.checkbox(key="p2_conditional").disabled  # a word, a toy without classes: off
    upload = ("two.png", two_colour_png(), "image/png")
    at.file_uploader(key="p2_target_upload").set_value(upload).run()
    assert not at.exception, at.exception
    assert "Its 2 colours are classes" in captions(at)
    assert not at.checkbox(key="p2_conditional").disabled
    at.checkbox(key="p2_conditional").check()
    train_tiny(at)
    assert "class-conditional (this session)" in captions(at)
    classes = at.multiselect(key="p2_classes")
    assert classes.value == [0, 1]
    assert metric(at, "NFE") == "40"  # rk4, 10 steps, w = 1
    at.slider(key="p2_guidance").set_value(2.0).run()
    assert metric(at, "NFE") == "80"  # both velocities at every evaluation
    at.multiselect(key="p2_classes").set_value([1]).run()
    assert not at.exception, at.exception
    labels = [m.label for m in at.metric]
    assert any(label.endswith("(1 class)") for label in labels), labels
    assert "judged against fresh data of those classes only" in captions(at)

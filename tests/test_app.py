"""The Streamlit studio, driven headless by AppTest: every page renders, controls change output.

Most tests point the studio at tiny checkpoints trained here (``ECNF_CHECKPOINTS_DIR``), so
they do not depend on which shipped models exist and stay fast on two CPU cores.
"""

import shutil

import pytest
import torch
from helpers import metric, open_app
from streamlit.testing.v1 import AppTest

from studio.ui import PAGES

PLAYGROUND, IMAGES = "app_pages/playground_2d.py", "app_pages/image_trajectories.py"


def plotly_charts(at: AppTest) -> int:
    return len(at.get("plotly_chart"))


def sidebar_text(at: AppTest) -> str:
    return " ".join(c.value for c in at.sidebar.caption)


def test_every_page_renders_with_the_shipped_checkpoints(monkeypatch):
    monkeypatch.delenv("ECNF_CHECKPOINTS_DIR", raising=False)
    at = open_app()
    assert [t.value for t in at.title] == ["ECNF studio"]
    assert "Device:" in sidebar_text(at)
    assert {"The picture", "Gallery", "Pages"} <= {h.value for h in at.header}
    assert len(at.get("page_link")) == len(PAGES) - 1  # every page but Home
    for page, title in ((PLAYGROUND, "2D playground"), (IMAGES, "Image trajectories")):
        at.switch_page(page).run()
        assert not at.exception, at.exception
        assert [t.value for t in at.title] == [title]
        assert "Device:" in sidebar_text(at)  # the router ran around the page


def test_home_shows_the_gallery_and_image_samples(studio):
    """Tiny checkpoints have no stored pictures: the page samples and draws them itself."""
    at = open_app()
    assert len(at.image) == 3  # the picture, the gallery, samples of the tiny digits model
    assert not at.warning and not at.error
    captions = " ".join(c.value for c in at.caption)
    assert "(NFE = 40), shipped `*_otcfm` checkpoints" in captions  # RK4, 10 steps
    at.radio(key="home_gallery_loss").set_value("fm").run()
    assert not at.exception and len(at.image) == 3
    assert "shipped `*_fm` checkpoints" in " ".join(c.value for c in at.caption)


def test_playground_nfe_follows_solver_and_steps(studio):
    at = open_app(PLAYGROUND)
    assert not at.exception, at.exception
    assert "Sampling" in [h.value for h in at.header]
    assert metric(at, "NFE") == "40"  # rk4, 10 steps
    assert plotly_charts(at) == 1  # lazy tabs: only the open one (trajectories) is drawn
    assert "Active checkpoint:** 2d/moons_otcfm" in sidebar_text(at)
    assert "n = 1000" in " ".join(c.value for c in at.caption)
    at.slider(key="p2_steps").set_value(5).run()
    assert metric(at, "NFE") == "20"
    at.selectbox(key="p2_method").set_value("euler").run()
    assert metric(at, "NFE") == "5"
    at.selectbox(key="p2_method").set_value("dopri5").run()
    assert not at.exception, at.exception
    assert int(metric(at, "NFE")) > 0
    assert at.select_slider(key="p2_tol").value == pytest.approx(1e-3)
    w2, floor = float(metric(at, "W2 to fresh moons")), float(metric(at, "Data-vs-data floor"))
    assert w2 > 0 and floor > 0
    at.selectbox(key="p2_checkpoint").set_value("moons_fm").run()
    assert "2d/moons_fm" in sidebar_text(at)


@pytest.mark.parametrize(
    ("view", "caption"), [("Velocity field", "v(x, t) on a"), ("Density", "log p(x) of the model")]
)
def test_playground_views(studio, view, caption):
    at = open_app(PLAYGROUND)
    at.session_state["p2_view"] = view  # what clicking the tab does
    at.run()
    assert not at.exception, at.exception
    assert plotly_charts(at) == 1
    assert any(c.value.startswith(caption) for c in at.main.caption)
    if view == "Velocity field":
        at.slider(key="p2_field_t").set_value(0.9).run()
    else:
        assert "Probability inside the square" in at.main.caption[-1].value
        at.toggle(key="p2_log_scale").set_value(False).run()
    assert not at.exception, at.exception
    assert plotly_charts(at) == 1


def test_playground_trains_a_tiny_model_with_a_loss_curve(studio):
    at = open_app(PLAYGROUND)
    at.radio(key="p2_mode").set_value("Train your own").run()
    assert not at.exception, at.exception
    assert at.info  # nothing trained yet
    at.slider(key="p2_train_steps").set_value(20)
    at.select_slider(key="p2_width").set_value(32)
    at.selectbox(key="p2_activation").set_value("adaptive")
    at.button(key="p2_train").click().run()
    assert not at.exception, at.exception
    assert not at.error
    final_loss = float(metric(at, "Final loss"))
    assert torch.isfinite(torch.tensor(final_loss))
    assert at.get("arrow_vega_lite_chart") or at.get("vega_lite_chart")  # the loss curve
    assert metric(at, "NFE") == "40"  # the trained model is sampled right away
    assert "(this session)" in sidebar_text(at)


def test_image_trajectories_nfe_follows_steps(studio):
    at = open_app(IMAGES)
    assert not at.exception, at.exception
    assert not at.error
    assert metric(at, "NFE") == "40"
    assert {"State x_t", "Predicted endpoint", "Velocity magnitude"} <= {
        h.value for h in at.subheader
    }
    assert len(at.image) == 2
    assert len(at.get("download_button")) == 2
    at.slider(key="img_steps").set_value(3).run()
    assert metric(at, "NFE") == "12"
    assert metric(at, "Frames") == "4"
    at.select_slider(key="img_frame_4").set_value(0).run()
    assert not at.exception, at.exception
    at.selectbox(key="img_method").set_value("midpoint").run()
    assert metric(at, "NFE") == "6"
    at.slider(key="img_count").set_value(4).run()
    assert not at.exception, at.exception


def test_image_trajectories_without_checkpoints_offers_training(tmp_path, monkeypatch):
    monkeypatch.setenv("ECNF_CHECKPOINTS_DIR", str(tmp_path))
    at = open_app()
    assert not at.exception, at.exception
    at.switch_page(IMAGES).run()
    assert not at.exception, at.exception
    assert any("No image checkpoint" in i.value for i in at.info)
    assert at.button(key="img_train").label.startswith("Train a tiny digits model")
    at.switch_page(PLAYGROUND).run()
    assert not at.exception, at.exception
    assert at.warning  # no shipped 2D models: train your own


def test_a_broken_checkpoint_is_an_error_message_not_a_traceback(studio, tmp_path, monkeypatch):
    shutil.copytree(studio, tmp_path / "ck")
    (tmp_path / "ck" / "images" / "broken.safetensors").write_bytes(b"not a checkpoint")
    shutil.copy(studio / "images" / "tiny_digits.safetensors", tmp_path / "ck" / "2d")
    monkeypatch.setenv("ECNF_CHECKPOINTS_DIR", str(tmp_path / "ck"))
    at = open_app(IMAGES)
    at.selectbox(key="img_checkpoint").set_value("images/broken").run()
    assert not at.exception, at.exception
    assert at.error and "What to change" in at.error[0].value
    at.switch_page(PLAYGROUND).run()
    at.selectbox(key="p2_checkpoint").set_value("tiny_digits").run()
    assert not at.exception, at.exception
    assert at.error and "not on 2D data" in at.error[0].value

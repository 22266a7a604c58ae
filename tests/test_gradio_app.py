"""The Gradio demo, launched on a local port and called end to end through gradio_client.

Nothing here reaches the internet: analytics are off, no share link is made, and the
client talks to 127.0.0.1 only.
"""

import importlib.util
import json
import math
import os
import re
import subprocess
import sys
import time
import types
import urllib.request
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
import torch
from gradio_client.exceptions import AppError
from helpers import demo_client, free_port
from PIL import Image, ImageDraw

import ecnf
import gradio_app
from ecnf.checkpoint import checkpoint_info
from ecnf.evaluation import compare_to_data
from ecnf.export import image_grid
from ecnf.guidance import guided
from ecnf.solvers import nfe_per_step

REPO = Path(__file__).resolve().parents[1]
SHIPPED = REPO / "checkpoints"
NUMBER = r"([0-9]+\.[0-9]+)"


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("ECNF_CHECKPOINTS_DIR", raising=False)  # the shipped models
        mp.setenv("GRADIO_ANALYTICS_ENABLED", "False")
        with demo_client(tmp_path_factory.mktemp("downloads")) as served:
            yield served


def test_build_demo_has_a_bounded_queue_and_the_three_endpoints(client):
    api = client.view_api(print_info=False, return_format="dict")
    assert set(api["named_endpoints"]) == {"/sample_2d", "/sample_images", "/train_2d"}
    demo = gradio_app.build_demo()
    assert isinstance(demo, gr.Blocks)
    assert demo._queue.max_size == gradio_app.QUEUE_SIZE
    public = [fn for fn in demo.fns.values() if fn.fn is not None and fn.api_visibility == "public"]
    limits = {fn.api_name: fn.concurrency_limit for fn in public}
    assert limits == {"sample_2d": 2, "sample_images": 2, "train_2d": 1}
    # the samplings that run by themselves share the sampling queue and its limit
    private = [fn for fn in demo.fns.values() if fn.fn is not None and fn not in public]
    assert {(fn.concurrency_id, fn.concurrency_limit) for fn in private} == {("sample", 2)}
    assert demo.config["analytics_enabled"] is False


def test_the_demo_shows_a_first_result_before_anything_is_pressed(monkeypatch):
    monkeypatch.delenv("ECNF_CHECKPOINTS_DIR", raising=False)  # the shipped models
    demo = gradio_app.build_demo()
    deps = demo.config["dependencies"]

    def by_trigger(kind):
        (dep,) = [d for d in deps if d["targets"][0][1] == kind]
        return dep, demo.fns[dep["id"]].fn, [demo.blocks[i].value for i in dep["inputs"]]

    # the 2D tab samples its default request as the page loads, into the Sample outputs
    load, fn, defaults = by_trigger("load")
    click = next(d for d in deps if d["api_name"] == "sample_2d")
    assert fn is gradio_app.sample_2d and load["outputs"] == click["outputs"]
    assert defaults == ["moons_otcfm", "rk4", 10, 1000, 0]
    *_, (_, samples, info) = fn(*defaults)
    assert isinstance(samples, Image.Image) and "W2 (exact, 1000 points)" in info
    # the Images tab samples its default request when first opened, and only then
    _, fn, defaults = by_trigger("select")
    assert fn is gradio_app.first_images and defaults[-1] is None  # nothing shown yet
    assert defaults[0] == "fmnist_unet_fm"  # the shipped model whose samples show the most
    *_, (_, samples, real, _) = fn(*defaults)
    assert isinstance(samples, Image.Image) and isinstance(real, Image.Image)
    again = list(fn(*defaults[:-1], samples))
    assert again == [tuple(gr.skip() for _ in range(4))]


def test_sample_2d_streams_frames_and_reports_nfe_and_w2(client):
    model, steps, points, seed = "moons_otcfm", 10, 300, 7
    job = client.submit(model, "rk4", steps, points, seed, api_name="/sample_2d")
    live, samples, info = job.result(timeout=120)
    updates = job.outputs()
    # one frame per solver step (10 <= 25 updates) plus the initial state, then the result
    assert len(updates) == steps + 2
    assert [u[2] for u in updates[:2]] == [
        "t = 0.00, 0 velocity evaluations so far",
        "t = 0.10, 4 velocity evaluations so far",
    ]
    assert Image.open(live).size == (400, 400) and Image.open(samples).size == (500, 500)

    nfe = nfe_per_step("rk4") * steps
    assert f"**NFE:** {nfe} (rk4: 10 steps × 4" in info
    assert re.search(rf"\*\*Solver time:\*\* {NUMBER} s on the (CPU|GPU)", info)
    w2, floor = map(
        float,
        re.search(rf"W2 \(exact, 300 points\):\*\* {NUMBER}.*floor.*? {NUMBER}", info).groups(),
    )
    # the same numbers straight from the library
    path = SHIPPED / "2d" / f"{model}.safetensors"
    meta = checkpoint_info(path)["metadata"]
    x0 = ecnf.sample_toy(meta["source"], points, generator=torch.Generator().manual_seed(seed))
    sol = ecnf.integrate(ecnf.load(path, device="cpu"), x0, method="rk4", steps=steps)
    report = compare_to_data(sol.x, "moons", seed=seed)
    assert sol.nfe == nfe
    assert w2 == pytest.approx(report.w2, abs=1e-4) and floor == pytest.approx(
        report.floor, abs=1e-4
    )
    assert math.isfinite(w2) and w2 < 1.0  # a trained model, not noise


def test_sample_images_returns_the_library_samples_and_real_images(client):
    steps, count, seed = 4, 4, 3
    _, samples, real, info = client.predict(
        "digits_unet_fm", "euler", steps, count, seed, api_name="/sample_images"
    )
    # 4 images of 8x8 tiled 2 x 2 with 2-pixel gaps: 22 px, enlarged 21 times (<= 480 px)
    assert Image.open(samples).size == (462, 462) == Image.open(real).size
    assert f"**NFE:** {nfe_per_step('euler') * steps} (euler" in info
    assert "4 drawn at random from the digits test split" in info
    net = ecnf.load(SHIPPED / "images" / "digits_unet_fm.safetensors", device="cpu")
    x0 = torch.randn((count, 1, 8, 8), generator=torch.Generator().manual_seed(seed))
    expected = image_grid(ecnf.integrate(net, x0, method="euler", steps=steps).x)
    shown = np.asarray(Image.open(samples).convert("L"))[::21, ::21]
    assert np.array_equal(shown, expected)


def test_sample_images_draws_a_class_under_guidance_and_counts_both_evaluations(client):
    steps, count, seed = 4, 4, 3
    _, samples, _, info = client.predict(
        "digits_unet_fm_cond", "euler", steps, count, seed, "7: 7", 2.0, api_name="/sample_images"
    )
    assert "**NFE:** 8 (euler: 4 steps × 1 velocity evaluation(s) per step × 2 (guided" in info
    assert "Classes 7: 7, guidance scale w = 2." in info
    net = ecnf.load(SHIPPED / "images" / "digits_unet_fm_cond.safetensors", device="cpu")
    x0 = torch.randn((count, 1, 8, 8), generator=torch.Generator().manual_seed(seed))
    flow = guided(net, torch.full((count,), 7), 2.0)
    expected = image_grid(ecnf.integrate(flow, x0, method="euler", steps=steps).x)
    shown = np.asarray(Image.open(samples).convert("L"))[::21, ::21]
    assert np.array_equal(shown, expected)
    # every class in turn, conditional (w = 1): one evaluation per step
    *_, info = client.predict(
        "digits_unet_fm_cond",
        "euler",
        steps,
        10,
        seed,
        "all classes",
        1.0,
        api_name="/sample_images",
    )
    assert "**NFE:** 4 (euler" in info and "in turn" in info
    with pytest.raises(AppError, match="this model is unconditional"):
        client.predict("digits_unet_fm", "euler", 4, 4, 0, "3: 3", 1.0, api_name="/sample_images")
    with pytest.raises(AppError, match="greater than maximum value 5"):
        client.predict(
            "digits_unet_fm_cond", "euler", 4, 4, 0, "3: 3", 9.0, api_name="/sample_images"
        )


def test_train_2d_streams_the_loss_and_ends_with_w2(client):
    job = client.submit("moons", "otcfm", 40, 1, api_name="/train_2d")
    curve, preview, info = job.result(timeout=120)
    assert len(job.outputs()) >= 3  # loss updates arrived before the end
    steps = [row[0] for row in curve["data"]]
    losses = [row[1] for row in curve["data"]]
    assert steps == list(range(5, 41, 5)) and all(math.isfinite(v) for v in losses)
    assert Image.open(preview).size == (400, 400)
    assert info.startswith("**Trained** 40 iterations of otcfm")
    assert "(NFE 40)" in info
    match = re.search(rf"\*\*W2 \(exact, 1000 points\):\*\* {NUMBER}.*floor.*? {NUMBER}", info)
    w2, floor = map(float, match.groups())
    assert math.isfinite(w2) and 0 < floor < w2


def sketch(tmp_path, draw: bool = True) -> dict:
    """A Sketchpad value as a browser sends it: a transparent RGBA canvas, a filled disk."""
    from gradio_client import handle_file

    image = Image.new("RGBA", (480, 320), (0, 0, 0, 0))
    if draw:
        ImageDraw.Draw(image).ellipse((100, 50, 300, 250), fill=(0, 0, 0, 255))
    path = tmp_path / f"sketch_{int(draw)}.png"
    image.save(path)
    return {"background": None, "layers": [], "composite": handle_file(str(path))}


def test_train_2d_on_a_sketch_measures_against_the_drawing(client, tmp_path):
    curve, preview, info = client.predict(
        "your drawing", "otcfm", 40, 1, sketch(tmp_path), api_name="/train_2d"
    )
    assert len(curve["data"]) == 8 and Image.open(preview).size == (400, 400)
    assert info.startswith("**Trained** 40 iterations of otcfm")
    match = re.search(rf"\*\*W2 \(exact, 1000 points\):\*\* {NUMBER} to fresh your drawing", info)
    assert match and 0 < float(match.group(1)) < 3
    # the floor is that of the disk: two fresh sets of points uniform on it
    floor = float(re.search(rf"floor .*? {NUMBER}", info).group(1))
    assert 0 < floor < float(match.group(1))


def test_train_2d_refuses_a_blank_or_missing_sketch(client, tmp_path):
    with pytest.raises(AppError, match="the drawing is empty"):
        client.predict(
            "your drawing", "fm", 20, 0, sketch(tmp_path, draw=False), api_name="/train_2d"
        )
    with pytest.raises(AppError, match="Draw the target on the sketchpad first"):
        client.predict("your drawing", "fm", 20, 0, None, api_name="/train_2d")


def test_bad_inputs_give_clear_errors(client):
    with pytest.raises(AppError, match=r"64 images × 400 velocity evaluations .* = 25600"):
        client.predict("digits_unet_fm", "rk4", 100, 64, 0, api_name="/sample_images")
    with pytest.raises(AppError, match="Value 500 is greater than maximum value 100"):
        client.predict("moons_otcfm", "rk4", 500, 100, 0, api_name="/sample_2d")
    with pytest.raises(AppError, match="Value: nope is not in the list of choices"):
        client.predict("nope", "rk4", 10, 100, 0, api_name="/sample_2d")
    # the handlers' own checks, for callers that skip the components
    with pytest.raises(gr.Error, match=r"steps must be a whole number from 1 to 100, got 2\.5"):
        next(gradio_app.sample_2d("moons_otcfm", "rk4", 2.5, 100, 0))
    with pytest.raises(gr.Error, match=r"training iterations must be .* got 100000"):
        next(gradio_app.train_2d("moons", "fm", 100_000, 0))
    with pytest.raises(gr.Error, match=r"'meanflow' jumps with average velocities .* moons_otcfm"):
        next(gradio_app.sample_2d("moons_otcfm", "meanflow", 1, 100, 0))


def test_python_gradio_app_py_serves_on_the_configured_port():
    port = free_port()
    env = os.environ | {
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_ANALYTICS_ENABLED": "False",
    }
    proc = subprocess.Popen(
        [sys.executable, "gradio_app.py"],
        cwd=REPO,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stderr.read().decode()
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/config", timeout=2) as r:
                    config = json.load(r)
                break
            except OSError:
                assert time.monotonic() < deadline, "the demo did not start"
                time.sleep(0.5)
        names = {d.get("api_name") for d in config["dependencies"]}
        assert {"sample_2d", "sample_images", "train_2d"} <= names
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def test_compute_runs_inside_spaces_gpu_when_spaces_is_installed(monkeypatch):
    """On ZeroGPU the functions that compute hold a GPU through spaces.GPU, for a set time."""
    entered = []

    def gpu(duration):
        def wrap(fn):
            def held(*args):
                entered.append((fn.__name__, duration))
                yield from fn(*args)

            return held

        return wrap

    monkeypatch.setitem(sys.modules, "spaces", types.SimpleNamespace(GPU=gpu))
    spec = importlib.util.spec_from_file_location("gradio_app_on_zerogpu", REPO / "gradio_app.py")
    app = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(app)
    *_, (_, _, info) = list(app.sample_2d("moons_otcfm", "euler", 2, 50, 0))
    assert "**NFE:** 2 (euler" in info
    assert entered == [("_sample_2d", 60)]
    # without spaces, the same names are the plain generator functions
    assert gradio_app._train_2d.__name__ == "_train_2d" and app._train_2d.__name__ == "held"


def test_the_cuda_path_streams_the_recorded_trajectory(monkeypatch):
    """The demo's fast-path branch, driven on a CPU: ecnf.fast.sample is eager here, and the
    frames, the final grid and the cost line must come out as on a GPU."""
    monkeypatch.setattr(gradio_app, "fast_path_applies", lambda net, method: True)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: None)
    path = str(SHIPPED / "images" / "digits_unet_fm.safetensors")
    outputs = list(gradio_app._sample_images(path, "euler", 4, 4, 3))
    assert outputs[0][2].startswith("Compiling this solve")  # said before the first solve
    frames = outputs[1:-1]
    assert [o[2] for o in frames] == [
        f"t = {t:.2f} (recorded by the fast path)" for t in (0, 0.25, 0.5, 0.75, 1)
    ]
    _, samples, info = outputs[-1]
    net = ecnf.load(path, device="cpu")
    x0 = torch.randn((4, 1, 8, 8), generator=torch.Generator().manual_seed(3))
    expected = gradio_app.grid_image(ecnf.integrate(net, x0, method="euler", steps=4).x)
    assert np.array_equal(np.asarray(samples), np.asarray(expected))
    assert "**NFE:** 4 (euler" in info and "Sampled by `ecnf.fast`" in info

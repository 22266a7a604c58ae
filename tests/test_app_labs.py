"""The studio's Train, Solver lab and Likelihood lab pages, driven headless by AppTest.

The pages point at tiny checkpoints trained here (``ECNF_CHECKPOINTS_DIR``); the Train page
runs a real background run of a few steps and is polled until its thread finishes.
"""

import json
import time

import pytest
import streamlit as st
from helpers import metric, open_app
from streamlit.testing.v1 import AppTest

from studio.scheduler import config_from_env

TRAIN, SOLVERS, LIKELIHOOD = (
    "app_pages/train.py",
    "app_pages/solver_lab.py",
    "app_pages/likelihood_lab.py",
)


def wait_for_run(at: AppTest, seconds: float = 60) -> None:
    """Rerun until the session's training thread has finished."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        run = at.session_state["train_run"]
        if not run.running:
            break
        time.sleep(0.3)
    at.run()
    assert not at.exception, at.exception


def wait_for_records(run, after: int = 0, seconds: float = 60) -> None:
    """Until the run's process has logged past step ``after`` (it starts in its own process)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        records = run.recorder.snapshot()[0]
        if records and records[-1]["step"] > after:
            return
        time.sleep(0.1)
    pytest.fail(f"no record past step {after} after {seconds:.0f} s")


def small_run(at: AppTest, steps: int) -> None:
    at.number_input(key="tr_steps").set_value(steps)
    at.select_slider(key="tr_width").set_value(32)
    at.slider(key="tr_depth").set_value(1)
    at.select_slider(key="tr_batch").set_value(64)
    at.number_input(key="tr_lr").set_value(2e-3)
    at.number_input(key="tr_preview").set_value(10)


def test_train_runs_in_the_background_and_registers_its_checkpoint(studio):
    at = open_app(TRAIN)
    assert [t.value for t in at.title] == ["Train"]
    assert at.info  # nothing started yet
    assert at.button(key="tr_resume").disabled
    places = config_from_env().max_active  # one per core but the pages' (1 on 2 cores)
    assert f"0 of {places} training places in use, 0 runs queued" in " ".join(
        c.value for c in at.caption
    )
    small_run(at, 20)
    at.button(key="tr_start").click().run()
    assert not at.exception, at.exception
    wait_for_run(at)
    assert not at.error, [e.value for e in at.error]
    assert metric(at, "Step") == "20/20"
    assert len(at.get("plotly_chart")) == 1 and len(at.image) == 1  # loss curve, 2D preview
    assert any("completed" in s.value for s in at.success)
    labels = list(at.session_state["session_checkpoints"])
    assert labels == ["session/moons_fm_mlp_seed0"]
    assert not at.button(key="tr_start").disabled


def test_train_opens_on_quick_defaults_per_data_set_and_offers_the_seed_papers(studio):
    at = open_app(TRAIN)
    form = ("tr_steps", "tr_lr", "tr_ema")

    def values():
        return [at.number_input(key=k).value for k in form] + [
            at.selectbox(key="tr_schedule").value
        ]

    assert values() == [1000, pytest.approx(2e-3), pytest.approx(0.999), "cosine"]
    at.button(key="tr_seed_paper").click().run()
    assert values() == [1000, pytest.approx(2e-4), pytest.approx(0.999), "constant"]
    assert at.number_input(key="tr_wd").value == pytest.approx(1e-4)
    at.selectbox(key="tr_data").set_value("digits").run()  # another data set: its defaults
    assert values() == [1000, pytest.approx(1e-3), pytest.approx(0.999), "cosine"]
    at.button(key="tr_quick").click().run()
    assert not at.exception, at.exception


@pytest.fixture
def small_server(monkeypatch):
    """A server with one training place and a queue of one."""
    from studio.training import server_scheduler

    monkeypatch.setenv("ECNF_STUDIO_MAX_RUNS", "1")
    monkeypatch.setenv("ECNF_STUDIO_MAX_QUEUED", "1")
    server_scheduler.clear()
    yield server_scheduler
    server_scheduler.clear()


def test_train_queues_past_the_servers_limit_and_says_when_it_is_full(studio, small_server):
    sessions = [open_app(TRAIN) for _ in range(3)]
    runs = []
    try:
        for at in sessions:
            small_run(at, 100_000)
            at.number_input(key="tr_preview").set_value(0)
            at.button(key="tr_start").click().run()
            assert not at.exception, at.exception
        first, second, third = sessions
        runs = [at.session_state["train_run"] for at in (first, second)]
        assert "train_run" not in third.session_state
        assert runs[1].queued and not runs[0].queued
        second.run()
        queued = " ".join(i.value for i in second.info)
        assert "is queued: number 1 in line for one of the server's 1 training places" in queued
        busy = " ".join(e.value for e in third.error)
        assert "The server is busy: 1 runs are training (at most 1 at a time)" in busy
        assert "the queue is full (1 waiting)" in busy
        assert "1 of 1 training places in use, 1 runs queued" in " ".join(
            c.value for c in third.caption
        )
        first.button(key="tr_stop").click().run()  # frees the place: the queued run starts
        deadline = time.monotonic() + 30
        while runs[1].queued and time.monotonic() < deadline:
            time.sleep(0.1)
        assert not runs[1].queued and runs[1].running
        second.button(key="tr_stop").click().run()
        assert runs[1].reason == "stopped" and small_server().status()["active"] == 0
    finally:
        for run in runs:
            run.stop()
            run.thread.join(timeout=30)


def test_train_stop_then_resume(studio):
    at = open_app(TRAIN)
    small_run(at, 100_000)
    at.number_input(key="tr_preview").set_value(0)
    at.button(key="tr_start").click().run()
    run = at.session_state["train_run"]
    try:
        assert at.button(key="tr_start").disabled  # one run per session at a time
        assert not at.button(key="tr_stop").disabled
        wait_for_records(run)
        at.button(key="tr_stop").click().run()
        assert not at.exception, at.exception
        assert run.reason == "stopped" and not run.running
        first = run.recorder.snapshot()[0][-1]["step"]
        assert first > 0
        assert not at.button(key="tr_resume").disabled
        at.button(key="tr_resume").click().run()
        assert at.session_state["train_run"] is run and at.button(key="tr_start").disabled
        wait_for_records(run, after=first)
        at.button(key="tr_stop").click().run()
        assert not at.exception, at.exception
        assert run.reason == "stopped" and run.error is None
        assert run.recorder.start_step >= first  # fit continued from the saved step
        assert run.recorder.snapshot()[0][-1]["step"] > first
    finally:
        run.stop()
        run.thread.join(timeout=30)


def test_train_shows_missing_data_and_fit_errors_without_traceback(studio, monkeypatch):
    monkeypatch.setenv("ECNF_DATA", str(studio / "no-data-here"))
    at = open_app(TRAIN)
    at.selectbox(key="tr_data").set_value("cifar10").run()
    assert not at.exception, at.exception
    assert at.error and "not available" in at.error[0].value
    assert at.button(key="tr_start").disabled


def test_solver_lab_2d_chart_follows_budgets_and_model(studio):
    at = open_app(SOLVERS)
    assert [t.value for t in at.title] == ["Solver lab"]
    assert not at.error, [e.value for e in at.error]
    charts = at.get("plotly_chart")
    assert len(charts) == 3  # quality, small multiples, straightness
    # log axes label their ticks in full (plotly's own minor ticks write 20 as "2")
    layout = json.loads(charts[0].proto.spec)["layout"]
    for axis in ("xaxis", "yaxis"):
        assert layout[axis]["type"] == "log"
        assert layout[axis]["ticktext"] == [f"{v:g}" for v in layout[axis]["tickvals"]]
    assert {1, 2, 4, 10, 20} <= set(layout["xaxis"]["tickvals"])  # the budgets, dopri5 too
    assert int(metric(at, "dopri5 NFE")) > 0
    assert float(metric(at, "Data-vs-data floor")) > 0
    table = at.dataframe[0].value
    assert set(table["nfe"]) == {1, 2, 4, 10, 20}
    assert (table["straightness"] >= 1 - 1e-5).all()
    at.multiselect(key="sl_budgets").set_value([2, 8]).run()
    assert not at.exception, at.exception
    table = at.dataframe[0].value
    assert set(table["nfe"]) == {2, 8}
    assert set(table["method"]) == {"euler", "midpoint", "heun", "rk4"}
    at.selectbox(key="sl_model").set_value("2d/moons_fm").run()
    assert not at.exception, at.exception
    assert "2d/moons_fm" in " ".join(c.value for c in at.sidebar.caption)


def test_solver_lab_images_use_the_classifier_distance(studio):
    at = open_app(SOLVERS)
    at.selectbox(key="sl_model").set_value("images/tiny_digits").run()
    at.multiselect(key="sl_budgets").set_value([1, 2]).run()
    assert not at.exception, at.exception
    assert not at.error, [e.value for e in at.error]
    assert "FD-DIGITS" in at.dataframe[0].value.columns
    assert float(metric(at, "Data-vs-data floor")) >= 0
    assert len(at.image) == 4  # euler at NFE 1 and 2, midpoint and heun at 2; rk4 needs 4


def test_likelihood_lab_spread_follows_the_probes(studio):
    at = open_app(LIKELIHOOD)
    assert [t.value for t in at.title] == ["Likelihood lab"]
    assert not at.error, [e.value for e in at.error]
    assert len(at.get("plotly_chart")) == 2  # spread and density
    one = float(metric(at, "Spread over repeats"))
    exact = float(metric(at, "Exact mean log p"))
    assert one > 0
    at.slider(key="ll_probes").set_value(16).run()
    assert not at.exception, at.exception
    sixteen = float(metric(at, "Spread over repeats"))
    assert sixteen < one
    assert float(metric(at, "Exact mean log p")) == exact  # the exact value does not move
    at.radio(key="ll_probe").set_value("gaussian").run()
    assert not at.exception, at.exception
    assert "gaussian probe" in " ".join(c.value for c in at.caption)
    bpd = metric(at, "Bits per dimension")
    assert "±" in bpd and float(bpd.split()[0]) > 0
    assert int(metric(at, "NFE")) == 20  # rk4, 5 steps


def test_train_on_images_shows_trajectory_previews(studio):
    at = open_app(TRAIN)
    at.selectbox(key="tr_data").set_value("digits").run()
    at.radio(key="tr_arch").set_value("unet").run()
    at.select_slider(key="tr_channels").set_value(8)
    at.number_input(key="tr_steps").set_value(10)
    at.select_slider(key="tr_batch").set_value(32)
    at.number_input(key="tr_preview").set_value(5)
    at.button(key="tr_start").click().run()
    assert not at.exception, at.exception
    wait_for_run(at)
    assert not at.error, [e.value for e in at.error]
    captions = [c.value for c in at.caption]
    assert any("Trajectories of the EMA model at step 10" in c for c in captions), captions
    assert any("t = 0.0, 0.2, 0.5, 0.8, 1.0" in c for c in captions)


def test_the_cifar10_recipe_fills_the_form(studio, tmp_path, monkeypatch):
    from test_data import _write_cifar

    monkeypatch.setenv("ECNF_DATA", str(tmp_path / "none"))
    at = open_app(TRAIN)
    at.button(key="tr_cifar_recipe").click().run()
    assert not at.exception, at.exception
    assert at.selectbox(key="tr_data").value == "cifar10"
    assert any("not available" in e.value for e in at.error)  # and says how to get the data
    assert at.button(key="tr_download").label.startswith("Download `cifar10` now")
    _write_cifar(tmp_path / "data")  # a small archive in the real layout
    monkeypatch.setenv("ECNF_DATA", str(tmp_path / "data"))
    st.cache_data.clear()  # the page caches, for a minute, which data sets are missing
    at = open_app(TRAIN)
    at.button(key="tr_cifar_recipe").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert (
        at.radio(key="tr_arch").value == "unet" and at.select_slider(key="tr_channels").value == 128
    )
    assert at.number_input(key="tr_ema").value == pytest.approx(0.9999)
    assert at.number_input(key="tr_steps").value == 20_000
    assert at.select_slider(key="tr_batch").value == 128
    assert not at.button(key="tr_start").disabled

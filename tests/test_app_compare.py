"""Side by side: two flows from the same noise, one time slider, one table of numbers."""

from __future__ import annotations

import pytest
import torch
from helpers import open_app

from ecnf.evaluation import toy_sets
from ecnf.solvers import nfe_per_step
from ecnf_display.compare import LESSONS, Side, side_by_side

PAGE = "app_pages/side_by_side.py"


def table(at):
    return at.dataframe[0].value


def test_the_first_lesson_compares_fm_and_otcfm_from_the_same_noise(studio):
    at = open_app(PAGE)
    assert at.radio(key="sbs_lesson").value == "FM against OT-CFM (moons)"
    rows = table(at)
    assert list(rows["checkpoint"]) == ["moons_fm", "moons_otcfm"]
    assert list(rows["NFE"]) == [40, 40]
    assert (rows["straightness"] >= 1).all()
    assert len(at.image) == 2
    at.slider(key="sbs_t").set_value(0.0).run()
    # at t = 0 both sides show the same source points
    shown = [c.value for c in at.caption if "recorded state" in c.value]
    assert len(shown) == 2 and all("recorded state at t = 0.00" in c for c in shown)
    assert not at.exception, at.exception


def test_euler_against_rk4_at_the_same_nfe(studio):
    at = open_app(PAGE)
    at.radio(key="sbs_lesson").set_value("Euler against RK4 at 8 NFE (moons, FM)").run()
    rows = table(at)
    assert list(rows["solver"]) == ["euler", "rk4"] and list(rows["NFE"]) == [8, 8]
    assert rows["straightness"][0] == rows["straightness"][1]  # one model, one flow
    at.radio(key="sbs_lesson").set_value("Choose both sides yourself").run()
    assert list(table(at)["NFE"]) == [40, 40]  # the custom sides open on RK4, 10 steps
    at.slider(key="sbs_custom_B_steps").set_value(5).run()
    assert list(table(at)["NFE"]) == [40, 20]


def test_side_by_side_shares_the_noise_and_refuses_different_data(studio, tmp_path):
    root = studio / "2d"
    sides = [Side(str(root / "moons_fm.safetensors"), "euler", 1)] * 2
    results, floor = side_by_side(sides, n=300, seed=4)
    x0 = toy_sets("moons", "gaussian", 300, 4).x0
    assert torch.equal(results[0].trajectory[0], x0) and torch.equal(results[1].trajectory[0], x0)
    assert results[0].w2 == results[1].w2 and floor > 0
    assert results[0].nfe == nfe_per_step("euler")
    from ecnf import TrainConfig, fit

    ckpt = fit(TrainConfig(data="8gaussians", iterations=2, batch_size=16, out_dir=str(tmp_path)))
    with pytest.raises(ValueError, match=r"different data \(8gaussians from gaussian, moons"):
        side_by_side([sides[0], Side(str(ckpt.checkpoint))], n=50)


def test_every_lesson_names_shipped_checkpoints():
    from ecnf.shipped import list_checkpoints

    shipped = list_checkpoints("2d")
    for label, lesson in LESSONS.items():
        assert all(name in shipped for name, _, _ in lesson), label

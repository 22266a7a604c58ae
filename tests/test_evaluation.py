"""ecnf.evaluation: one set of fresh data and one data floor behind every screen.

The CLI (``ecnf eval``), the model cards (``evaluate_2d``), the studio's 2D playground and
the Gradio demo all judge a 2D model on :func:`toy_sets` and report :func:`data_floor`, so
for the same checkpoint, seed and sample size they must show the same numbers.
"""

import json
import re

import pytest
import torch
from helpers import metric, open_app

import gradio_app
from ecnf.cli import main
from ecnf.data import sample_toy
from ecnf.evaluation import compare_to_data, data_floor, evaluate_2d, toy_sets
from ecnf.metrics import mmd2, wasserstein2
from ecnf.shipped import SHIPPED_DIR

CHECKPOINT = SHIPPED_DIR / "2d" / "moons_otcfm.safetensors"


def test_toy_sets_draw_noise_then_two_fresh_sets_from_one_seed():
    sets = toy_sets("moons", "8gaussians", 50, seed=7)
    g = torch.Generator().manual_seed(7)
    for drawn, name in zip(sets, ("8gaussians", "moons", "moons"), strict=True):
        assert torch.equal(drawn, sample_toy(name, 50, generator=g))
    assert not torch.equal(sets.fresh, sets.other)
    again = toy_sets("moons", "8gaussians", 50, seed=7)
    assert all(torch.equal(a, b) for a, b in zip(sets, again, strict=True))
    with pytest.raises(ValueError, match="num"):
        toy_sets("moons", "gaussian", 1, seed=0)
    with pytest.raises(ValueError, match="seed"):
        toy_sets("moons", "gaussian", 10, seed=-1)


def test_data_floor_is_the_metric_between_the_two_fresh_sets():
    sets = toy_sets("checkerboard", "gaussian", 300, seed=2)
    floor = data_floor(sets)
    assert floor == {
        "w2": wasserstein2(sets.other, sets.fresh),
        "mmd2": mmd2(sets.other, sets.fresh),
    }
    assert 0 < floor["w2"] < 1


def test_compare_to_data_judges_against_the_same_sets():
    sets = toy_sets("moons", "gaussian", 200, seed=3)
    report = compare_to_data(sets.fresh, "moons", seed=3)
    assert report.w2 == pytest.approx(0.0, abs=1e-6)  # the reference itself
    assert report.floor == data_floor(sets)["w2"] and report.num_samples == 200
    other_source = compare_to_data(sets.fresh, "moons", source="8gaussians", seed=3)
    assert other_source.floor == data_floor(toy_sets("moons", "8gaussians", 200, 3))["w2"]
    far = compare_to_data(sets.fresh + 10.0, "moons", seed=3)
    assert far.w2 > 9.0
    with pytest.raises(ValueError, match=r"shape \(N, 2\)"):
        compare_to_data(torch.zeros(5, 3), "moons")


def test_cli_cards_studio_and_demo_report_the_same_numbers(monkeypatch, capsys):
    monkeypatch.delenv("ECNF_CHECKPOINTS_DIR", raising=False)  # the shipped models
    n, seed, steps = 1000, 0, 10  # the playground's defaults (rk4, 10 steps, 1000 points)

    assert main(["eval", str(CHECKPOINT), "--method", "rk4", "--steps", str(steps), "-n",
                 str(n), "--seed", str(seed), "--json"]) == 0  # fmt: skip
    cli = json.loads(capsys.readouterr().out)

    card = evaluate_2d(CHECKPOINT, num_samples=n, seed=seed, rows=[("rk4", steps, 4 * steps)],
                       adaptive=False)  # fmt: skip
    assert cli["w2_data_vs_data"] == card["floor"]["w2"]
    assert cli["mmd2_data_vs_data"] == card["floor"]["mmd2"]
    assert cli["w2"] == card["rows"][0]["w2"] and cli["nfe"] == card["rows"][0]["nfe"]

    at = open_app("app_pages/playground_2d.py", timeout=180)
    assert "Active checkpoint:** 2d/moons_otcfm" in " ".join(c.value for c in at.sidebar.caption)
    assert metric(at, "Data-vs-data floor") == f"{cli['w2_data_vs_data']:.3f}"
    assert metric(at, "W2 to fresh moons") == f"{cli['w2']:.3f}"

    assert n == gradio_app.W2_POINTS
    *_, (_, _, info) = gradio_app.sample_2d("moons_otcfm", "rk4", steps, n, seed)
    number = r"([0-9]+\.[0-9]+)"
    shown = rf"W2 \(exact, {n} points\):\*\* {number}.*floor.*? {number}"
    w2, floor = re.search(shown, info).groups()
    assert floor == f"{cli['w2_data_vs_data']:.4f}" and w2 == f"{cli['w2']:.4f}"

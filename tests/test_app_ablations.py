"""The seed-paper ablation page: it shows the shipped cards' numbers and draws live samples."""

import json
from pathlib import Path

import pytest
import torch
from helpers import open_app
from streamlit.testing.v1 import AppTest

from ecnf.checkpoint import checkpoint_info
from ecnf_display.ablations import ABLATIONS, ablation_rows, ablations_dir

PAGE = "app_pages/ablations.py"
TIMEOUT = 180


def cards() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(ablations_dir().glob("*.json"))}


def test_every_configuration_is_shipped_with_a_card():
    names = {ab.name for ab in ABLATIONS}
    assert names == {p.stem for p in ablations_dir().glob("*.safetensors")}
    assert names == set(cards())
    assert {ab.table for ab in ABLATIONS} == {1, 2, 3}
    assert [ab.label for ab in ABLATIONS if ab.table == 3] == ["A", "B", "C", "D"]


def test_equal_budgets_are_recorded_in_the_checkpoints():

    budgets = set()
    for ab in ABLATIONS:
        meta = checkpoint_info(ab.path)["metadata"]
        assert meta["status"] == "completed" and meta["dataset"] == "fashion_mnist"
        budgets.add((meta["steps"], meta["batch_size"]))
    assert len(budgets) == 1


def test_what_each_configuration_changes_is_what_its_checkpoint_holds():
    import re

    for ab in ABLATIONS:
        config = checkpoint_info(ab.path)["train_state"]["config"]
        model, text = config["model"], ab.change
        for label, key in (("lr", "lr"), ("weight decay", "weight_decay"), ("EMA", "ema_decay")):
            found = re.search(rf"(?<![a-z]){label} ([0-9][0-9.e-]*)", text)
            if found:
                assert float(found.group(1)) == pytest.approx(config[key]), (ab.name, label)
        if "no EMA" in text:
            assert config["ema_decay"] == 0, ab.name
        if found := re.search(r"(\d+)x(\d+)", text):
            assert (model["width"], model["depth"]) == tuple(map(int, found.groups())), ab.name
        if found := re.search(r"(\d+) hidden layers", text):
            assert model["depth"] == int(found.group(1)), ab.name
        if found := re.search(r"(\d+) residual blocks of width (\d+)", text):
            assert model["arch"] == "resnet", ab.name
            assert (model["num_blocks"], model["width"]) == tuple(map(int, found.groups())), ab.name
        if found := re.match(r"(\w+) instead of the adaptive activation", text):
            assert model["activation"] == found.group(1).lower(), ab.name
        elif "adaptive activation" in text:
            assert model["activation"] == "adaptive", ab.name


def test_ablation_rows_read_the_card_rows():
    evaluations = cards()
    rows = ablation_rows(evaluations, method="euler", steps=10)
    assert len(rows) == len(ABLATIONS)
    for row in rows:
        card_row = next(
            r
            for r in evaluations[row["name"]]["rows"]
            if (r["method"], r["steps"]) == ("euler", 10)
        )
        assert row["nfe"] == 10 and row["FD-FMNIST"] == card_row["FD-FMNIST"]
    adaptive = ablation_rows(evaluations, method="dopri5", steps=None)
    assert all(r["nfe"] > 20 for r in adaptive)
    with pytest.raises(KeyError, match="no row for heun at 3 steps"):
        ablation_rows(evaluations, method="heun", steps=3)


def page(monkeypatch, checkpoints: Path | None = None) -> AppTest:
    if checkpoints is None:
        monkeypatch.delenv("ECNF_CHECKPOINTS_DIR", raising=False)
    else:
        monkeypatch.setenv("ECNF_CHECKPOINTS_DIR", str(checkpoints))
    return open_app(PAGE, timeout=TIMEOUT)


def test_page_shows_the_cards_numbers_and_follows_the_solver(monkeypatch):
    torch.manual_seed(0)
    at = page(monkeypatch)
    assert [t.value for t in at.title] == ["Seed paper ablations"]
    assert not at.error and not at.warning
    tables = at.dataframe
    assert len(tables) == 3
    evaluations = cards()

    def shown(method, steps):
        return {
            (row["table"], row["label"]): row["FD-FMNIST"]
            for row in ablation_rows(evaluations, method=method, steps=steps)
        }

    def on_page():
        out = {}
        for table, frame in zip((1, 2, 3), tables, strict=True):
            for _, r in frame.value.iterrows():
                out[(table, r["configuration"])] = r["FD-FMNIST"]
        return out

    assert on_page() == shown("rk4", 5)
    assert len(at.image) == len(ABLATIONS)  # a live sample grid per table entry
    assert len(at.get("plotly_chart")) == 3
    at.selectbox[0].set_value("euler, 1 step (NFE 1)").run()
    assert not at.exception, at.exception
    tables = at.dataframe
    assert on_page() == shown("euler", 1) != shown("rk4", 5)
    findings = " ".join(m.value for m in at.markdown)
    assert "rounds to exactly 1 in float32" in findings
    # the budget and the optimiser settings quoted are read from the checkpoints
    info = checkpoint_info(ablations_dir() / "baseline.safetensors")
    meta, optim = info["metadata"], info["train_state"]["config"]
    assert f"{meta['steps']} AdamW steps of batch {meta['batch_size']}" in findings
    assert f"lr {optim['lr']:g}, weight decay {optim['weight_decay']:g}" in findings


def test_page_without_ablations_says_how_to_make_them(monkeypatch, tmp_path):
    (tmp_path / "ablations").mkdir()
    at = page(monkeypatch, tmp_path)
    assert at.warning and "train_gpu_checkpoints.sh" in at.warning[0].value
    assert not at.dataframe

"""Shipped checkpoints load and sample offline, and their cards match what the code computes."""

import inspect
import json
from pathlib import Path

import pytest
import torch
from tolerances import IMAGE_METRIC_REL, MODEL_DRIFT, TOY_DRIFT, mmd2_tolerance, w2_tolerance

from ecnf.checkpoint import checkpoint_info, load
from ecnf.evaluation import evaluate_2d, solver_grid
from ecnf.metrics import mmd2
from ecnf.solvers import integrate
from ecnf_display.cards import render_card

ROOT = Path(__file__).resolve().parents[1]
SHIPPED_2D = sorted((ROOT / "checkpoints" / "2d").glob("*.safetensors"))
REQUIRED = [
    f"{t}_{loss}"
    for t in ("moons", "8gaussians", "checkerboard", "2spirals", "swissroll")
    for loss in ("fm", "otcfm", "meanflow")
] + ["moons_consistency"]


def test_every_required_2d_checkpoint_is_shipped_with_a_card():
    names = {p.stem for p in SHIPPED_2D}
    assert set(REQUIRED) <= names
    for path in SHIPPED_2D:
        assert path.with_suffix(".md").exists() and path.with_suffix(".json").exists()
        assert path.stat().st_size < 1_000_000


@pytest.mark.parametrize("path", SHIPPED_2D, ids=lambda p: p.stem)
def test_shipped_checkpoint_loads_and_samples_offline(path):
    model = load(path, device="cpu")
    x = integrate(model, torch.randn(256, 2), method="rk4", steps=4).x
    assert x.shape == (256, 2) and torch.isfinite(x).all()
    info = checkpoint_info(path)
    assert info["metadata"]["command"].startswith("python -m ecnf train")
    assert "--resume" not in info["metadata"]["command"]


@pytest.mark.parametrize("path", SHIPPED_2D, ids=lambda p: p.stem)
def test_card_numbers_are_what_the_code_computes(path):
    # tolerances from how far points drift on another CPU (tests/tolerances.py)
    bandwidths = inspect.signature(mmd2).parameters["bandwidths"].default
    w2_model, w2_floor = w2_tolerance(MODEL_DRIFT, TOY_DRIFT), w2_tolerance(TOY_DRIFT, TOY_DRIFT)
    mmd_model = mmd2_tolerance(MODEL_DRIFT, TOY_DRIFT, bandwidths)
    mmd_floor = mmd2_tolerance(TOY_DRIFT, TOY_DRIFT, bandwidths)
    card = json.loads(path.with_suffix(".json").read_text())
    rows = [(r["method"], r["steps"], r["nfe"]) for r in card["rows"] if r["steps"] is not None]
    pick = [r for r in rows if r[:2] in {("euler", 1), ("rk4", 5), ("meanflow", 1)}]
    again = evaluate_2d(
        path, num_samples=card["num_samples"], seed=card["seed"], rows=pick, adaptive=False
    )
    by_key = {(r["method"], r["steps"]): r for r in card["rows"]}
    for r in again["rows"]:
        ref = by_key[(r["method"], r["steps"])]
        assert r["nfe"] == ref["nfe"]
        assert r["w2"] == pytest.approx(ref["w2"], rel=0, abs=w2_model)
        assert r["mmd2"] == pytest.approx(ref["mmd2"], rel=0, abs=mmd_model)
    assert again["floor"]["w2"] == pytest.approx(card["floor"]["w2"], rel=0, abs=w2_floor)
    assert again["floor"]["mmd2"] == pytest.approx(card["floor"]["mmd2"], rel=0, abs=mmd_floor)
    # the markdown card shows exactly these numbers
    text = path.with_suffix(".md").read_text()
    assert text == render_card(path.stem, checkpoint_info(path), card)


def test_solver_grid_spends_budgets_exactly():
    for method, steps, nfe in solver_grid():
        assert nfe in (1, 2, 4, 10, 20)
        assert steps * {"euler": 1, "midpoint": 2, "heun": 2, "rk4": 4}[method] == nfe


def test_evaluate_small_sample_is_consistent(tmp_path):
    path = SHIPPED_2D[0]
    ev = evaluate_2d(path, num_samples=200, seed=3, rows=[("euler", 2, 2)], adaptive=True)
    assert ev["rows"][0]["nfe"] == 2 and ev["rows"][1]["nfe"] > 2
    assert ev["floor"]["w2"] > 0


SHIPPED_IMAGES = sorted((ROOT / "checkpoints" / "images").glob("*.safetensors")) + sorted(
    (ROOT / "checkpoints" / "ablations").glob("*.safetensors")
)


def test_required_image_checkpoints_and_the_few_step_claim():
    images = ROOT / "checkpoints" / "images"
    for name in ("digits_unet_fm", "fmnist_unet_fm", "fmnist_unet_reflow"):
        for suffix in (".safetensors", ".md", ".json"):
            assert (images / name).with_suffix(suffix).exists(), name + suffix
    teacher, student = (
        json.loads((images / f"{n}.json").read_text())
        for n in ("fmnist_unet_fm", "fmnist_unet_reflow")
    )

    def fd(card, method, steps):
        return next(r for r in card["rows"] if (r["method"], r["steps"]) == (method, steps))[
            "FD-FMNIST"
        ]

    # the reflow student at 1-2 NFE beats its teacher at the same budget by a wide margin
    for method, steps in (("euler", 1), ("euler", 2), ("midpoint", 1)):
        assert fd(student, method, steps) < fd(teacher, method, steps) / 3
    total = sum(p.stat().st_size for p in (ROOT / "checkpoints").rglob("*.safetensors"))
    assert total < 50_000_000


@pytest.mark.parametrize("path", SHIPPED_IMAGES, ids=lambda p: p.stem)
def test_image_checkpoint_samples_offline_and_matches_its_card(path):
    from ecnf.evaluation import evaluate_image_checkpoint
    from ecnf_display.cards import render_image_card

    model = load(path, device="cpu")
    shape = tuple(model.config.data_shape)
    x = integrate(model, torch.randn(4, *shape), method="euler", steps=2).x
    assert x.shape == (4, *shape) and torch.isfinite(x).all()
    card = json.loads(path.with_suffix(".json").read_text())
    again = evaluate_image_checkpoint(
        path,
        num_samples=card["num_samples"],
        seed=card["seed"],
        rows=[("euler", 1, 1)],
        adaptive=False,
    )
    ref = next(r for r in card["rows"] if (r["method"], r["steps"]) == ("euler", 1))
    # cards may be measured on another machine (a GPU, another CPU): tests/tolerances.py
    for key in card["metrics"].values():
        assert again["rows"][0][key] == pytest.approx(ref[key], rel=IMAGE_METRIC_REL, abs=1e-6)
    for key in [*card["metrics"].values(), "sample_entropy"]:
        assert again["floor"][key] == pytest.approx(
            card["floor"][key], rel=IMAGE_METRIC_REL, abs=1e-6
        )
    # the entropy counts argmax classes: a sample on a class boundary may flip between
    # machines, which moves it by about 1/num_samples
    assert again["rows"][0]["sample_entropy"] == pytest.approx(
        ref["sample_entropy"], abs=2 / card["num_samples"]
    )
    text = path.with_suffix(".md").read_text()
    assert text == render_image_card(path.stem, checkpoint_info(path), card)
    assert "FID" not in text.replace("not FID", "").replace("published FIDs", "")
    assert ("guidance" in card) == bool(model.config.num_classes)


CONDITIONAL_IMAGES = [
    p for p in SHIPPED_IMAGES if checkpoint_info(p)["model_config"].get("num_classes")
]


def test_a_class_conditional_image_model_is_shipped():
    assert {p.stem for p in CONDITIONAL_IMAGES} >= {"digits_unet_fm_cond"}


@pytest.mark.parametrize("path", CONDITIONAL_IMAGES, ids=lambda p: p.stem)
def test_guided_samples_are_of_their_class_and_match_the_card(path):
    from ecnf.evaluation import evaluate_guidance
    from ecnf.solvers import nfe_per_step

    card = json.loads(path.with_suffix(".json").read_text())
    guidance = card["guidance"]
    rows = {r["scale"]: r for r in guidance["rows"]}
    again = evaluate_guidance(
        load(path),
        card["data"],
        scales=(0.0, 2.0),
        solver=(guidance["solver"], guidance["steps"]),
        num_samples=guidance["num_samples"],
        seed=guidance["seed"],
    )
    fd = card["metrics"]["fd"]
    for row in again["rows"]:
        ref = rows[row["scale"]]
        per_step = nfe_per_step(guidance["solver"]) * (2 if row["scale"] else 1)
        assert row["nfe"] == ref["nfe"] == guidance["steps"] * per_step
        assert row[fd] == pytest.approx(ref[fd], rel=IMAGE_METRIC_REL, abs=1e-6)
        # a sample on a class boundary may flip between machines
        assert row["accuracy"] == pytest.approx(ref["accuracy"], abs=3 / guidance["num_samples"])
    assert again["real_accuracy"] == pytest.approx(guidance["real_accuracy"], abs=1e-3)
    # the labels are what picks the class: about a tenth by chance without them, nearly all
    # of them guided, at a quality near the unconditional model's
    assert rows[0.0]["accuracy"] < 0.3
    assert rows[1.0]["accuracy"] >= 0.95 and rows[2.0]["accuracy"] >= 0.95
    assert rows[1.0][fd] < 2 * rows[0.0][fd]


def test_the_image_pages_open_on_the_most_convincing_shipped_model(tmp_path):
    import shutil

    from ecnf.shipped import list_checkpoints, preferred_image_checkpoint

    shipped = list_checkpoints("images")
    best = preferred_image_checkpoint(shipped)
    # the largest images first (Fashion-MNIST before 8x8 digits), then the best card
    cards = {n: json.loads(Path(p).with_suffix(".json").read_text()) for n, p in shipped.items()}

    def adaptive_fd(card):
        key = card["metrics"]["fd"]
        return next(r[key] for r in card["rows"] if r["steps"] is None)

    fmnist = [n for n, c in cards.items() if c["data"] == "fashion_mnist"]
    assert best == min(fmnist, key=lambda n: adaptive_fd(cards[n]))
    assert preferred_image_checkpoint({}) is None
    # a checkpoint without a card comes after the carded ones of its size
    lone = tmp_path / "fmnist_lone.safetensors"
    shutil.copy(shipped[best], lone)
    assert preferred_image_checkpoint({**shipped, "fmnist_lone": str(lone)}) == best
    assert preferred_image_checkpoint({"fmnist_lone": str(lone), "digits_unet_fm":
                                       shipped["digits_unet_fm"]}) == "fmnist_lone"  # fmt: skip
    broken = tmp_path / "broken.safetensors"
    broken.write_bytes(b"not a checkpoint")
    assert preferred_image_checkpoint({"broken": str(broken), **shipped}) == best
    assert preferred_image_checkpoint({"broken": str(broken)}) == "broken"

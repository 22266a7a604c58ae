"""The home page's stored pictures: current, recomputable, and refused once a model changes."""

import io
import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from tolerances import MODEL_DRIFT, TOY_DRIFT

from ecnf.shipped import SHIPPED_DIR
from ecnf_display import home

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def recomputed():
    return home.sample(SHIPPED_DIR)


def test_the_stored_pictures_are_those_of_the_shipped_checkpoints():
    panels = home.read(SHIPPED_DIR)
    assert panels is not None, "checkpoints changed: run python scripts/make_cards.py"
    keys = set(panels)
    assert {"picture", "gallery_otcfm", "gallery_fm"} <= keys
    assert len([k for k in keys if k.startswith("images/")]) == home.IMAGE_MODELS
    for panel in panels.values():
        assert Image.open(io.BytesIO(panel.png)).format == "PNG"


def test_recomputing_gives_the_stored_samples_and_facts(recomputed):
    arrays, facts = recomputed
    stored = home.stored_arrays(SHIPPED_DIR)
    assert set(arrays) == set(stored)
    for key, value in arrays.items():
        if key.startswith("images/"):  # uint8 grids: a pixel may round the other way
            diff = np.abs(value.astype(int) - stored[key].astype(int))
            assert diff.max() <= 1 and diff.mean() < 0.01, key
        else:
            drift = TOY_DRIFT if key in ("picture/x0", "picture/x1") else MODEL_DRIFT
            rms = float(np.sqrt(np.mean((value - stored[key]) ** 2)))
            assert rms <= drift, (key, rms)
    manifest = json.loads((SHIPPED_DIR / home.FOLDER / home.MANIFEST).read_text())
    assert [{k: v for k, v in p.items() if k != "file"} for p in manifest["panels"]] == facts


def test_nfe_and_sampling_facts_come_from_the_solver(recomputed):
    from ecnf.solvers import nfe_per_step

    _, facts = recomputed
    for f in facts:
        assert f["method"] == "rk4"
        assert f["nfe"] == f["steps"] * nfe_per_step("rk4")
    (picture,) = [f for f in facts if f["key"] == "picture"]
    assert picture["checkpoints"] == [f"2d/{home.PICTURE_MODEL}"]


def test_drawing_the_stored_arrays_gives_the_stored_pictures():
    stored = home.stored_arrays(SHIPPED_DIR)
    for key, panel in home.read(SHIPPED_DIR).items():
        again = np.asarray(Image.open(io.BytesIO(home.draw(stored, panel.facts()))))
        shown = np.asarray(Image.open(io.BytesIO(panel.png)))
        assert again.shape == shown.shape, key
        changed = np.abs(again.astype(int) - shown.astype(int)).max(axis=-1) > 32
        assert changed.mean() < 0.01, key  # font hinting may move a few title pixels


def test_a_changed_or_added_checkpoint_makes_the_pictures_stale(studio, tmp_path):
    root = tmp_path / "checkpoints"
    shutil.copytree(studio, root)
    assert home.read(root) is None  # nothing stored yet
    home.write(root)
    panels = home.read(root)
    assert panels is not None and set(panels) == {"picture", "gallery_fm", "gallery_otcfm",
                                                  "images/tiny_digits"}  # fmt: skip
    assert home.compute(root)["gallery_fm"].facts() == panels["gallery_fm"].facts()
    shutil.copy(root / "2d" / "moons_fm.safetensors", root / "2d" / "extra.safetensors")
    assert home.read(root) is None
    (root / "2d" / "extra.safetensors").unlink()
    assert home.read(root) is not None
    model = root / "2d" / "moons_fm.safetensors"
    model.write_bytes(model.read_bytes()[:-1] + b" ")
    assert home.read(root) is None


def test_the_home_page_imports_no_torch_while_its_pictures_are_current():
    script = (
        "import sys\n"
        "import studio\n"
        "warmed = []\n"
        "studio.warm_up = lambda: warmed.append(1)  # the page asks for torch only afterwards\n"
        "from streamlit.testing.v1 import AppTest\n"
        "at = AppTest.from_file('app.py', default_timeout=60).run()\n"
        "assert not at.exception, at.exception\n"
        "assert len(at.image) == 2 + home_models, len(at.image)\n"
        "assert warmed\n"
        "print('torch' in sys.modules)\n"
    ).replace("home_models", str(home.IMAGE_MODELS))
    env = {k: v for k, v in __import__("os").environ.items() if k != "ECNF_CHECKPOINTS_DIR"}
    out = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "False"

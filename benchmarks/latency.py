"""Section 5: the waits the studio asks of a user, measured on this machine's CPU.

* 2D training: the 2D playground's default run (gaussian to moons, OT-CFM, MLP 128 x 3,
  600 steps of batch 256, AdamW 2e-3 with cosine decay; see ``pages/playground_2d.py``)
  through :func:`ecnf.fit`, and the W2 it reaches against the data floor;
* images: 16 Fashion-MNIST samples from the shipped UNet, loading included, at 20 Euler
  steps and at the image page's default (RK4, 10 steps);
* pages: each page's first render by Streamlit's ``AppTest``, in a fresh process, so the
  imports, checkpoint loads and cached computations of a first visit are all counted;
* the home page as a visitor sees it, in Chromium, on a cold and a warm server
  (:mod:`benchmarks.studio_start`).
"""

from __future__ import annotations

import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

from ecnf import LossConfig, MLPConfig, TrainConfig, fit, integrate, load
from ecnf.evaluation import data_floor, toy_sets
from ecnf.metrics import wasserstein2

from . import studio_start

__all__ = ["markdown", "run"]

ROOT = Path(__file__).resolve().parents[1]

# Runs in a fresh interpreter: prints the first-render time of every page as JSON.
_PAGES_SCRIPT = """
import json, sys, time
from streamlit.testing.v1 import AppTest
from studio.ui import PAGES
times = {}
start = time.perf_counter()
at = AppTest.from_file(sys.argv[1], default_timeout=600).run()
assert not at.exception, at.exception
times[PAGES[0][2]] = time.perf_counter() - start
for path, _, title, _ in PAGES[1:] if sys.argv[2] == "all" else []:
    start = time.perf_counter()
    at.switch_page(path).run()
    assert not at.exception, (path, at.exception)
    times[title] = time.perf_counter() - start
print(json.dumps(times))
"""


def _train_2d(quick: bool) -> dict:
    steps = 40 if quick else 600
    with tempfile.TemporaryDirectory() as tmp:
        config = TrainConfig(
            data="moons",
            source="gaussian",
            model=MLPConfig(data_shape=(2,), width=128, depth=3),
            loss=LossConfig("otcfm"),
            iterations=steps,
            batch_size=256,
            lr=2e-3,
            lr_schedule="cosine",
            log_every=max(steps // 60, 5),
            checkpoint_every=steps,
            out_dir=tmp,
            device="cpu",
        )
        start = time.perf_counter()
        result = fit(config, overwrite=True)
        seconds = time.perf_counter() - start
        model = load(result.checkpoint, device="cpu")
    # judged as the studio's playground judges it: its default 1000 points, seed 0
    sets = toy_sets("moons", "gaussian", 1000, seed=0)
    floor = data_floor(sets)["w2"]
    w2 = wasserstein2(integrate(model, sets.x0, method="rk4", steps=10).x, sets.fresh)
    return {"steps": steps, "seconds": seconds, "w2": w2, "floor": floor}


def _images(quick: bool) -> list[dict]:
    path = ROOT / "checkpoints/images/fmnist_unet_fm.safetensors"
    settings = [("euler", 20), ("rk4", 10)] if not quick else [("euler", 2)]
    rows = []
    for method, steps in settings:
        times = []
        for _ in range(1 if quick else 3):
            start = time.perf_counter()
            model = load(path, device="cpu")
            x0 = torch.randn((16, *model.config.data_shape), generator=torch.Generator())
            sol = integrate(model, x0, method=method, steps=steps)
            times.append(time.perf_counter() - start)
        rows.append(
            {"method": method, "steps": steps, "nfe": sol.nfe, "seconds": statistics.median(times)}
        )
    return rows


def _pages(quick: bool) -> dict:
    runs = []
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    for _ in range(1 if quick else 3):
        out = subprocess.run(
            [
                sys.executable,
                "-c",
                _PAGES_SCRIPT,
                str(ROOT / "app.py"),
                "first" if quick else "all",
            ],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    return {page: statistics.median(r[page] for r in runs) for page in runs[0]} | {
        "_runs": len(runs)
    }


def run(quick: bool = False, pages: bool = True) -> dict:
    """``pages=False`` leaves out the page renders (they need the studio's packages)."""
    result = {"train_2d": _train_2d(quick), "images": _images(quick)}
    print(
        f"  2D training: {result['train_2d']['seconds']:.1f} s to W2 "
        f"{result['train_2d']['w2']:.3f} (floor {result['train_2d']['floor']:.3f})",
        flush=True,
    )
    if pages:
        result["pages"] = _pages(quick)
        print(f"  first renders: {result['pages']}", flush=True)
        result["browser"] = studio_start.measure(quick)
        print(f"  home page in Chromium: {result['browser']}", flush=True)
    return result


def markdown(result: dict) -> str:
    t = result["train_2d"]
    lines = [
        "## 5. Interactive latency (this machine's CPU)",
        "",
        "| what the studio does | wait (s) | result |",
        "|---|---|---|",
        f"| 2D playground's default training run ({t['steps']} steps, OT-CFM, MLP 128 x 3) "
        f"| {t['seconds']:.1f} | W2 {t['w2']:.3f} with RK4 10 steps (data floor "
        f"{t['floor']:.3f}, ratio {t['w2'] / t['floor']:.2f}) |",
    ]
    for r in result["images"]:
        lines.append(
            f"| 16 Fashion-MNIST images, {r['method']} {r['steps']} steps (NFE {r['nfe']}), "
            f"checkpoint load included | {r['seconds']:.2f} | median of runs |"
        )
    pages = result.get("pages")
    if pages:
        for page, seconds in pages.items():
            if not page.startswith("_"):
                lines.append(
                    f"| first render of the page '{page}' (fresh process, AppTest; the first "
                    f"page includes the imports) | {seconds:.2f} | median of {pages['_runs']} |"
                )
    browser = result.get("browser")
    if browser:
        lines += [
            "",
            "The home page in Debian's Chromium (Playwright), the server started as `make app` "
            "starts it; seconds from asking for the page until its title shows, its first picture "
            "is drawn and its script has finished (idle half a second, every picture drawn). Cold: "
            "the first visit to a fresh server (imports, checkpoint loads, cached computations); "
            "warm: a new session afterwards. Medians over fresh servers.",
            "",
            "| server | servers | up (s) | cold: title | cold: first picture | cold: finished "
            "| warm: title | warm: first picture | warm: finished |",
            "|---|---|---|---|---|---|---|---|---|",
        ]
        for label, r in browser.items():
            cells = " | ".join(
                f"{r[f'{v} {m}']:.2f}"
                for v in ("cold", "warm")
                for m in ("title", "first_picture", "finished")
            )
            lines.append(f"| {label} | {r['servers']} | {r['server_up']:.2f} | {cells} |")
    return "\n".join(lines) + "\n"

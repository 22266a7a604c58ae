"""Run the tests, or measure how far numbers drift, under every CPU setting this machine has.

Stored numbers (model cards, result files) are recomputed by the tests on other machines.
Their float32 rounding differs with the vector width of torch's kernels, the thread count and
the float32 transcendental functions. This script makes one machine play several: it runs
each command under ``ATEN_CPU_CAPABILITY`` = ``default``, ``avx2`` and ``avx512`` (those the
CPU supports) and ``OMP_NUM_THREADS`` = 1 and 2.

    python scripts/cross_cpu.py test                        # the whole suite, every setting
    python scripts/cross_cpu.py test tests/test_cards.py    # some tests (pytest arguments)
    python scripts/cross_cpu.py drift [--images]            # the drifts tests/tolerances.py uses

``drift`` draws, in every setting, the toy sets, the source noise and RK4/Euler samples of
each shipped 2D checkpoint (and with ``--images`` the classifier metrics of image cards),
then prints the largest root-mean-square drift of each against the first setting.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
THREADS = (1, 2)
#: torch's capability names and the CPU flags each one needs.
CAPABILITIES = {
    "default": (),
    "avx2": ("avx2", "fma"),
    "avx512": ("avx512f", "avx512bw", "avx512vl", "avx512dq"),
}


def capabilities() -> list[str]:
    """The ``ATEN_CPU_CAPABILITY`` values this CPU can run (``default`` elsewhere than Linux)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return ["default"]
    flags = set()
    for line in text.splitlines():
        if line.startswith("flags"):
            flags = set(line.split(":", 1)[1].split())
            break
    return [name for name, need in CAPABILITIES.items() if set(need) <= flags]


def settings() -> list[dict[str, str]]:
    return [
        {"ATEN_CPU_CAPABILITY": cap, "OMP_NUM_THREADS": str(n)}
        for cap, n in itertools.product(capabilities(), THREADS)
    ]


def label(env: dict[str, str]) -> str:
    return f"{env['ATEN_CPU_CAPABILITY']}, {env['OMP_NUM_THREADS']} thread(s)"


def run_tests(pytest_args: list[str]) -> int:
    failed = []
    for env in settings():
        print(f"== pytest under {label(env)}", flush=True)
        start = time.perf_counter()
        rc = subprocess.call(
            [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *pytest_args],
            cwd=ROOT,
            env=os.environ | env,
        )
        print(f"   exit {rc} after {time.perf_counter() - start:.0f} s", flush=True)
        if rc:
            failed.append(label(env))
    print("all settings passed" if not failed else f"failed under: {'; '.join(failed)}")
    return 1 if failed else 0


def _draw(out: str, images: bool) -> None:
    """One setting's numbers: toy sets and model samples of every shipped 2D checkpoint."""
    import torch

    sys.path.insert(0, str(ROOT))
    from ecnf.checkpoint import checkpoint_info, load
    from ecnf.evaluation import evaluate_image_checkpoint, toy_sets
    from ecnf.shipped import SHIPPED_DIR
    from ecnf.solvers import integrate

    points = {}
    for path in sorted((SHIPPED_DIR / "2d").glob("*.safetensors")):
        meta = checkpoint_info(path)["metadata"]
        sets = toy_sets(meta["dataset"], meta.get("source", "gaussian"), 2000, 0)
        model = load(path, device="cpu")
        points[path.stem] = {
            "noise": sets.x0,
            "data": torch.cat([sets.fresh, sets.other]),
            **{
                f"{method} {steps}": integrate(model, sets.x0, method=method, steps=steps).x
                for method, steps in (("euler", 1), ("euler", 20), ("rk4", 5))
            },
        }
    metrics = {}
    if images:
        folders = [SHIPPED_DIR / "images", SHIPPED_DIR / "ablations"]
        for path in sorted(p for f in folders for p in f.glob("*.safetensors")):
            card = json.loads(path.with_suffix(".json").read_text())
            ev = evaluate_image_checkpoint(
                path, num_samples=card["num_samples"], seed=card["seed"], rows=[("euler", 1, 1)]
            )
            metrics[path.stem] = {k: ev["rows"][0][k] for k in card["metrics"].values()}
    torch.save({"points": points, "metrics": metrics}, out)


def measure_drift(images: bool) -> int:
    import torch

    runs = []
    with tempfile.TemporaryDirectory() as tmp:
        for i, env in enumerate(settings()):
            out = str(Path(tmp) / f"{i}.pt")
            cmd = [sys.executable, __file__, "_draw", out] + (["--images"] if images else [])
            print(f"drawing under {label(env)}", flush=True)
            subprocess.run(cmd, cwd=ROOT, env=os.environ | env, check=True)
            runs.append((label(env), torch.load(out)))
    (first, base), others = runs[0], runs[1:]
    worst: dict[str, tuple[float, str]] = {}
    for name, run in others:
        for ckpt, sets in run["points"].items():
            for key, x in sets.items():
                rms = (x - base["points"][ckpt][key]).pow(2).sum(1).mean().sqrt().item()
                kind = key if key in ("noise", "data") else "model samples"
                if rms >= worst.get(kind, (-1.0, ""))[0]:
                    worst[kind] = (rms, f"{ckpt} {key}, {name}")
        for ckpt, values in run["metrics"].items():
            for key, v in values.items():
                ref = base["metrics"][ckpt][key]
                rel = abs(v - ref) / max(abs(ref), 1e-12)
                if rel >= worst.get("image metrics (relative)", (-1.0, ""))[0]:
                    worst["image metrics (relative)"] = (rel, f"{ckpt} {key}, {name}")
    print(f"\nlargest drift against {first} (RMS over points for 2D sets):")
    for kind, (value, where) in worst.items():
        print(f"  {kind:<26} {value:.2e}   ({where})")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("test", help="run pytest under every setting")
    t.add_argument("pytest_args", nargs=argparse.REMAINDER)
    d = sub.add_parser("drift", help="measure the drift of samples and metrics")
    d.add_argument("--images", action="store_true", help="also the image metrics (slower)")
    w = sub.add_parser("_draw")  # one setting's numbers, run in a child process
    w.add_argument("out")
    w.add_argument("--images", action="store_true")
    args, extra = parser.parse_known_args(argv)  # pytest's own options pass through
    if args.command == "test":
        return run_tests([*extra, *args.pytest_args])
    if extra:
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if args.command == "drift":
        return measure_drift(args.images)
    _draw(args.out, args.images)
    return 0


if __name__ == "__main__":
    sys.exit(main())

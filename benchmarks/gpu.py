"""Section 6: images per second of a CIFAR-sized UNet sampled on a GPU, eager against compiled.

Samples a batch of 3 x 32 x 32 images with a fixed-step solver (Euler, 20 steps by default:
20 network evaluations) from a CIFAR-10-sized :class:`ecnf.nets.UNet` with random weights
(throughput does not depend on the weights), and times the same solve several ways:

* ``ecnf eager``: :func:`ecnf.integrate` as a user calls it;
* ``floor eager``: a bare loop that only calls the network and does the update;
* ``torchdiffeq eager``: ``torchdiffeq.odeint`` on the same grid (when installed);
* ``ecnf + CUDA graph``: the whole solve captured once with ``torch.cuda.graph`` and replayed;
* ``ecnf + torch.compile``: the network compiled by inductor (default mode);
* ``ecnf + torch.compile + CUDA graph``: the compiled network, whole solve captured;
* ``ecnf.fast.FastSolver``: the library's fast path (what ``ecnf.fast.sample`` gives the CLI,
  the evaluation and the studio), with its mean absolute difference from eager fp32 checked
  against ``ecnf.fast.FAST_TOLERANCE``;

each in fp32 and under bf16 autocast. Every variant runs in isolation: a failure is recorded
with its message and the others go on. Variants start only while ``--budget-s`` seconds have
not passed, so the script ends within a few minutes on an H100.

Run it standalone (it needs only torch and ecnf; torchdiffeq is optional)::

    python benchmarks/gpu.py --out benchmarks/gpu_results.json

It writes the JSON to ``--out`` and a markdown table beside it (same name, ``.md``).
``python -m benchmarks.run_all`` includes that JSON in ``benchmarks/RESULTS.md``. Without a
CUDA device it prints ``no CUDA device`` and exits with code 0 (1 with ``--require-cuda``);
``--device cpu --quick`` checks the script's logic on a CPU.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
import traceback
from collections.abc import Callable
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:  # run as a plain script from a checkout: import this ecnf
    sys.path.insert(0, str(ROOT))

import torch  # noqa: E402
from torch import Tensor  # noqa: E402

from ecnf.fast import FAST_TOLERANCE, FastSolver, difference  # noqa: E402
from ecnf.nets import UNetConfig, build_model  # noqa: E402
from ecnf.nets.torchcfm import TORCHCFM_CIFAR10, TorchCFMUNetConfig  # noqa: E402
from ecnf.solvers import FIXED_METHODS, integrate, nfe_per_step  # noqa: E402

__all__ = ["cifar_unet_config", "main", "markdown", "run"]

Solve = Callable[[], Tensor]


def torchcfm_config(quick: bool = False) -> TorchCFMUNetConfig:
    """TorchCFM's released CIFAR-10 UNet (35.75M parameters, what `ecnf import torchcfm`
    brings in); a tiny one of the same kind for ``quick``."""
    if quick:
        return TorchCFMUNetConfig(
            num_channels=32, num_res_blocks=1, channel_mult=(1, 2), num_heads=2,
            num_head_channels=16,
        )  # fmt: skip
    return TORCHCFM_CIFAR10


def cifar_unet_config(quick: bool = False) -> UNetConfig:
    """The usual DDPM / I-CFM CIFAR-10 UNet (about 36M parameters); a tiny one for ``quick``."""
    if quick:
        return UNetConfig(
            data_shape=(3, 32, 32), channels=16, channel_mult=(1, 2), attention_levels=(1,)
        )
    return UNetConfig(
        data_shape=(3, 32, 32),
        channels=128,
        channel_mult=(1, 2, 2, 2),
        num_res_blocks=2,
        attention_levels=(1,),
        num_heads=4,
        dropout=0.1,
    )


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        # no weight-cast cache: cached casts would live outside a captured graph's memory pool
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)
    return nullcontext()


def _floor(model, x0: Tensor, method: str, steps: int) -> Tensor:
    """The least a fixed-step solve can do: network calls and the method's update."""
    batch, h = x0.shape[0], 1.0 / steps
    x = x0
    for i in range(steps):
        t = i * h
        k1 = model(x, x.new_full((batch,), t))
        if method == "euler":
            x = torch.add(x, k1, alpha=h)
            continue
        k2 = model(torch.add(x, k1, alpha=0.5 * h), x.new_full((batch,), t + 0.5 * h))
        if method == "midpoint":
            x = torch.add(x, k2, alpha=h)
            continue
        k3 = model(torch.add(x, k2, alpha=0.5 * h), x.new_full((batch,), t + 0.5 * h))
        k4 = model(torch.add(x, k3, alpha=h), x.new_full((batch,), t + h))
        x = torch.add(x, k1 + 2.0 * (k2 + k3) + k4, alpha=h / 6.0)
    return x


def _graphed(solve: Solve, device: torch.device) -> Solve:
    """Capture ``solve`` (warmed up on a side stream) in a CUDA graph; return its replay."""
    stream = torch.cuda.Stream(device)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        for _ in range(2):
            solve()
    torch.cuda.current_stream(device).wait_stream(stream)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = solve()

    def replay() -> Tensor:
        graph.replay()
        return out

    return replay


def _time(solve: Solve, device: torch.device, repeats: int) -> list[float]:
    times = []
    for _ in range(repeats):
        _sync(device)
        start = time.perf_counter()
        solve()
        _sync(device)
        times.append(time.perf_counter() - start)
    return times


def _quantiles(values: list[float]) -> tuple[float, float]:
    """Median and inter-quartile range."""
    if len(values) < 2:
        return values[0], 0.0
    q = statistics.quantiles(values, n=4, method="inclusive")
    return statistics.median(values), q[2] - q[0]


def run(args: argparse.Namespace) -> dict:
    """Measure every variant; return the results as a JSON-ready dict."""
    device = torch.device(args.device)
    torch.manual_seed(0)
    config = (
        torchcfm_config(args.quick) if args.arch == "torchcfm" else cifar_unet_config(args.quick)
    )
    model = build_model(config).to(device).eval().requires_grad_(False)
    params = sum(p.numel() for p in model.parameters())
    x0 = torch.randn((args.batch, *config.data_shape), device=device)
    method, steps = args.method, args.steps

    def ecnf_solve(net) -> Solve:
        return lambda: integrate(net, x0, method=method, steps=steps).x

    variants: list[tuple[str, str, Callable[[], Solve]]] = []
    compiled: dict[str, object] = {}

    def compiled_model():
        if "model" not in compiled:
            compiled["model"] = torch.compile(model)
        return compiled["model"]

    for precision in ("fp32", "bf16"):
        variants += [
            ("ecnf eager", precision, lambda: ecnf_solve(model)),
            ("floor eager", precision, lambda: lambda: _floor(model, x0, method, steps)),
        ]
        if precision == "fp32":
            variants.append(("torchdiffeq eager", precision, lambda: _torchdiffeq(model, x0, args)))
        variants.append(("ecnf + CUDA graph", precision, lambda: ecnf_solve(model)))
    for precision in ("fp32", "bf16"):
        variants += [
            ("ecnf + torch.compile", precision, lambda: ecnf_solve(compiled_model())),
            ("ecnf + torch.compile + CUDA graph", precision, lambda: ecnf_solve(compiled_model())),
        ]
    for precision in ("fp32", "bf16"):  # the library's own fast path, as every caller gets it
        variants.append(
            (
                "ecnf.fast.FastSolver",
                precision,
                lambda precision=precision: _library_fast(model, x0, method, steps, precision),
            )
        )

    rows, reference, start = [], None, time.perf_counter()
    for name, precision, make in variants:
        row = {"variant": name, "precision": precision}
        rows.append(row)
        graphed = "CUDA graph" in name
        needs_cuda = graphed or name.startswith("ecnf.fast")
        if needs_cuda and device.type != "cuda":
            row["status"] = "skipped: needs CUDA"
            continue
        if "compile" in name and device.type != "cuda" and not args.compile:
            row["status"] = "skipped: compile is measured on CUDA (pass --compile to force)"
            continue
        if precision == "bf16" and not args.bf16:
            row["status"] = "skipped: --no-bf16"
            continue
        if time.perf_counter() - start > args.budget_s:
            row["status"] = f"skipped: time budget of {args.budget_s:.0f} s spent"
            continue
        try:
            with _autocast(device, precision), torch.no_grad():
                solve = make()
                first = time.perf_counter()
                if graphed:
                    solve = _graphed(solve, device)
                out = solve()
                _sync(device)
                row["first_call_s"] = time.perf_counter() - first
                _time(solve, device, 1)  # one more warm-up
                times = _time(solve, device, args.repeats)
                out = solve().float().clone()
        except Exception as error:  # a failing variant must not cost the others
            row["status"] = f"failed: {type(error).__name__}: {str(error).splitlines()[0][:300]}"
            if args.verbose:
                traceback.print_exc()
            continue
        median, iqr = _quantiles(times)
        row.update(
            status="ok",
            median_s=median,
            iqr_s=iqr,
            images_per_s=args.batch / median,
            repeats=len(times),
        )
        if reference is None:
            reference = out
        row["max_abs_diff_vs_first"] = float((out - reference).abs().max())
        row["mean_abs_diff_vs_first"] = difference(out, reference)
        row["within_fast_tolerance"] = row["mean_abs_diff_vs_first"] <= FAST_TOLERANCE[precision]
        print(
            f"{name:36s} {precision}: {row['images_per_s']:9.1f} images/s "
            f"(median {median * 1e3:.1f} ms, first call {row['first_call_s']:.1f} s)",
            flush=True,
        )
    eager = next((r for r in rows if r["variant"] == "ecnf eager" and r["status"] == "ok"), None)
    for row in rows:
        if eager is not None and row["status"] == "ok":
            row["speedup_vs_ecnf_eager_fp32"] = eager["median_s"] / row["median_s"]
    return {
        "section": "gpu",
        "command": " ".join(["python", *sys.argv]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": _machine(device),
        "model": {"config": repr(config), "parameters": params},
        "batch": args.batch,
        "method": method,
        "steps": steps,
        "nfe": nfe_per_step(method) * steps,
        "repeats": args.repeats,
        "rows": rows,
    }


def _library_fast(model, x0: Tensor, method: str, steps: int, precision: str) -> Solve:
    """:class:`ecnf.fast.FastSolver`, built (compiled and captured) on the first call."""
    built: dict[str, FastSolver] = {}

    def solve() -> Tensor:
        if "solver" not in built:
            shape = tuple(x0.shape)
            built["solver"] = FastSolver(model, shape, method, steps, precision=precision)
        return built["solver"](x0).x

    return solve


def _torchdiffeq(model, x0: Tensor, args: argparse.Namespace) -> Solve:
    from torchdiffeq import odeint

    grid = torch.linspace(0.0, 1.0, args.steps + 1, device=x0.device)
    batch = x0.shape[0]

    def func(t: Tensor, x: Tensor) -> Tensor:
        return model(x, t.expand(batch))

    return lambda: odeint(func, x0, grid, method=args.method)[-1]


def _machine(device: torch.device) -> dict:
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu_count": os.cpu_count(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
    }
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        info["cuda"] = torch.version.cuda
        info["gpu_memory_gib"] = round(
            torch.cuda.get_device_properties(device).total_memory / 2**30
        )
    else:
        info["gpu"] = None
        info["cpu"] = platform.processor() or platform.machine()
    return info


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.2g}"  # not measured by older runs


def markdown(result: dict) -> str:
    """The results as a markdown section (used for the ``.md`` file and RESULTS.md)."""
    m = result["machine"]
    where = m.get("gpu") or f"CPU ({m.get('cpu')})"
    lines = [
        f"Command: `{result['command']}` on {where}, torch {m['torch']}"
        + (f", CUDA {m['cuda']}" if m.get("cuda") else "")
        + f", {result['date']}. TF32: matmul {m['tf32_matmul']}, cuDNN {m['tf32_cudnn']}.",
        "",
        f"Network {result['model']['config']} ({result['model']['parameters'] / 1e6:.1f}M "
        f"parameters, random weights), batch {result['batch']}, {result['method']} "
        f"{result['steps']} steps (NFE {result['nfe']}), median of {result['repeats']} solves "
        "after warm-up. Speed-up is against `ecnf eager` fp32 in the same run; the difference "
        "column is the largest absolute difference of the samples from the first variant.",
        "",
        "| variant | precision | images/s | median solve (ms) | IQR (ms) | speed-up "
        "| first call (s) | max abs diff | mean abs diff | status |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in result["rows"]:
        if r["status"] == "ok":
            verdict = "outside FAST_TOLERANCE" if r.get("within_fast_tolerance") is False else "ok"
            lines.append(
                f"| {r['variant']} | {r['precision']} | {r['images_per_s']:.1f} "
                f"| {r['median_s'] * 1e3:.1f} | {r['iqr_s'] * 1e3:.1f} "
                f"| {r.get('speedup_vs_ecnf_eager_fp32', float('nan')):.2f}x "
                f"| {r['first_call_s']:.1f} | {r['max_abs_diff_vs_first']:.2g} "
                f"| {_fmt(r.get('mean_abs_diff_vs_first'))} "
                f"| {verdict} |"
            )
        else:
            lines.append(f"| {r['variant']} | {r['precision']} | | | | | | | | {r['status']} |")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "gpu_results.json")
    p.add_argument("--device", default="cuda", help="cuda (default), cuda:1, or cpu")
    p.add_argument("--batch", type=int, default=None, help="default 256 (4 with --quick)")
    p.add_argument(
        "--arch",
        choices=["ecnf", "torchcfm"],
        default="ecnf",
        help="ecnf: ECNF's CIFAR-10-sized UNet; torchcfm: TorchCFM's released CIFAR-10 UNet",
    )
    p.add_argument("--method", default="euler", choices=list(FIXED_METHODS))
    p.add_argument("--steps", type=int, default=None, help="default 20 (2 with --quick)")
    p.add_argument("--repeats", type=int, default=None, help="default 5 (2 with --quick)")
    p.add_argument("--budget-s", type=float, default=200.0, help="start no variant after this")
    p.add_argument("--quick", action="store_true", help="a tiny UNet: checks the logic")
    p.add_argument("--no-bf16", dest="bf16", action="store_false")
    p.add_argument("--compile", action="store_true", help="also run torch.compile on a CPU")
    p.add_argument("--require-cuda", action="store_true", help="exit 1 without a CUDA device")
    p.add_argument("--verbose", action="store_true", help="print the traceback of failures")
    args = p.parse_args(argv)
    args.batch = args.batch or (4 if args.quick else 256)
    args.steps = args.steps or (2 if args.quick else 20)
    args.repeats = args.repeats or (2 if args.quick else 5)
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("no CUDA device: nothing to measure (use --device cpu --quick to check the script)")
        return 1 if args.require_cuda else 0
    result = run(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    args.out.with_suffix(".md").write_text("# GPU sampling throughput\n\n" + markdown(result))
    print(f"wrote {args.out} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

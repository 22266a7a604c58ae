"""Run every benchmark section and write the results as markdown (and JSON).

    python -m benchmarks.run_all                  # full run, writes benchmarks/RESULTS.md
    python -m benchmarks.run_all --quick --out /tmp/RESULTS.md   # seconds: checks the harness

Sections: 1-2 sampling (fixed grid and dopri5), 3 training throughput, 4 quality per solver
budget, 5 interactive latency, 7 several visitors at once (``load``, only when named).
Section 6 (GPU) is ``benchmarks/gpu.py``, run on a CUDA machine; its JSON (``--gpu-json``,
by default ``benchmarks/gpu_results.json``) is included when present, and ``--render-only``
adds it to an existing RESULTS.md without measuring again. Every number in the file is
measured by the run that wrote the JSON it comes from; ``--update --sections NAME``
measures one section again, and the file says which run measured which section.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
import traceback
from pathlib import Path

import torch

from . import latency, load, quality, sampling, training
from .common import machine
from .gpu import markdown as gpu_markdown

__all__ = ["SECTIONS", "main", "render", "summary"]

HERE = Path(__file__).resolve().parent
SECTIONS = {
    "sampling": sampling,
    "training": training,
    "quality": quality,
    "latency": latency,
    "load": load,
}
#: What a plain run measures; ``load`` drives browsers and servers for minutes and is run
#: by name (``--sections load --update``).
DEFAULT_SECTIONS = ("sampling", "training", "quality", "latency")


def retimed(results: dict) -> str:
    """How many comparisons were timed twice, and where (their first timing is in the JSON)."""
    rows = []
    s = results.get("sampling") or {}
    for part in ("fixed", "adaptive"):
        for r in (s.get(part) or {}).get("rows", []):
            if r.get("first_timing"):
                what = (
                    f"{r['method']} {r['steps']} steps"
                    if part == "fixed"
                    else f"dopri5 tol {r['tol']:g}"
                )
                rows.append(f"{r['network']} B={r['batch']} {what}")
    for r in (results.get("training") or {}).get("rows", []):
        if r.get("first_timing"):
            rows.append(f"training {r['network']} {r['loss']}")
    if not rows:
        return "this run timed no comparison twice"
    return f"timed twice in this run: {len(rows)} ({'; '.join(rows)})"


def summary(results: dict) -> list[str]:
    """Where ECNF stands against each target of the benchmark, computed from the results."""
    lines = ["| target | measured | met |", "|---|---|---|"]
    s = results.get("sampling")
    if s:
        fixed = s["fixed"]["rows"]
        ratios = [r["ratio_to_floor"]["ecnf"] for r in fixed]
        medians = [r["median"] for r in ratios]
        above = sum(r["q1"] > 1.05 for r in ratios)
        lines.append(
            f"| fixed-grid sampling within 5% of the floor | ECNF/floor median of cells "
            f"{statistics.median(medians):.3f}, worst cell {max(medians):.3f}; cells where ECNF "
            f"was over 5% above the floor in three rounds of four: {above} of {len(ratios)} "
            f"| {'yes' if above == 0 else f'no ({above} cells)'} |"
        )
        peers = [r["ecnf_over_peer"][p] for r in fixed for p in ("torchdiffeq", "flow_matching")]
        slower = sum(r["q1"] > 1.0 for r in peers)
        lines.append(
            f"| never slower than torchdiffeq or flow_matching | ECNF/peer median of cells "
            f"{statistics.median(r['median'] for r in peers):.3f}; comparisons where ECNF was "
            f"slower in three rounds of four: {slower} of {len(peers)} "
            f"| {'yes' if slower == 0 else f'no ({slower})'} |"
        )
        adaptive = s["adaptive"]["rows"]
        same = all(len(set(r["nfe"].values())) == 1 for r in adaptive)
        a_peers = [
            r["ecnf_over_peer"][p] for r in adaptive for p in ("torchdiffeq", "flow_matching")
        ]
        slower = sum(r["q1"] > 1.0 for r in a_peers)
        lines.append(
            f"| dopri5: same NFE, no slower | NFE equal in every case: {'yes' if same else 'no'}; "
            f"ECNF/peer time median {statistics.median(r['median'] for r in a_peers):.3f}; "
            f"slower in three rounds of four: {slower} of {len(a_peers)} "
            f"| {'yes' if same and slower == 0 else 'no'} |"
        )
    t = results.get("training")
    if t:
        ratios = [r["ecnf_over_torchcfm"] for r in t["rows"]]
        slower = sum(r["q1"] > 1.0 for r in ratios)
        listed = ", ".join(f"{r['median']:.3f}" for r in ratios)
        lines.append(
            f"| training step at least as fast as TorchCFM's | ECNF/TorchCFM time per case: "
            f"{listed}; slower in three rounds of four: {slower} of {len(ratios)} "
            f"| {'yes' if slower == 0 else 'no'} |"
        )
        for lp in t.get("loops", []):
            share, vs = lp["ot_share"], lp["ahead_over_torchcfm"]["median"]
            cores = results["machine"]["cores"]
            bound = training.ot_share_bound(lp, t["couplings"], cores)
            lines.append(
                f"| minibatch OT does not dominate the step at batch {lp['batch']} "
                f"({lp['network']}) | OT's part of the OT-CFM training loop's time: "
                f"{share['ecnf OT ahead']:.0%} with `fit`'s couplings solved ahead "
                f"({lp['workers']} thread{'' if lp['workers'] == 1 else 's'}), "
                f"{share['ecnf OT in step']:.0%} solved in the step, "
                f"TorchCFM {share['torchcfm OT']:.0%}; loop time {vs:.2f}x TorchCFM's. "
                f"Least possible on {cores} cores with this solver: {bound:.0%} "
                "(see section 3) "
                f"| {'yes' if share['ecnf OT ahead'] < 0.5 else 'no'} |"
            )
    q = results.get("quality")
    if q:
        for r in q["rows"]:
            if r["library"] == "ecnf" and r["objective"] in ("OT-CFM", "consistency"):
                w = r["w2"]
                one, two = w["euler 1"] / w["adaptive"], w["euler 2"] / w["adaptive"]
                lines.append(
                    f"| {r['objective']} near adaptive quality at 1-2 steps | W2 at 1 / 2 Euler "
                    f"steps: {one:.2f}x / {two:.2f}x the dopri5 W2 "
                    f"| {'yes' if min(one, two) <= 1.1 else 'no'} (within 10%) |"
                )
    return lines


def _latest_updates(updates: list[dict]) -> list[dict]:
    """Each section's latest re-measurement only (an older one's numbers were replaced)."""
    latest = {}
    for u in updates:
        for name in u["sections"]:
            latest[name] = u
    return list({id(u): u for u in latest.values()}.values())


def render(results: dict, gpu: dict | None, command: str, seconds: float) -> str:
    m = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in m["versions"].items() if v)
    lines = [
        "# Benchmarks: ECNF beside TorchCFM, flow_matching and torchdiffeq",
        "",
        f"- Command: `{command}` ({seconds / 60:.1f} min)",
        f"- Machine: {m['cpu']}, {m['cores']} cores, {m['platform']}, torch threads "
        f"{m['torch_threads']} (OMP_NUM_THREADS={m['omp_num_threads']}), GPU: {m['gpu'] or 'none'}",
        f"- Software: Python {m['python']}, torch {m['torch']}, {versions}",
        f"- Date: {m['date']}",
        *(
            f"- Section{'s' if len(u['sections']) > 1 else ''} {', '.join(u['sections'])} "
            f"measured again by `{u['command']}` on {u['machine']['date']} "
            f"({u['seconds'] / 60:.1f} min, {u['machine']['cores']} cores, torch threads "
            f"{u['machine']['torch_threads']}); the numbers there are from that run"
            for u in _latest_updates(results.get("updates", []))
        ),
        "",
        "Timings are medians over interleaved rounds in this one run; every ratio is the "
        "median of per-round ratios of two things measured side by side. These machines are "
        "shared and noisy: a target counts as missed only where ECNF lost in at least three "
        "rounds of four (the lower quartile of the per-round ratio is past the mark), and "
        "medians near 1 are ties. A comparison that read as missed was timed again and "
        "counts as missed only if it read as missed again: among the dozens of true ties "
        "here (an image network's time swamps any integrator's), one reads as lost in a "
        "single timing in about every other run, twice in a row rarely (see "
        "`benchmarks/common.py`). The tables show the second timing; "
        f"{retimed(results)}. Regenerate this file with the command above.",
        "",
        "## Where ECNF stands",
        "",
        *summary(results),
        "",
    ]
    if "training" in results:  # the cores the loops' least possible OT share is computed for
        results["training"].setdefault("cores", m["cores"])
    for name, module in SECTIONS.items():
        if name in results and name != "load":  # section 7 comes after the GPU's 6
            lines.append(module.markdown(results[name]))
    for name, error in results.get("failed", {}).items():
        lines += [f"Section `{name}` failed in this run: `{error}`", ""]
    lines += ["## 6. GPU sampling throughput", ""]
    if gpu:
        lines.append(gpu_markdown(gpu))
    else:
        lines.append(
            "Not measured in this run (no GPU here). On a CUDA machine run "
            "`python benchmarks/gpu.py --out benchmarks/gpu_results.json`, then "
            "`python -m benchmarks.run_all --render-only` adds that file here."
        )
    if "load" in results:
        lines += ["", SECTIONS["load"].markdown(results["load"])]
    return "\n".join(lines).rstrip() + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description="Run ECNF's benchmarks and write RESULTS.md.")
    p.add_argument("--quick", action="store_true", help="tiny sizes: checks the harness")
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--json", type=Path, default=None, help="default: --out with .json")
    p.add_argument("--gpu-json", type=Path, default=HERE / "gpu_results.json")
    p.add_argument(
        "--sections",
        default=",".join(DEFAULT_SECTIONS),
        help=f"comma-separated, of {', '.join(SECTIONS)} (default: all but load)",
    )
    p.add_argument("--no-pages", action="store_true", help="skip the studio page renders")
    p.add_argument(
        "--update",
        action="store_true",
        help="measure only --sections and keep the other sections of the saved JSON; the "
        "file then says which sections were measured again, when and how",
    )
    p.add_argument(
        "--render-only",
        action="store_true",
        help="measure nothing: rewrite --out from the saved JSON (e.g. to add a GPU section)",
    )
    args = p.parse_args(argv)
    out_json = args.json or args.out.with_suffix(".json")
    gpu = json.loads(args.gpu_json.read_text()) if args.gpu_json.exists() else None
    if args.render_only:
        results = json.loads(out_json.read_text())
        args.out.write_text(render(results, gpu, results["command"], results["seconds"]))
        print(f"rewrote {args.out} from {out_json}")
        return 0
    chosen = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = sorted(set(chosen) - set(SECTIONS))
    if unknown:
        p.error(f"unknown sections {unknown}; choose from {', '.join(SECTIONS)}")
    command = " ".join(
        ["python -m benchmarks.run_all", *(argv if argv is not None else sys.argv[1:])]
    )
    start = time.perf_counter()
    results: dict = {"machine": machine(), "command": command, "quick": args.quick}
    for name in chosen:
        print(f"[{name}]", flush=True)
        t0 = time.perf_counter()
        kwargs = {"pages": not args.no_pages} if name == "latency" else {}
        try:
            results[name] = SECTIONS[name].run(quick=args.quick, **kwargs)
        except Exception as error:  # one broken section must not lose the others' numbers
            traceback.print_exc()
            results.setdefault("failed", {})[name] = f"{type(error).__name__}: {error}"
        print(f"[{name}] {time.perf_counter() - t0:.0f} s", flush=True)
    seconds = time.perf_counter() - start
    results["seconds"] = seconds
    if args.update:
        if results.get("failed"):
            print(f"not updating {args.out}: {results['failed']}")
            return 1
        saved = json.loads(out_json.read_text())
        update = {"sections": chosen, "command": command, "machine": results["machine"]}
        saved.setdefault("updates", []).append(update | {"seconds": seconds})
        for name in chosen:
            if name in results:
                saved[name] = results[name]
        results, command, seconds = saved, saved["command"], saved["seconds"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(render(results, gpu, command, seconds))
    out_json.write_text(json.dumps(results, indent=1) + "\n")
    print(f"wrote {args.out} and {out_json} in {seconds / 60:.1f} min")
    return 1 if results.get("failed") else 0


if __name__ == "__main__":
    torch.manual_seed(0)
    sys.exit(main())

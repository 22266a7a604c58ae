"""The benchmarks compare like with like: ECNF agrees with the peers it is timed against, and
the harness runs end to end (tiny sizes) and writes a well-formed results file.

No timing is asserted here: timings are noisy and belong in the benchmark's output.
"""

import json
import re
from pathlib import Path

import pytest
import torch
from flow_matching.solver import ODESolver
from torchcfm.conditional_flow_matching import ConditionalFlowMatcher
from torchdiffeq import odeint

from benchmarks import gpu, run_all
from benchmarks.sampling import floor_solve, peer_solve
from ecnf import flow_matching_loss, integrate, load

ROOT = Path(__file__).resolve().parents[1]
NETWORKS = {
    "mlp": ("checkpoints/2d/moons_otcfm.safetensors", 32),
    "unet": ("checkpoints/images/digits_unet_fm.safetensors", 3),
}


def network(name: str):
    path, batch = NETWORKS[name]
    net = load(ROOT / path, device="cpu", dtype=torch.float64)
    x0 = torch.randn(
        (batch, *net.config.data_shape),
        generator=torch.Generator().manual_seed(0),
        dtype=torch.float64,
    )
    return net, x0


@pytest.mark.parametrize("name", list(NETWORKS))
@pytest.mark.parametrize("method", ["euler", "midpoint"])
def test_ecnf_matches_torchdiffeq_and_flow_matching_on_the_same_grid(name, method):
    net, x0 = network(name)
    steps = 7
    ours = integrate(net, x0, method=method, steps=steps).x
    grid = torch.linspace(0.0, 1.0, steps + 1, dtype=torch.float64)
    theirs = odeint(lambda t, x: net(x, t.expand(x.shape[0])), x0, grid, method=method)[-1]
    solver = ODESolver(velocity_model=lambda x, t: net(x, t.expand(x.shape[0])))
    fm = solver.sample(x_init=x0, step_size=None, method=method, time_grid=grid)
    torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)
    torch.testing.assert_close(ours, fm, atol=1e-12, rtol=0)
    torch.testing.assert_close(ours, floor_solve(net, x0, method, steps), atol=1e-12, rtol=0)


@pytest.mark.parametrize("name", list(NETWORKS))
def test_rk4_is_the_floor_and_the_peers_agree_with_each_other(name):
    net, x0 = network(name)
    ours = integrate(net, x0, method="rk4", steps=5).x
    torch.testing.assert_close(ours, floor_solve(net, x0, "rk4", 5), atol=1e-12, rtol=0)
    theirs = peer_solve("torchdiffeq", net, x0, "rk4", 5)()
    fm = peer_solve("flow_matching", net, x0, "rk4", 5)()
    torch.testing.assert_close(theirs, fm, atol=1e-12, rtol=0)


def test_classical_rk4_and_the_peers_3_8_rule_differ_at_fourth_order():
    net, x0 = network("mlp")
    gaps = []
    for steps in (8, 16):
        ours = integrate(net, x0, method="rk4", steps=steps).x
        theirs = peer_solve("torchdiffeq", net, x0, "rk4", steps)()
        gaps.append(float((ours - theirs).abs().max()))
    # both are fourth-order: their difference shrinks about 16x when the step halves
    assert 0 < gaps[1] < gaps[0] / 8, gaps


@pytest.mark.parametrize("name", list(NETWORKS))
def test_dopri5_spends_the_same_evaluations_and_lands_on_the_same_point(name):
    net, x0 = network(name)
    calls = {"n": 0}

    def counted(x, t):
        calls["n"] += 1
        return net(x, t)

    sol = integrate(counted, x0, method="dopri5", rtol=1e-4, atol=1e-4)
    assert sol.nfe == calls["n"]
    for peer in ("torchdiffeq", "flow_matching"):
        calls["n"] = 0
        theirs = peer_solve(peer, counted, x0, "dopri5", None, rtol=1e-4, atol=1e-4)()
        assert calls["n"] == sol.nfe, peer
        torch.testing.assert_close(sol.x, theirs, atol=1e-12, rtol=0)


def test_flow_matching_loss_equals_torchcfm_on_the_same_draws():
    net, _ = network("mlp")
    g = torch.Generator().manual_seed(3)
    x0, x1 = (torch.randn(64, 2, generator=g, dtype=torch.float64) for _ in range(2))
    t = torch.rand(64, generator=g, dtype=torch.float64)
    ours = flow_matching_loss(net, x0, x1, t=t)
    t_, xt, ut = ConditionalFlowMatcher(sigma=0.0).sample_location_and_conditional_flow(x0, x1, t=t)
    theirs = torch.mean((net(xt, t_) - ut) ** 2)
    torch.testing.assert_close(ours, theirs, atol=1e-12, rtol=0)


def test_gpu_script_says_so_without_cuda(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert gpu.main(["--out", str(tmp_path / "gpu.json")]) == 0
    assert gpu.main(["--out", str(tmp_path / "gpu.json"), "--require-cuda"]) == 1
    assert "no CUDA device" in capsys.readouterr().out
    assert not (tmp_path / "gpu.json").exists()


def table_rows_are_well_formed(text: str) -> int:
    """Every markdown table has the header's number of cells on each row; returns the count."""
    tables = re.findall(r"((?:^\|.*\|\n)+)", text, flags=re.MULTILINE)
    for table in tables:
        rows = table.strip().splitlines()
        assert re.fullmatch(r"\|(---\|)+", rows[1]), rows[1]
        widths = {row.count("|") for row in rows}
        assert len(widths) == 1, table
    return len(tables)


@pytest.mark.slow
def test_harness_runs_end_to_end_and_writes_a_well_formed_file(tmp_path):
    gpu_json = tmp_path / "gpu.json"
    assert gpu.main(["--device", "cpu", "--quick", "--no-bf16", "--out", str(gpu_json)]) == 0
    gpu_result = json.loads(gpu_json.read_text())
    statuses = {r["variant"]: r["status"] for r in gpu_result["rows"] if r["precision"] == "fp32"}
    assert statuses["ecnf eager"] == statuses["floor eager"] == "ok"
    assert statuses["ecnf + CUDA graph"] == "skipped: needs CUDA"
    eager = [r for r in gpu_result["rows"] if r["status"] == "ok"]
    assert all(r["max_abs_diff_vs_first"] < 1e-5 for r in eager)

    out = tmp_path / "RESULTS.md"
    missing = tmp_path / "none.json"
    assert run_all.main(["--quick", "--out", str(out), "--gpu-json", str(missing)]) == 0
    assert "Not measured in this run" in out.read_text()
    # a GPU result that comes later is added without measuring again
    assert run_all.main(["--render-only", "--out", str(out), "--gpu-json", str(gpu_json)]) == 0
    text = out.read_text()
    assert gpu_result["model"]["config"] in text
    for heading in (
        "## Where ECNF stands",
        "## 1. Sampling overhead",
        "## 2. Adaptive solving",
        "## 3. Training throughput",
        "## 4. Quality per solver budget",
        "## 5. Interactive latency",
        "## 6. GPU sampling throughput",
    ):
        assert heading in text, heading
    assert f"torch {torch.__version__}" in text
    assert "python -m benchmarks.run_all --quick" in text
    assert re.search(r"Date: \d{4}-\d\d-\d\d \d\d:\d\d UTC", text)
    assert table_rows_are_well_formed(text) >= 8
    results = json.loads(out.with_suffix(".json").read_text())
    assert {"machine", "sampling", "training", "quality", "latency"} <= set(results)
    assert all(
        r["max_abs_diff_from_ecnf"]["floor"] < 1e-5 for r in results["sampling"]["fixed"]["rows"]
    )


@pytest.mark.parametrize("cores, least", [(1, 0.75), (2, 0.5), (4, 0.0), (16, 0.0)])
def test_least_possible_ot_share_is_the_scheduling_bound(cores, least):
    # a step needs S = 10 ms of one core, an assignment A = 30 ms of CPU: no schedule on
    # `cores` cores runs a step in less than max(S, (S + A) / cores)
    from benchmarks.training import ot_share_bound

    loop = {"network": "net", "steps_per_loop": 4, "time_s": {"ecnf I-CFM": {"median": 0.04}}}
    couplings = [{"network": "net", "time_s": {"ecnf auto": {"median": 0.03}}}]
    assert ot_share_bound(loop, couplings, cores) == pytest.approx(least)


def test_a_loss_counts_only_when_the_retiming_reads_as_a_loss_too():
    from benchmarks.common import interleaved_retimed, lost

    times = {"ecnf": [1.1, 1.2, 1.1, 0.9], "peer": [1.0, 1.0, 1.0, 1.0]}
    assert lost(times, "ecnf", "peer")  # slower in three rounds of four
    assert not lost(times, "ecnf", "peer", mark=1.15)
    assert not lost({"ecnf": [1.1, 0.9, 0.9, 1.1], "peer": [1.0] * 4}, "ecnf", "peer")

    verdicts = iter([True])
    fns = {"ecnf": lambda: None, "peer": lambda: None}
    again, first = interleaved_retimed(fns, lambda t: next(verdicts), repeats=3)
    assert first is not None and len(first["ecnf"]) == len(again["ecnf"]) == 3
    assert again["ecnf"] != first["ecnf"]  # a second, separate timing
    kept, none = interleaved_retimed(fns, lambda t: False, repeats=2)
    assert none is None and len(kept["peer"]) == 2


def test_meanflow_benchmark_measures_the_jvp_price_and_reads_the_goals(tmp_path):
    from benchmarks import meanflow

    out = tmp_path / "meanflow.md"
    assert meanflow.main(["--quick", "--out", str(out)]) == 0
    text = out.read_text()
    row = next(line for line in text.splitlines() if line.startswith("| MLP 256x3"))
    fm_ms, mf_ms = (float(cell) for cell in row.split("|")[2:4])
    assert fm_ms > 0 and mf_ms > 0
    assert "One-step goals" in text and "Fashion-MNIST" in text


def test_drawn_benchmark_trains_the_playground_defaults_on_each_drawing(tmp_path):
    from benchmarks import drawn

    out = tmp_path / "drawn.md"
    assert drawn.main(["--quick", "--out", str(out)]) == 0
    result = json.loads(out.with_suffix(".json").read_text())
    assert [r["drawing"] for r in result["rows"]] == [d for d in drawn.drawings() for _ in "ab"]
    assert [r["iterations"] for r in result["rows"][:2]] == [30, 60]
    for row in result["rows"]:
        assert row["train_s"] > 0 and 0 < row["floor"] < row["dopri5"]
        assert row["rk4_nfe"] == 40
    assert out.read_text().count("| not met |") + out.read_text().count("| met |") == 6

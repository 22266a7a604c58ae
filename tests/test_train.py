"""Training: exact resume, NaN guard, logs and previews, refusal to overwrite, reflow, DDP."""

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

import ecnf._run as run_mod
from ecnf.callbacks import Callback
from ecnf.checkpoint import read_checkpoint
from ecnf.config import TrainConfig
from ecnf.data import sample_toy
from ecnf.losses import LossConfig
from ecnf.metrics import wasserstein2
from ecnf.nets import MLPConfig, UNetConfig
from ecnf.solvers import integrate
from ecnf.train import TrainingDiverged, fit


class StopAt(Callback):
    def __init__(self, step):
        self.step, self.seen = step, 0

    def on_log(self, record):
        self.seen = record["step"]

    def should_stop(self):
        return self.seen >= self.step


class Recorder(Callback):
    def __init__(self):
        self.events, self.previews, self.trajectories = [], [], []

    def on_start(self, step, total):
        self.events.append(("start", step, total))

    def on_log(self, record):
        self.events.append(("log", record))

    def on_preview(self, step, samples):
        self.previews.append((step, samples))

    def on_preview_trajectory(self, step, times, states):
        self.trajectories.append((step, times, states))

    def on_end(self, step, reason):
        self.events.append(("end", step, reason))


def tiny(tmp_path, **kw):
    base = {
        "data": "moons",
        "model": MLPConfig(data_shape=(2,), width=32, depth=2),
        "iterations": 20,
        "batch_size": 64,
        "lr": 1e-3,
        "log_every": 2,
        "checkpoint_every": 10,
        "out_dir": str(tmp_path / "run"),
        "device": "cpu",
    }
    base.update(kw)
    return TrainConfig(**base)


def state_of(result):
    return [p.detach().clone() for p in result.model.parameters()] + [
        p.detach().clone() for p in result.ema.model.parameters()
    ]


CASES = {
    "fm": {},
    "consistency": {"loss": LossConfig("consistency", dt=0.05, fm_weight=0.5, coupling="ot")},
    "otcfm": {"loss": LossConfig("otcfm")},
    "otcfm-3-ahead": {"loss": LossConfig("otcfm"), "ot_workers": 3, "source": "8gaussians"},
    "digits-otcfm-2-ahead": {
        "data": "digits",
        "loss": LossConfig("otcfm"),
        "ot_workers": 2,
        "model": UNetConfig(
            data_shape=(1, 8, 8), channels=8, channel_mult=(1,), attention_levels=()
        ),
        "batch_size": 16,
    },
    "conditional-otcfm-1-ahead": {
        "data": "8gaussians",
        "loss": LossConfig("otcfm"),
        "ot_workers": 1,
        "model": MLPConfig(data_shape=(2,), width=32, depth=2, num_classes=8),
        "cond_drop": 0.2,
    },
    "conditional-digits-consistency": {
        "data": "digits",
        "loss": LossConfig("consistency", dt=0.05),
        "model": UNetConfig(
            data_shape=(1, 8, 8), channels=8, channel_mult=(1,), attention_levels=(), num_classes=10
        ),
        "batch_size": 16,
    },
    "digits-unet": {
        "data": "digits",
        "model": UNetConfig(
            data_shape=(1, 8, 8), channels=8, channel_mult=(1, 2), attention_levels=(), dropout=0.1
        ),
        "batch_size": 16,
        "flip": True,
    },
}


@pytest.mark.parametrize("case", list(CASES))
def test_resume_is_exact(tmp_path, case):
    full = fit(tiny(tmp_path / "a", **CASES[case]))
    assert full.reason == "completed" and full.step == 20

    cfg = tiny(tmp_path / "b", **CASES[case])
    part = fit(cfg, [StopAt(8)])
    assert part.reason == "stopped" and part.step == 8
    assert read_checkpoint(part.checkpoint).train_state["step"] == 8
    resumed = fit(cfg, resume=True)
    assert resumed.step == 20
    for a, b in zip(state_of(full), state_of(resumed), strict=True):
        assert torch.equal(a, b)
    ck_a, ck_b = read_checkpoint(full.checkpoint), read_checkpoint(resumed.checkpoint)
    for k, v in ck_a.optimizer_state["state"][0].items():
        assert torch.equal(torch.as_tensor(v), torch.as_tensor(ck_b.optimizer_state["state"][0][k]))
    # the log of the resumed run holds the same losses as the uninterrupted one
    log_a = [
        json.loads(x)
        for x in (Path(cfg.out_dir).parent.parent / "a/run/metrics.jsonl").read_text().splitlines()
    ]
    log_b = [json.loads(x) for x in (Path(cfg.out_dir) / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in log_a] == [r["step"] for r in log_b]
    assert [r["loss"] for r in log_a] == pytest.approx([r["loss"] for r in log_b], rel=1e-6)


def test_training_can_be_extended(tmp_path):
    cfg = tiny(tmp_path, iterations=10)
    fit(cfg, command="first")
    longer = fit(cfg.replace(iterations=16), resume=True, command="second")
    assert longer.step == 16
    meta = read_checkpoint(longer.checkpoint).metadata
    assert meta["steps"] == 16 and meta["status"] == "completed"
    assert meta["command"] == "first" and meta["resumed_with"] == ["second"]


def test_nan_guard_keeps_last_good_checkpoint(tmp_path, monkeypatch):
    cfg = tiny(tmp_path)
    real = run_mod.compute_loss
    calls = {"n": 0}

    def poisoned(*args, **kwargs):
        out = real(*args, **kwargs)
        calls["n"] += 1
        if calls["n"] > 13:
            out.loss = out.loss * float("nan")
        return out

    monkeypatch.setattr(run_mod, "compute_loss", poisoned)
    with pytest.raises(TrainingDiverged, match=r"step 13.*last good checkpoint"):
        fit(cfg)
    ck = read_checkpoint(Path(cfg.out_dir) / "checkpoint.safetensors")
    assert ck.train_state["step"] == 10
    assert all(torch.isfinite(v).all() for v in ck.model_state.values())


def test_exploding_loss_stops(tmp_path):
    with pytest.raises(TrainingDiverged, match="loss"):
        fit(tiny(tmp_path, max_loss=1e-9))


def test_refuses_to_overwrite_and_resume_needs_checkpoint(tmp_path):
    cfg = tiny(tmp_path, iterations=2)
    with pytest.raises(FileNotFoundError, match="cannot resume"):
        fit(cfg, resume=True)
    fit(cfg)
    with pytest.raises(ValueError, match="already exists"):
        fit(cfg)
    assert fit(cfg, overwrite=True).step == 2


def test_callbacks_logs_and_previews(tmp_path):
    rec = Recorder()
    cfg = tiny(tmp_path, iterations=6, sample_every=3, num_preview=10)
    fit(cfg, [rec])
    kinds = [e[0] for e in rec.events]
    assert kinds[0] == "start" and kinds[-1] == "end" and rec.events[-1][2] == "completed"
    logs = [e[1] for e in rec.events if e[0] == "log"]
    assert [r["step"] for r in logs] == [2, 4, 6]
    for key in ("loss", "lr", "grad_norm", "steps_per_s", "samples_per_s", "eta_s", "elapsed_s"):
        assert all(key in r for r in logs)
    assert logs[-1]["eta_s"] == 0
    assert [s for s, _ in rec.previews] == [3, 6]
    assert rec.previews[0][1].shape == (10, 2)
    # each preview's trajectory: the same solve, from the fixed noise to those samples
    step, times, states = rec.trajectories[-1]
    torch.testing.assert_close(times, torch.tensor([0.0, 0.2, 0.5, 0.8, 1.0]))
    assert step == 6 and states.shape == (5, 10, 2) and torch.equal(states[-1], rec.previews[-1][1])
    torch.testing.assert_close(states[0], rec.trajectories[0][2][0])  # the same noise each time
    lines = (Path(cfg.out_dir) / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(x)["step"] for x in lines] == [2, 4, 6]


def test_ema_of_a_short_run_tracks_the_model(tmp_path):
    result = fit(tiny(tmp_path, iterations=40, ema_decay=0.999))
    assert result.ema.num_updates == 40
    assert result.ema.current_decay() < 0.9  # the warm-up ramp is still short of 0.999
    fixed = fit(tiny(tmp_path / "fixed", iterations=40, ema_decay=0.999, ema_warmup=False))

    def gap(r):
        pairs = zip(r.model.parameters(), r.ema.model.parameters(), strict=True)
        return sum((a - b).norm() for a, b in pairs)

    assert gap(result) < 0.5 * gap(fixed)


def test_warmup_schedule(tmp_path):
    rec = Recorder()
    fit(tiny(tmp_path, iterations=8, warmup_iterations=8), [rec])
    lrs = [e[1]["lr"] for e in rec.events if e[0] == "log"]
    assert lrs == pytest.approx([1e-3 * s / 8 for s in (2, 4, 6, 8)])


def test_cosine_schedule(tmp_path):
    rec = Recorder()
    fit(tiny(tmp_path, iterations=8, warmup_iterations=2, lr_schedule="cosine", log_every=1), [rec])
    lrs = [e[1]["lr"] for e in rec.events if e[0] == "log"]
    assert lrs[:2] == pytest.approx([5e-4, 1e-3])  # warm-up
    expected = [1e-3 * 0.5 * (1 + math.cos(math.pi * k / 6)) for k in range(6)]
    assert lrs[2:] == pytest.approx(expected)  # then cosine from the peak toward zero


def test_otcfm_learns_moons(tmp_path):
    cfg = tiny(
        tmp_path,
        iterations=400,
        batch_size=128,
        lr=3e-3,
        ema_decay=0.99,
        loss=LossConfig("otcfm"),
        model=MLPConfig(data_shape=(2,), width=64, depth=3),
    )
    result = fit(cfg)
    x0 = torch.randn(800, 2, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        untrained = integrate(lambda x, t: torch.zeros_like(x), x0, steps=1).x
    samples = integrate(result.ema, x0, method="rk4", steps=10).x
    data = sample_toy("moons", 800, generator=torch.Generator().manual_seed(1))
    assert wasserstein2(samples, data) < 0.5 * wasserstein2(untrained, data)


def test_reflow_trains_on_teacher_pairs(tmp_path):
    teacher = fit(tiny(tmp_path / "t", iterations=4))
    cfg = tiny(
        tmp_path / "r",
        iterations=4,
        loss=LossConfig("reflow"),
        teacher=str(teacher.checkpoint),
        teacher_steps=2,
    )
    result = fit(cfg)
    assert result.step == 4 and result.history[-1]["loss"] > 0


def test_init_starts_from_a_checkpoints_ema_weights(tmp_path):
    teacher = fit(tiny(tmp_path / "t", iterations=6))
    # One step at a negligible learning rate leaves the weights where init put them.
    student = fit(tiny(tmp_path / "s", iterations=1, lr=1e-12, init=str(teacher.checkpoint)))
    for ours, theirs in zip(
        student.model.parameters(), teacher.ema.model.parameters(), strict=True
    ):
        torch.testing.assert_close(ours, theirs, atol=1e-8, rtol=0)
    fresh = fit(tiny(tmp_path / "f", iterations=1, lr=1e-12))
    assert not torch.allclose(fresh.model.output.weight, student.model.output.weight)
    other = tiny(
        tmp_path / "o",
        iterations=1,
        model=MLPConfig(data_shape=(2,), width=16, depth=2),
        init=str(teacher.checkpoint),
    )
    with pytest.raises(ValueError, match=r"init checkpoint .* another architecture"):
        fit(other)


def test_reflow_requires_teacher():
    with pytest.raises(ValueError, match="teacher"):
        TrainConfig(loss=LossConfig("reflow"))


@pytest.mark.parametrize(
    ("kw", "word"),
    [
        ({"iterations": 0}, "iterations"),
        ({"lr": -1.0}, "lr"),
        ({"precision": "fp8"}, "precision"),
        ({"ema_decay": 2.0}, "ema_decay"),
        ({"batch_size": 0}, "batch_size"),
        ({"teacher_method": "dopri5"}, "teacher_method"),
    ],
)
def test_bad_config(kw, word):
    with pytest.raises(ValueError, match=word):
        TrainConfig(**kw)


def test_config_round_trip_through_json():
    cfg = TrainConfig(
        data="digits",
        model=UNetConfig(data_shape=(1, 8, 8), channels=8, channel_mult=(1, 2)),
        loss=LossConfig("consistency", dt=0.05),
    )
    again = TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict())))
    assert again == cfg


@pytest.mark.slow
@pytest.mark.parametrize("loss", ["fm", "otcfm", "otcfm-conditional"])
def test_ddp_two_cpu_processes(tmp_path, loss):
    out = tmp_path / "ddp"
    worker = Path(__file__).with_name("ddp_worker.py")
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    cmd = [
        sys.executable,
        "-m",
        "torch.distributed.run",
        "--nproc_per_node",
        "2",
        "--master_port",
        "29533",
        str(worker),
        str(out),
        loss,
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=240)
    assert proc.returncode == 0, proc.stderr[-3000:]
    p0, p1 = torch.load(out / "rank0.pt"), torch.load(out / "rank1.pt")
    assert p0.keys() == p1.keys()
    for name in p0:
        assert torch.equal(p0[name], p1[name])  # gradients were averaged: same weights
    ck = read_checkpoint(out / "checkpoint.safetensors")
    assert ck.train_state["step"] == 6 and len(ck.train_state["streams"]) == 2
    for name in p0:
        assert torch.equal(ck.model_state[name], p0[name])
    assert "2 x CPU" in ck.metadata["hardware"]


def test_sigterm_saves_and_resumes(tmp_path):
    out = tmp_path / "term"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(Path(__file__).parents[1])}
    cmd = [
        sys.executable,
        "-m",
        "ecnf",
        "train",
        "--data",
        "moons",
        "--width",
        "16",
        "--depth",
        "2",
        "--iterations",
        "100000",
        "--batch-size",
        "32",
        "--log-every",
        "1",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(out),
    ]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    log = out / "metrics.jsonl"
    for _ in range(600):  # wait until training is under way
        if log.exists() and len(log.read_text().splitlines()) >= 5:
            break
        time.sleep(0.05)
    proc.terminate()
    stdout, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "--resume" in stdout
    ck = read_checkpoint(out / "checkpoint.safetensors")
    assert ck.metadata["status"] == "interrupted" and ck.train_state["step"] >= 5


@pytest.mark.parametrize("extra", [{}, {"source": "8gaussians"}])
def test_ot_pairs_solved_ahead_train_the_same_model(tmp_path, extra):
    # solving the couplings in background threads, any number of batches ahead, changes
    # nothing in what is trained
    loss = LossConfig("otcfm")
    runs = [fit(tiny(tmp_path / str(w), loss=loss, ot_workers=w, **extra)) for w in (0, 1, 4)]
    for other in runs[1:]:
        for a, b in zip(state_of(runs[0]), state_of(other), strict=True):
            assert torch.equal(a, b)


def test_old_step_names_still_build_the_same_config():
    new = TrainConfig(iterations=30, warmup_iterations=5)
    with pytest.warns(DeprecationWarning, match="iterations"):
        old = TrainConfig(steps=30, warmup_steps=5)
    assert old == new
    with pytest.warns(DeprecationWarning, match="TrainConfig.iterations"):
        assert new.steps == 30
    with pytest.warns(DeprecationWarning):
        assert new.replace(steps=40).iterations == 40
    with pytest.raises(TypeError, match="both"):
        TrainConfig(steps=3, iterations=4)
    # configs stored in checkpoints before the rename load without a warning
    stored = new.to_dict()
    stored["steps"], stored["warmup_steps"] = (
        stored.pop("iterations"),
        stored.pop("warmup_iterations"),
    )
    assert TrainConfig.from_dict(stored) == new

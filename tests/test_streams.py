"""Streaming sampling and training: same numbers as integrate/fit, and a clean stop."""

import itertools

import pytest
import torch

from ecnf import MLPConfig, TrainConfig, integrate, read_checkpoint
from ecnf.solvers import FIXED_METHODS
from ecnf.streams import fit_stream, integrate_stream


def rotation(x, t):
    """A time-dependent rotation field, so every solver's steps differ from the others'."""
    return torch.stack([-x[:, 1], x[:, 0]], dim=1) * (1.0 + t[:, None])


@pytest.mark.parametrize("method", list(FIXED_METHODS))
@pytest.mark.parametrize(("steps", "updates"), [(7, 3), (10, None), (5, 50)])
def test_integrate_stream_matches_integrate(method, steps, updates):
    x0 = torch.randn(6, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    progress = list(integrate_stream(rotation, x0, method=method, steps=steps, updates=updates))
    whole = integrate(rotation, x0, method=method, steps=steps, return_trajectory=True)
    assert progress[0].step == 0 and progress[0].nfe == 0 and torch.equal(progress[0].x, x0)
    assert progress[-1].step == steps and progress[-1].t == 1.0
    assert progress[-1].nfe == whole.nfe == steps * FIXED_METHODS[method]
    assert len(progress) - 1 == (steps if updates is None else min(updates, steps))
    # every streamed state is the state integrate reaches at that grid point, bit for bit
    for p in progress:
        assert torch.equal(p.x, whole.trajectory[p.step])
        assert p.t == pytest.approx(p.step / steps)
    assert all(a.seconds <= b.seconds for a, b in itertools.pairwise(progress))


def test_integrate_stream_rejects_adaptive_and_bad_steps():
    with pytest.raises(ValueError, match="dopri5"):
        next(integrate_stream(rotation, torch.zeros(1, 2), method="dopri5"))
    with pytest.raises(ValueError, match="steps must be an integer >= 1, got 0"):
        next(integrate_stream(rotation, torch.zeros(1, 2), steps=0))


def tiny_config(out_dir, **overrides) -> TrainConfig:
    config = {
        "data": "moons",
        "model": MLPConfig(width=16, depth=1),
        "iterations": 40,
        "batch_size": 32,
        "log_every": 5,
        "sample_every": 20,
        "num_preview": 50,
        "out_dir": str(out_dir),
    }
    return TrainConfig(**(config | overrides))


def test_fit_stream_reports_logs_previews_and_result(tmp_path):
    events = list(fit_stream(tiny_config(tmp_path)))
    kinds = [(e.kind, e.step) for e in events]
    assert [s for k, s in kinds if k == "log"] == list(range(5, 41, 5))
    assert [s for k, s in kinds if k == "preview"] == [20, 40]
    assert kinds[-1] == ("done", 40)
    result = events[-1].result
    assert result.reason == "completed" and result.step == 40
    assert [e.record for e in events if e.kind == "log"] == result.history
    previews = [e.samples for e in events if e.kind == "preview"]
    assert all(p.shape == (50, 2) and torch.isfinite(p).all() for p in previews)


def test_closing_fit_stream_stops_the_run(tmp_path):
    stream = fit_stream(tiny_config(tmp_path, iterations=100_000, log_every=2))
    first = next(stream)
    assert first.kind == "log"
    stream.close()  # waits for the training thread, which stops at its next step
    checkpoint = read_checkpoint(tmp_path / "checkpoint.safetensors")
    assert checkpoint.metadata["status"] == "stopped"
    assert 2 <= checkpoint.train_state["step"] < 100_000


def test_fit_stream_raises_fit_errors(tmp_path):
    with pytest.raises(ValueError, match="data_shape"):
        list(fit_stream(tiny_config(tmp_path, model=MLPConfig(data_shape=(3,)))))

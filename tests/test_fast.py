"""The sampling path: exact eager fp32 on the CPU, and bf16 autocast within its stated bound."""

import warnings
from pathlib import Path

import pytest
import torch

from ecnf import load
from ecnf.fast import (
    FAST_TOLERANCE,
    FastSolver,
    difference,
    fast_path_applies,
    is_cached,
    sample,
)
from ecnf.nets import UNetConfig, build_model
from ecnf.solvers import integrate

SHIPPED = Path(__file__).resolve().parents[1] / "checkpoints/images/fmnist_unet_fm.safetensors"


@pytest.fixture(scope="module")
def unet():
    torch.manual_seed(0)
    config = UNetConfig(data_shape=(3, 16, 16), channels=16, channel_mult=(1, 2), num_heads=2)
    model = build_model(config).eval()
    with torch.no_grad():  # trained-like weights: every layer contributes
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model


def test_on_the_cpu_sample_is_integrate_exactly(unet):
    x0 = torch.randn(4, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    assert not fast_path_applies(unet, "rk4")
    for kw in ({"method": "rk4", "steps": 3}, {"method": "dopri5", "rtol": 1e-3, "atol": 1e-3}):
        ours, ref = sample(unet, x0, **kw), integrate(unet, x0, **kw)
        assert torch.equal(ours.x, ref.x) and ours.nfe == ref.nfe
    traj = sample(unet, x0, method="euler", steps=2, return_trajectory=True).trajectory
    assert traj.shape == (3, 4, 3, 16, 16)
    assert not is_cached(unet, tuple(x0.shape), "euler", 2)  # nothing is built on a CPU
    with pytest.raises(ValueError, match="needs a CUDA model"):
        sample(unet, x0, method="euler", steps=2, fast=True)
    with pytest.raises(ValueError, match="cuda_graph=True needs a model on a CUDA device"):
        FastSolver(unet, tuple(x0.shape), "euler", 2)


@pytest.mark.parametrize("model", ["unet", "shipped"])
def test_bf16_autocast_stays_within_the_stated_tolerance(unet, model):
    """The fast path's precision change, measured where it can run here (CPU autocast), on a
    random UNet and on the shipped Fashion-MNIST one; the compiled and graphed variants are
    measured against the same bound by benchmarks/gpu.py."""
    if model == "shipped":
        unet = load(SHIPPED, device="cpu")
    shape = (8, *unet.config.data_shape)
    x0 = torch.randn(shape, generator=torch.Generator().manual_seed(2))
    with torch.no_grad():
        reference = integrate(unet, x0, method="euler", steps=20).x
    solver = FastSolver(unet, shape, "euler", 20, compile=False, cuda_graph=False)
    out = solver(x0)
    assert out.x.dtype == torch.float32 and out.nfe == 20
    assert 0 < difference(out.x, reference) <= FAST_TOLERANCE["bf16"]  # bf16 ran, within bound
    fp32 = FastSolver(unet, shape, "euler", 20, precision="fp32", compile=False, cuda_graph=False)
    assert difference(fp32(x0).x, reference) <= FAST_TOLERANCE["fp32"]
    with pytest.raises(ValueError, match="x0 must have shape"):
        solver(x0[:2])


def test_a_failing_fast_path_falls_back_to_eager(unet, monkeypatch):
    """Where compilation or graph capture fails (a driver, a model torch.compile cannot
    trace), sampling still works: eager fp32, with a warning, once per solve."""
    import ecnf.fast as fast

    def broken(*args, **kwargs):
        raise RuntimeError("capture failed")

    monkeypatch.setattr(fast, "fast_path_applies", lambda model, method, device=None: True)
    monkeypatch.setattr(fast, "FastSolver", broken)
    x0 = torch.randn(2, 3, 16, 16, generator=torch.Generator().manual_seed(3))
    with pytest.warns(UserWarning, match="fast path failed .*capture failed"):
        out = fast.sample(unet, x0, method="euler", steps=2)
    assert torch.equal(out.x, integrate(unet, x0, method="euler", steps=2).x)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no second warning for the same solve
        fast.sample(unet, x0, method="euler", steps=2)
    with pytest.raises(RuntimeError, match="capture failed"):
        fast.sample(unet, x0, method="euler", steps=3, fast=True)  # required: no fallback

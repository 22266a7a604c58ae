"""Paths and losses: targets re-derived by hand, minimisers reach zero, configs validated."""

import pytest
import torch
from torch import nn

from ecnf.couplings import ot_assignment
from ecnf.losses import (
    LossConfig,
    compute_loss,
    consistency_loss,
    flow_matching_loss,
    make_reflow_pairs,
    ot_cfm_loss,
    reflow_loss,
)
from ecnf.paths import linear_path


class TinyNet(nn.Module):
    def __init__(self, dim=3):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(dim + 1, 16), nn.Tanh(), nn.Linear(16, dim))

    def forward(self, x, t):
        flat = x.flatten(1)
        return self.net(torch.cat([flat, t[:, None]], 1)).view_as(x)


@pytest.fixture
def batch():
    g = torch.Generator().manual_seed(0)
    x0 = torch.randn(32, 3, generator=g, dtype=torch.float64)
    x1 = torch.randn(32, 3, generator=g, dtype=torch.float64) * 2 + 1
    t = torch.rand(32, generator=g, dtype=torch.float64)
    return x0, x1, t


def test_linear_path_by_hand(batch):
    x0, x1, t = batch
    s = linear_path(x0, x1, t)
    for i in range(len(t)):
        torch.testing.assert_close(s.xt[i], (1 - t[i]) * x0[i] + t[i] * x1[i])
    torch.testing.assert_close(s.ut, x1 - x0)
    # endpoints of the path are the endpoints of the pairs
    torch.testing.assert_close(linear_path(x0, x1, torch.zeros_like(t)).xt, x0)
    torch.testing.assert_close(linear_path(x0, x1, torch.ones_like(t)).xt, x1)


def test_linear_path_sigma_is_tube_width():
    x0, x1 = torch.zeros(20000, 2), torch.ones(20000, 2)
    t = torch.full((20000,), 0.3)
    s = linear_path(x0, x1, t, sigma=0.1, generator=torch.Generator().manual_seed(0))
    assert (s.xt - 0.3).std().item() == pytest.approx(0.1, rel=0.03)
    assert (s.xt - 0.3).mean().abs().item() < 3e-3


def test_flow_matching_loss_by_hand(batch):
    x0, x1, t = batch
    net = TinyNet().double()
    loss = flow_matching_loss(net, x0, x1, t=t)
    xt = (1 - t[:, None]) * x0 + t[:, None] * x1
    manual = ((net(xt, t) - (x1 - x0)) ** 2).mean()
    torch.testing.assert_close(loss, manual)


def test_exact_velocity_has_zero_loss():
    # deterministic coupling x1 = x0 + c: the straight flow v = c is the minimiser
    x0 = torch.randn(64, 2)
    c = torch.tensor([1.5, -0.5])
    assert flow_matching_loss(lambda x, t: c.expand_as(x), x0, x0 + c).item() < 1e-12
    x0r, x1r = make_reflow_pairs(lambda x, t: c.expand_as(x), x0, steps=3)
    torch.testing.assert_close(x1r, x0 + c)
    out = compute_loss(LossConfig("reflow"), lambda x, t: c.expand_as(x), x0r, x1r)
    assert out.loss.item() < 1e-12


def test_reflow_loss_is_flow_matching_and_says_so():
    x0, x1, t = torch.randn(16, 2), torch.randn(16, 2), torch.rand(16)
    net = TinyNet(dim=2)
    with pytest.warns(DeprecationWarning, match="flow_matching_loss"):
        old = reflow_loss(net, x0, x1, t=t)
    assert torch.equal(old, flow_matching_loss(net, x0, x1, t=t))
    reflow = compute_loss(
        LossConfig("reflow"), net, x0, x1, generator=torch.Generator().manual_seed(1)
    )
    fm = flow_matching_loss(net, x0, x1, generator=torch.Generator().manual_seed(1))
    assert torch.equal(reflow.loss, fm)


def test_ot_cfm_loss_is_fm_on_ot_pairs(batch):
    x0, x1, t = batch
    net = TinyNet().double()
    perm = ot_assignment(x0, x1)
    torch.testing.assert_close(
        ot_cfm_loss(net, x0, x1, t=t), flow_matching_loss(net, x0, x1[perm], t=t)
    )


@pytest.mark.parametrize("num_segments", [1, 2, 4])
def test_consistency_loss_by_hand(batch, num_segments):
    x0, x1, t = batch
    net, target = TinyNet().double(), TinyNet().double()
    dt, alpha = 0.1, 0.7
    out = consistency_loss(
        net, x0, x1, target=target, t=t, dt=dt, alpha=alpha, num_segments=num_segments
    )
    l_vel, l_path = 0.0, 0.0
    for i in range(len(t)):
        ti = float(t[i])
        end = (int(ti * num_segments) + 1) / num_segments
        ri = min(ti + dt, end)
        xt = (1 - ti) * x0[i] + ti * x1[i]
        xr = (1 - ri) * x0[i] + ri * x1[i]
        vt = net(xt[None], t[i : i + 1])[0]
        vr = target(xr[None], torch.tensor([ri], dtype=torch.float64))[0]
        ft, fr = xt + (end - ti) * vt, xr + (end - ri) * vr
        if ri == end:  # boundary condition: the target is the true point of the path
            torch.testing.assert_close(fr, xr)
        l_vel = l_vel + ((vt - vr) ** 2).mean() / len(t)
        l_path = l_path + ((ft - fr) ** 2).mean() / len(t)
    torch.testing.assert_close(out.terms["vel"], l_vel.detach())
    torch.testing.assert_close(out.terms["path"], l_path.detach())
    torch.testing.assert_close(out.loss, l_vel + alpha * l_path)


def test_consistency_targets_carry_no_gradient(batch):
    x0, x1, t = batch
    net = TinyNet().double()
    consistency_loss(net, x0, x1, t=t, dt=0.05).loss.backward()
    grads = [p.grad.clone() for p in net.parameters()]
    frozen = TinyNet().double()
    frozen.load_state_dict(net.state_dict())
    frozen.requires_grad_(False)
    net.zero_grad()
    consistency_loss(net, x0, x1, t=t, dt=0.05, target=frozen).loss.backward()
    for g, p in zip(grads, net.parameters(), strict=True):
        torch.testing.assert_close(g, p.grad)


def test_consistency_of_straight_flow_is_zero():
    x0 = torch.randn(128, 2)
    c = torch.tensor([2.0, 1.0])
    out = consistency_loss(lambda x, t: c.expand_as(x), x0, x0 + c, dt=0.05, num_segments=3)
    assert out.loss.item() < 1e-10


def test_compute_loss_dispatch_and_fm_weight(batch):
    x0, x1, _ = batch
    net = TinyNet().double()
    torch.manual_seed(3)
    fm = compute_loss(LossConfig("fm"), net, x0, x1).loss
    torch.manual_seed(3)
    assert torch.allclose(fm, flow_matching_loss(net, x0, x1))
    g = torch.Generator().manual_seed(5)
    cfg = LossConfig("consistency", fm_weight=0.5, dt=0.05)
    out = compute_loss(cfg, net, x0, x1, generator=g)
    assert set(out.terms) == {"vel", "path", "fm"}
    assert out.loss.item() > out.terms["vel"].item()
    assert compute_loss(LossConfig("otcfm"), net, x0, x1).loss.requires_grad


@pytest.mark.parametrize(
    ("kwargs", "word"),
    [
        ({"name": "score"}, "loss"),
        ({"name": "consistency", "dt": 0.0}, "dt"),
        ({"name": "consistency", "dt": 0.6, "num_segments": 2}, "dt"),
        ({"num_segments": 0}, "num_segments"),
        ({"sigma": -0.1}, "sigma"),
        ({"coupling": "sinkhorn"}, "coupling"),
    ],
)
def test_bad_loss_config(kwargs, word):
    with pytest.raises(ValueError, match=word):
        LossConfig(**kwargs)


def test_mismatched_shapes_are_named():
    with pytest.raises(ValueError, match="x0 and x1"):
        flow_matching_loss(lambda x, t: x, torch.zeros(4, 2), torch.zeros(4, 3))
    with pytest.raises(ValueError, match="t must have shape"):
        flow_matching_loss(lambda x, t: x, torch.zeros(4, 2), torch.zeros(4, 2), t=torch.zeros(3))

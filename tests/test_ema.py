"""EMA: the closed-form geometric average, frozen copy, state round trip."""

import pytest
import torch
from torch import nn

from ecnf.ema import EMA, ema_update


def test_ema_matches_closed_form():
    net = nn.Linear(3, 2)
    ema = EMA(net, decay=0.9)
    start = ema.model.weight.clone()
    with torch.no_grad():
        net.weight.fill_(2.0)
    for _ in range(25):
        ema.update(net)
    # e_n = p + decay^n (e_0 - p) for constant parameters p
    expected = 2.0 + 0.9**25 * (start - 2.0)
    torch.testing.assert_close(ema.model.weight, expected)
    assert ema.num_updates == 25


def test_ema_is_frozen_and_in_eval_mode():
    net = nn.Sequential(nn.Linear(2, 2), nn.Dropout(0.5))
    ema = EMA(net)
    ema.train()
    assert not ema.model.training
    assert all(not p.requires_grad for p in ema.model.parameters())
    assert ema.decay == 0.999  # seed paper eq. 10 default


def test_decay_limits():
    a, b = nn.Linear(2, 2), nn.Linear(2, 2)
    frozen = b.weight.clone()
    ema_update(a, b, decay=1.0)
    torch.testing.assert_close(b.weight, frozen)
    ema_update(a, b, decay=0.0)
    torch.testing.assert_close(b.weight, a.weight)
    with pytest.raises(ValueError, match="decay"):
        ema_update(a, b, decay=1.5)
    with pytest.raises(ValueError, match="decay"):
        EMA(a, decay=-0.1)


def test_buffers_are_copied():
    net = nn.BatchNorm1d(3)
    ema = EMA(net)
    net(torch.randn(16, 3) + 5)
    ema.update(net)
    torch.testing.assert_close(ema.model.running_mean, net.running_mean)


def test_warmup_schedule():
    ema = EMA(nn.Linear(1, 1), decay=0.999, warmup=True)
    assert ema.current_decay() == pytest.approx(0.1)
    ema.update(nn.Linear(1, 1))
    assert ema.current_decay() == pytest.approx(2 / 11)


def test_state_dict_round_trip():
    net = nn.Linear(4, 4)
    ema = EMA(net, decay=0.5)
    with torch.no_grad():
        net.weight.add_(1.0)
    ema.update(net)
    other = EMA(nn.Linear(4, 4), decay=0.5)
    other.load_state_dict(ema.state_dict())
    torch.testing.assert_close(other.model.weight, ema.model.weight)
    assert other.num_updates == 1
    x = torch.randn(2, 4)
    torch.testing.assert_close(other.model(x), ema.model(x))

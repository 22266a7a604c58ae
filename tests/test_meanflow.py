"""MeanFlow: the target is the MeanFlow identity, the one-step map of an exact average velocity
is exact, r = t is flow matching, and training stays finite."""

import math

import pytest
import torch

from ecnf import LossConfig, TrainConfig, fit, flow_matching_loss, integrate
from ecnf.losses import meanflow_loss, meanflow_target, sample_times
from ecnf.nets import MLPConfig, UNetConfig, build_model
from ecnf.solvers import methods_for, nfe_per_step

A = -1.3  # the linear field v(x, t) = A x


def exact_average(x, t, r):
    """The average velocity of dx/ds = A x over [t, r] from x at t:
    x (e^{A (r - t)} - 1) / (r - t)."""
    gap = (r - t)[:, None]
    factor = torch.where(gap.abs() > 1e-12, torch.expm1(A * gap) / gap.clamp_min(1e-12), A)
    return x * factor


def smooth_field(x, t, r):
    """Any smooth (x, t, r) -> u, to compare the target with finite differences."""
    return torch.sin(x * (1 + t)[:, None]) * torch.cos(2 * r)[:, None] + x**2 * t[:, None]


def test_target_equals_finite_differences_of_the_derivative_along_v():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(16, 3, dtype=torch.float64, generator=g)
    v = torch.randn(16, 3, dtype=torch.float64, generator=g)
    t = torch.rand(16, dtype=torch.float64, generator=g) * 0.5
    r = t + 0.4
    u, target = meanflow_target(smooth_field, x, t, r, v)
    h = 1e-5
    ahead = smooth_field(x + h * v, t + h, r)
    behind = smooth_field(x - h * v, t - h, r)
    by_differences = v + (r - t)[:, None] * (ahead - behind) / (2 * h)
    assert torch.allclose(u, smooth_field(x, t, r))
    assert torch.allclose(target, by_differences, rtol=1e-8, atol=1e-9)


def test_exact_average_velocity_is_its_own_target():
    """The MeanFlow identity u = v + (r - t) du/dt holds for the exact average velocity."""
    x = torch.randn(32, 2, dtype=torch.float64)
    t = torch.rand(32, dtype=torch.float64) * 0.6
    r = t + torch.rand(32, dtype=torch.float64) * 0.4
    u, target = meanflow_target(exact_average, x, t, r, A * x)
    assert torch.allclose(u, target, atol=1e-12)


@pytest.mark.parametrize("steps", [1, 3])
def test_jumps_with_the_exact_average_velocity_are_exact(steps):
    x0 = torch.randn(8, 2, dtype=torch.float64)
    sol = integrate(exact_average, x0, method="meanflow", steps=steps)
    assert torch.allclose(sol.x, x0 * math.exp(A), atol=1e-14)
    assert sol.nfe == steps * nfe_per_step("meanflow") == steps


def test_with_r_equal_t_and_no_weighting_the_loss_is_flow_matching():
    torch.manual_seed(0)
    model = build_model(MLPConfig(data_shape=(2,), width=32, depth=2, mean_flow=True))
    x0, x1, t = torch.randn(64, 2), torch.randn(64, 2), torch.rand(64)
    ours = meanflow_loss(model, x0, x1, times=(t, t), adaptive_power=0.0)
    theirs = flow_matching_loss(model, x0, x1, t=t)
    assert torch.allclose(ours.loss, theirs, rtol=1e-6)


def test_gradients_through_the_jvp_agree_with_double_backward():
    torch.manual_seed(1)
    model = build_model(MLPConfig(data_shape=(2,), width=16, depth=2, mean_flow=True)).double()
    x = torch.randn(10, 2, dtype=torch.float64)
    v = torch.randn(10, 2, dtype=torch.float64)
    t = torch.rand(10, dtype=torch.float64) * 0.5
    r = t + 0.3

    def derivative_forward_mode():
        _, du = torch.func.jvp(lambda y, s: model(y, s, r), (x, t), (v, torch.ones_like(t)))
        return du

    def derivative_double_backward():
        _, du = torch.autograd.functional.jvp(
            lambda y, s: model(y, s, r), (x, t), (v, torch.ones_like(t)), create_graph=True
        )
        return du

    grads = []
    params = list(model.parameters())
    for derivative in (derivative_forward_mode, derivative_double_backward):
        found = torch.autograd.grad((derivative() ** 2).sum(), params, materialize_grads=True)
        grads.append(torch.cat([g.flatten() for g in found]))
    assert grads[0].abs().max() > 0
    assert torch.allclose(grads[0], grads[1], rtol=1e-9, atol=1e-12)


def test_logit_normal_times_have_the_asked_median_and_stay_inside():
    like = torch.zeros(1)
    g = torch.Generator().manual_seed(2)
    times = sample_times(200_000, like=like, sampling="logit_normal", mu=0.4, generator=g)
    assert times.min() > 0 and times.max() < 1
    assert times.median().item() == pytest.approx(1 / (1 + math.exp(-0.4)), abs=3e-3)


def test_meanflow_needs_a_two_time_network_and_says_so():
    with pytest.raises(ValueError, match="mean_flow=True"):
        TrainConfig(data="moons", loss=LossConfig("meanflow"), model=MLPConfig())
    one_time = build_model(MLPConfig())
    assert "meanflow" not in methods_for(one_time)
    with pytest.raises(ValueError, match="takes one time"):
        integrate(one_time, torch.randn(3, 2), method="meanflow", steps=1)
    with pytest.raises(ValueError, match="interval_share"):
        LossConfig("meanflow", interval_share=1.5)


@pytest.mark.slow
@pytest.mark.parametrize(
    "data, model, iterations",
    [
        ("moons", MLPConfig(data_shape=(2,), mean_flow=True), 2000),
        ("digits", MLPConfig(data_shape=(1, 8, 8), width=128, mean_flow=True), 2000),
        (
            "digits",
            UNetConfig(
                data_shape=(1, 8, 8), channels=8, channel_mult=(1, 2), mean_flow=True,
                attention_levels=(1,), mid_attention=True, num_heads=1,
            ),
            100,  # attention, group norm and both embeddings under the JVP; 2000 would take minutes
        ),
    ],
    ids=["moons", "digits-mlp", "digits-unet"],
)  # fmt: skip
def test_training_at_the_defaults_stays_finite(data, model, iterations, tmp_path):
    result = fit(
        TrainConfig(
            data=data,
            model=model,
            loss=LossConfig("meanflow"),
            iterations=iterations,
            batch_size=64,
            log_every=iterations // 40,
            checkpoint_every=iterations,
            device="cpu",
            out_dir=str(tmp_path),
        ),
        overwrite=True,
    )
    losses = torch.tensor([row["loss"] for row in result.history])
    assert len(losses) >= 40 and torch.isfinite(losses).all()
    errors = torch.tensor([row["meanflow"] for row in result.history])
    assert errors[-10:].mean() < 3 * errors[:10].mean()  # the unweighted error does not grow
    x = integrate(result.ema, torch.randn(64, *model.data_shape), method="meanflow", steps=1).x
    assert torch.isfinite(x).all()


def test_cli_trains_meanflow_with_a_two_time_network_and_any_time_sampling():
    from ecnf.cli import build_parser
    from ecnf.cli.train import configs_from_args

    args = build_parser().parse_args(
        ["train", "--data", "moons", "--loss", "meanflow", "--interval-share", "0.5"]
    )
    config = configs_from_args(args)
    assert config.model.mean_flow and config.loss.interval_share == 0.5
    args = build_parser().parse_args(
        ["train", "--data", "moons", "--time-sampling", "logit_normal", "--time-mu", "0.4"]
    )
    config = configs_from_args(args)
    assert not config.model.mean_flow
    assert (config.loss.time_sampling, config.loss.time_mu) == ("logit_normal", 0.4)


def test_old_checkpoint_configs_build_one_time_networks():
    """Configurations saved before MeanFlow existed have no mean_flow key."""
    from ecnf.nets import config_from_dict

    config = config_from_dict({"arch": "mlp", "data_shape": [2], "width": 8, "depth": 1})
    assert config.mean_flow is False

"""Tests for ecnf.nets: time embeddings, activations, velocity networks and configs."""

import json
import math

import pytest
import torch
import torch.nn.functional as F

from ecnf.nets import (
    ACTIVATIONS,
    TIME_EMBEDDINGS,
    AdaptiveActivation,
    FourierTimeEmbedding,
    LinearTimeEmbedding,
    MLPConfig,
    ResNetConfig,
    ResNetVelocity,
    SinusoidalTimeEmbedding,
    UNet,
    UNetConfig,
    VelocityMLP,
    build_model,
    build_time_embedding,
    config_from_dict,
    config_to_dict,
    get_activation,
)

SHAPES = [(2,), (1, 8, 8), (1, 28, 28), (3, 32, 32)]
IMAGE_SHAPES = [shape for shape in SHAPES if len(shape) == 3]
ONE_PER_ARCH = [("mlp", (2,)), ("resnet", (1, 8, 8)), ("unet", (1, 8, 8))]


def small_config(arch: str, data_shape: tuple[int, ...], **kwargs):
    """A configuration small enough to run forward and backward quickly on a CPU."""

    if arch == "mlp":
        return MLPConfig(data_shape=data_shape, **{"width": 32, "depth": 3, **kwargs})
    elif arch == "resnet":
        return ResNetConfig(data_shape=data_shape, **{"width": 32, "num_blocks": 2, **kwargs})
    else:
        defaults = {"channels": 8, "channel_mult": (1, 2, 2), "num_heads": 2}
        return UNetConfig(data_shape=data_shape, **{**defaults, **kwargs})


CASES = [
    *[("mlp", shape) for shape in SHAPES],
    *[("resnet", shape) for shape in SHAPES],
    *[("unet", shape) for shape in IMAGE_SHAPES],
]


@pytest.fixture(autouse=True)
def seed():
    torch.manual_seed(0)


# Shapes and the velocity contract


@pytest.mark.parametrize("arch, data_shape", CASES)
def test_shapes(arch, data_shape):
    model = build_model(small_config(arch, data_shape))
    x = torch.randn(3, *data_shape)

    v = model(x, torch.rand(3))
    assert v.shape == x.shape
    assert torch.isfinite(v).all()

    # A 0-dim time is broadcast to the batch
    t = torch.tensor(0.3)
    assert torch.allclose(model(x, t), model(x, t * x.new_ones(3)))


@pytest.mark.parametrize("arch, data_shape", ONE_PER_ARCH)
def test_samples_are_independent(arch, data_shape):
    model = build_model(small_config(arch, data_shape))
    x, t = torch.randn(4, *data_shape), torch.rand(4)

    v = model(x, t)
    v1 = model(x[1:2], t[1:2])

    assert torch.allclose(v[1:2], v1, atol=1e-5)


def test_classes():
    assert isinstance(build_model(MLPConfig()), VelocityMLP)
    assert isinstance(build_model(ResNetConfig()), ResNetVelocity)
    assert isinstance(build_model(UNetConfig(channels=8, num_heads=2)), UNet)

    config = MLPConfig(width=16)
    assert build_model(config).config is config


# Gradients


GRADIENT_CASES = [
    ("mlp", (2,), {}),
    ("mlp", (1, 8, 8), {"activation": "adaptive", "layer_norm": True, "residual": True}),
    ("mlp", (2,), {"time_embedding": "fourier", "activation": "gelu"}),
    ("resnet", (2,), {"activation": "adaptive"}),
    ("resnet", (1, 8, 8), {"time_embedding": "linear", "activation": "tanh"}),
    ("unet", (1, 8, 8), {"attention_levels": (0, 1, 2), "dropout": 0.1}),
    ("unet", (1, 28, 28), {}),
]


@pytest.mark.parametrize("arch, data_shape, kwargs", GRADIENT_CASES)
def test_every_parameter_gets_a_gradient(arch, data_shape, kwargs):
    model = build_model(small_config(arch, data_shape, **kwargs))
    x, t = torch.randn(4, *data_shape), torch.rand(4)

    loss = (model(x, t) * torch.randn_like(x)).sum()
    loss.backward()

    for name, p in model.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all(), name
        assert p.grad.abs().sum() > 0, name


# Time conditioning


TIME_CASES = [
    *[
        small_config(arch, (2,), time_embedding=kind)
        for arch in ("mlp", "resnet")
        for kind in TIME_EMBEDDINGS
    ],
    small_config("unet", (1, 8, 8)),
]


@pytest.mark.parametrize("config", TIME_CASES)
def test_time_conditions_the_output(config):
    model = build_model(config)
    x = torch.randn(5, *config.data_shape)

    v0 = model(x, torch.full((5,), 0.1))
    v1 = model(x, torch.full((5,), 0.9))

    assert (v0 - v1).abs().amax() > 1e-4 * v0.abs().amax()


# Time embeddings


def test_linear_time_embedding_by_hand():
    embed = LinearTimeEmbedding(16)
    t = torch.rand(7)

    w = embed.linear.weight[:, 0]  # (E,)
    b = embed.linear.bias  # (E,)
    expected = F.silu(t[:, None] * w + b)

    assert torch.allclose(embed(t), expected, atol=1e-6)


@pytest.mark.parametrize("dim", [16, 17])
@pytest.mark.parametrize(
    "cls", [LinearTimeEmbedding, SinusoidalTimeEmbedding, FourierTimeEmbedding]
)
def test_time_embedding_shapes(cls, dim):
    embed = cls(dim)
    e = embed(torch.rand(5))

    assert e.shape == (5, dim)
    assert torch.isfinite(e).all()


def test_sinusoidal_features_distinguish_times():
    embed = SinusoidalTimeEmbedding(32)
    e = embed(torch.linspace(0, 1, 11))

    distances = torch.cdist(e, e) + torch.eye(11)
    assert distances.min() > 0


def test_fourier_frequencies_are_a_fixed_buffer():
    embed = FourierTimeEmbedding(16, scale=4.0)
    names = [name for name, _ in embed.named_parameters()]

    assert "frequencies" not in names
    assert "frequencies" in embed.state_dict()
    assert embed.frequencies.shape == (8,)
    assert not embed.frequencies.requires_grad


def test_build_time_embedding():
    assert isinstance(build_time_embedding("linear", 8), LinearTimeEmbedding)
    assert isinstance(build_time_embedding("sinusoidal", 8), SinusoidalTimeEmbedding)
    assert isinstance(build_time_embedding("fourier", 8), FourierTimeEmbedding)

    with pytest.raises(ValueError, match="time_embedding"):
        build_time_embedding("learned", 8)


# Activations


def test_get_activation():
    for name in ACTIVATIONS:
        a, b = get_activation(name), get_activation(name)
        assert a is not b
        assert a(torch.randn(3)).shape == (3,)

    with pytest.raises(ValueError, match="activation"):
        get_activation("swish")


def test_adaptive_activation_equal_mix():
    act = AdaptiveActivation()
    x = torch.linspace(-4, 4, 101)

    assert torch.allclose(act.weights.sum(), torch.tensor(1.0))
    assert torch.allclose(act.weights, torch.full((3,), 1 / 3))

    expected = (F.silu(x) + F.relu(x) + torch.tanh(x)) / 3
    assert torch.allclose(act(x), expected, atol=1e-6)


def test_adaptive_activation_learns():
    act = AdaptiveActivation()
    x = torch.linspace(-4, 4, 101)

    with torch.no_grad():
        act.logits.copy_(torch.tensor([0.5, -1.0, 2.0]))
    assert torch.allclose(act.weights.sum(), torch.tensor(1.0))

    # Dominant logit -> that activation
    with torch.no_grad():
        act.logits.copy_(torch.tensor([0.0, 0.0, 50.0]))
    assert torch.allclose(act(x), torch.tanh(x), atol=1e-6)

    # The logits receive a gradient
    act = AdaptiveActivation()
    act(x).square().sum().backward()
    assert act.logits.grad is not None
    assert act.logits.grad.abs().sum() > 0


def test_adaptive_layers_are_independent():
    model = build_model(MLPConfig(width=16, depth=3, activation="adaptive"))
    acts = [m for m in model.modules() if isinstance(m, AdaptiveActivation)]

    assert len(acts) == 3
    assert acts[0].logits is not acts[1].logits

    with torch.no_grad():
        acts[0].logits.add_(1.0)
    assert not torch.equal(acts[0].logits, acts[1].logits)

    # Each layer's logits get their own gradient
    x = torch.randn(8, 2)
    model(x, torch.rand(8)).square().sum().backward()
    assert not torch.allclose(acts[0].logits.grad, acts[1].logits.grad)


# Configs


@pytest.mark.parametrize(
    "config",
    [
        MLPConfig(data_shape=(2,), width=16, activation="adaptive", time_embedding="fourier"),
        ResNetConfig(data_shape=(1, 8, 8), width=16, num_blocks=2),
        UNetConfig(data_shape=(1, 8, 8), channels=8, num_heads=2, attention_levels=(0,)),
    ],
)
def test_config_round_trip(config):
    d = json.loads(json.dumps(config_to_dict(config)))
    assert d["arch"] == config.arch
    assert d == config_to_dict(config)

    copy = config_from_dict(d)
    assert copy == config
    assert type(copy) is type(config)

    model, clone = build_model(config), build_model(copy)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in clone.parameters())

    clone.load_state_dict(model.state_dict())
    model.eval()
    clone.eval()

    x = torch.randn(3, *config.data_shape)
    t = torch.rand(3)
    assert torch.equal(model(x, t), clone(x, t))


def test_config_lists_become_tuples():
    config = UNetConfig(data_shape=[3, 32, 32], channel_mult=[1, 2], attention_levels=[1])

    assert config.data_shape == (3, 32, 32)
    assert config.channel_mult == (1, 2)
    assert config.attention_levels == (1,)
    assert MLPConfig(data_shape=[1, 28, 28]).data_shape == (1, 28, 28)


def test_defaults():
    mlp = MLPConfig()
    assert (mlp.width, mlp.depth, mlp.activation, mlp.time_embedding) == (256, 3, "silu", "linear")
    assert (mlp.time_embed_dim, mlp.layer_norm, mlp.residual) == (64, False, False)

    resnet = ResNetConfig()
    assert (resnet.width, resnet.num_blocks, resnet.activation) == (256, 4, "silu")
    assert resnet.time_embedding == "sinusoidal"

    unet = UNetConfig()
    assert (unet.channels, unet.channel_mult, unet.num_res_blocks) == (32, (1, 2, 2), 1)
    assert (unet.attention_levels, unet.mid_attention, unet.num_heads) == ((1,), True, 4)
    assert unet.dropout == 0.0


@pytest.mark.parametrize(
    "factory, kwargs, name",
    [
        (MLPConfig, {"activation": "swish"}, "activation"),
        (ResNetConfig, {"activation": "softplus"}, "activation"),
        (MLPConfig, {"time_embedding": "learned"}, "time_embedding"),
        (ResNetConfig, {"time_embedding": "none"}, "time_embedding"),
        (MLPConfig, {"width": 0}, "width"),
        (MLPConfig, {"width": -3}, "width"),
        (MLPConfig, {"depth": 0}, "depth"),
        (MLPConfig, {"width": 2.5}, "width"),
        (MLPConfig, {"layer_norm": "yes"}, "layer_norm"),
        (ResNetConfig, {"num_blocks": 0}, "num_blocks"),
        (MLPConfig, {"data_shape": ()}, "data_shape"),
        (MLPConfig, {"data_shape": (0, 2)}, "data_shape"),
        (UNetConfig, {"data_shape": (784,)}, "data_shape"),
        (UNetConfig, {"channels": 0}, "channels"),
        (UNetConfig, {"channel_mult": ()}, "channel_mult"),
        (UNetConfig, {"attention_levels": (3,)}, "attention_levels"),
        (UNetConfig, {"num_heads": 3}, "num_heads"),
        (UNetConfig, {"dropout": 1.0}, "dropout"),
    ],
)
def test_bad_config(factory, kwargs, name):
    with pytest.raises(ValueError, match=name):
        factory(**kwargs)


def test_bad_dict():
    d = config_to_dict(MLPConfig())

    with pytest.raises(ValueError, match="arch"):
        config_from_dict({**d, "arch": "transformer"})
    with pytest.raises(ValueError, match="arch"):
        config_from_dict({k: v for k, v in d.items() if k != "arch"})
    with pytest.raises(ValueError, match="heads"):
        config_from_dict({**d, "heads": 4})
    with pytest.raises(ValueError, match="config"):
        build_model({"arch": "mlp"})


@pytest.mark.parametrize("arch, data_shape", ONE_PER_ARCH)
def test_bad_inputs(arch, data_shape):
    model = build_model(small_config(arch, data_shape))
    x, t = torch.randn(4, *data_shape), torch.rand(4)

    with pytest.raises(ValueError, match=r"x .*\(4, 3\)"):
        model(torch.randn(4, 3), t)
    with pytest.raises(ValueError, match="x"):
        model(x[0], t)
    with pytest.raises(ValueError, match=r"t .*\(5,\)"):
        model(x, torch.rand(5))
    with pytest.raises(ValueError, match="t "):
        model(x, torch.rand(4, 1))


# Precision and size


@pytest.mark.parametrize("arch, data_shape", ONE_PER_ARCH)
def test_float64(arch, data_shape):
    model = build_model(small_config(arch, data_shape)).double()
    x = torch.randn(2, *data_shape, dtype=torch.float64)

    v = model(x, torch.rand(2, dtype=torch.float64))
    assert v.dtype == torch.float64

    # A float32 time is cast to the dtype of x
    assert torch.allclose(model(x, torch.tensor(0.5)), model(x, torch.full((2,), 0.5)))

    # Gradients in float64 agree with finite differences
    x = x[:1].requires_grad_(True)
    t = torch.rand(1, dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: model(x, t), (x,), eps=1e-6, atol=1e-5)


def test_default_parameter_counts():
    def count(model):
        return sum(p.numel() for p in model.parameters())

    # VelocityMLP: (D + E) W + W + (L - 1) (W^2 + W) + W D + D, plus the 2 E of e(t)
    W, L, E, D = 256, 3, 64, 2
    expected = 2 * E + (D + E) * W + W + (L - 1) * (W * W + W) + W * D + D
    assert count(build_model(MLPConfig())) == expected

    # A CIFAR-10 sized U-Net (DDPM / I-CFM practice, about 35M parameters)
    config = UNetConfig(
        data_shape=(3, 32, 32), channels=128, channel_mult=(1, 2, 2, 2), num_res_blocks=2
    )
    assert 20e6 < count(build_model(config)) < 60e6
    assert math.prod(config.data_shape) == 3072

"""Class-conditional flows: label embeddings, labelled data, per-class OT, label dropout and
classifier-free guidance, checked against their definitions."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch

from ecnf import LossConfig, TrainConfig, fit, integrate, load
from ecnf.cli import main
from ecnf.couplings import ot_assignment, ot_coupling, pairing_cost
from ecnf.data import (
    TOY_CLASSES,
    dataset_classes,
    load_images,
    load_labels,
    make_stream,
    sample_toy,
    sample_toy_labelled,
)
from ecnf.guidance import Guided, drop_labels, guided
from ecnf.losses import compute_loss
from ecnf.nets import MLPConfig, ResNetConfig, UNetConfig, build_model

NETS = {
    "mlp": lambda k: MLPConfig(data_shape=(2,), width=32, depth=2, num_classes=k),
    "resnet": lambda k: ResNetConfig(data_shape=(2,), width=32, num_blocks=2, num_classes=k),
    "unet": lambda k: UNetConfig(
        data_shape=(1, 8, 8), channels=8, channel_mult=(1,), attention_levels=(), num_classes=k
    ),
}


def _trained(arch: str, k: int = 3) -> torch.nn.Module:
    """A conditional network whose label embedding is no longer zero."""
    torch.manual_seed(0)
    net = build_model(NETS[arch](k)).eval()
    with torch.no_grad():
        net.label_embedding.weight.normal_()
    return net


def _inputs(arch: str, n: int = 6):
    g = torch.Generator().manual_seed(1)
    shape = (2,) if arch != "unet" else (1, 8, 8)
    return torch.randn((n, *shape), generator=g), torch.rand(n, generator=g)


# ---- networks


@pytest.mark.parametrize("arch", list(NETS))
def test_with_the_null_label_a_conditional_network_is_an_unconditional_one(arch):
    torch.manual_seed(0)
    plain = build_model(NETS[arch](0)).eval()
    conditional = build_model(NETS[arch](3)).eval()
    # the same weights everywhere but the label embedding, which starts at zero
    missing = conditional.load_state_dict(plain.state_dict(), strict=False)
    assert missing.missing_keys == ["label_embedding.weight"] and not missing.unexpected_keys
    x, t = _inputs(arch)
    assert torch.equal(conditional(x, t), plain(x, t))
    with torch.no_grad():
        conditional.label_embedding.weight[:3].normal_()  # classes learned, null row kept
    assert torch.equal(conditional(x, t), plain(x, t))
    assert torch.equal(conditional(x, t, y=torch.full((6,), 3)), plain(x, t))
    assert not torch.allclose(conditional(x, t, y=torch.zeros(6, dtype=torch.long)), plain(x, t))


@pytest.mark.parametrize("arch", list(NETS))
def test_labels_change_the_velocity_per_sample(arch):
    net = _trained(arch)
    x, t = _inputs(arch)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    together = net(x, t, y=y)
    for i in range(6):  # each sample sees its own label only
        alone = net(x[i : i + 1], t[i : i + 1], y=y[i : i + 1])
        torch.testing.assert_close(together[i : i + 1], alone, rtol=1e-5, atol=1e-6)
    assert torch.equal(net(x, t, y=torch.tensor(2)), net(x, t, y=torch.full((6,), 2)))


def test_bad_labels_are_refused_by_name():
    net = _trained("mlp")
    x, t = _inputs("mlp")
    with pytest.raises(ValueError, match=r"lie in 0\.\.2"):
        net(x, t, y=torch.full((6,), 4))
    with pytest.raises(ValueError, match="integers"):
        net(x, t, y=torch.zeros(6))
    with pytest.raises(ValueError, match=r"shape \(\) or \(6,\)"):
        net(x, t, y=torch.zeros(5, dtype=torch.long))
    with pytest.raises(ValueError, match="unconditional and takes no labels"):
        build_model(NETS["mlp"](0))(x, t, y=torch.zeros(6, dtype=torch.long))
    with pytest.raises(ValueError, match="num_classes"):
        MLPConfig(num_classes=-1)


# ---- guidance


@pytest.mark.parametrize("arch", list(NETS))
def test_guidance_zero_and_one_are_exactly_the_unconditional_and_conditional_flows(arch):
    net = _trained(arch)
    x0, _ = _inputs(arch)
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    unconditional = integrate(net, x0, method="rk4", steps=4)
    conditional = integrate(lambda x, t: net(x, t, y=y), x0, method="rk4", steps=4)
    at_zero = integrate(Guided(net, y, 0.0), x0, method="rk4", steps=4)
    at_one = integrate(Guided(net, y, 1.0), x0, method="rk4", steps=4)
    assert torch.equal(at_zero.x, unconditional.x) and at_zero.nfe == 16
    assert torch.equal(at_one.x, conditional.x) and at_one.nfe == 16
    assert not torch.allclose(at_one.x, at_zero.x)


@pytest.mark.parametrize("arch", list(NETS))
def test_guided_velocity_is_the_extrapolation_in_one_batched_forward(arch):
    net = _trained(arch)
    x, t = _inputs(arch)
    y = torch.tensor([2, 1, 0, 2, 1, 0])
    calls = []
    net.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    w = 2.5
    v = Guided(net, y, w)(x, t)
    assert calls == [12]  # both velocities from one forward of 2B states
    expected = net(x, t) + w * (net(x, t, y=y) - net(x, t))
    torch.testing.assert_close(v, expected, rtol=1e-5, atol=1e-5)


def test_guided_nfe_is_counted_twice_per_velocity_call_adaptive_too():
    net = _trained("mlp")
    x0, _ = _inputs("mlp")
    calls = []
    net.register_forward_hook(lambda module, args, out: calls.append(args[0].shape[0]))
    flow = Guided(net, 1, 3.0)
    sol = integrate(flow, x0, method="euler", steps=5)
    assert sol.nfe == 10 and len(calls) == 5
    calls.clear()
    adaptive = integrate(flow, x0, method="dopri5", rtol=1e-4, atol=1e-4)
    assert adaptive.nfe == 2 * len(calls) and calls


def test_guidance_refuses_what_it_cannot_do():
    with pytest.raises(ValueError, match="class-conditional network"):
        Guided(build_model(NETS["mlp"](0)), 0, 2.0)
    net = _trained("mlp")
    with pytest.raises(ValueError, match=r"0\.\.2"):
        Guided(net, 3, 2.0)
    for bad in (-1.0, float("nan"), float("inf")):
        with pytest.raises(ValueError, match="guidance scale"):
            Guided(net, 0, bad)
    assert guided(net, None, 5.0) is net


# ---- data


@pytest.mark.parametrize("name", list(TOY_CLASSES))
def test_labelled_toys_give_the_same_points_and_their_classes(name):
    x, y = sample_toy_labelled(name, 4000, generator=torch.Generator().manual_seed(3))
    assert torch.equal(x, sample_toy(name, 4000, generator=torch.Generator().manual_seed(3)))
    k = len(TOY_CLASSES[name])
    counts = torch.bincount(y, minlength=k)
    assert counts.numel() == k
    # classes are equally likely: each count within 5 binomial standard deviations
    sd = math.sqrt(4000 * (1 / k) * (1 - 1 / k))
    assert (counts.float() - 4000 / k).abs().max() < 5 * sd
    # and the classes are where they should be: apart in mean position or mean radius
    features = torch.cat([x, x.norm(dim=1, keepdim=True)], dim=1)
    means = torch.stack([features[y == c].mean(0) for c in range(k)])
    assert torch.pdist(means).min() > 0.1


def test_eight_gaussians_labels_name_the_nearest_centre():
    x, y = sample_toy_labelled("8gaussians", 2000, generator=torch.Generator().manual_seed(0))
    angles = torch.arange(8) * (math.pi / 4)
    centres = 2 * math.sqrt(2) * torch.stack([angles.cos(), angles.sin()], 1)
    assert (torch.cdist(x, centres).argmin(1) == y).float().mean() > 0.99


def test_image_labels_follow_the_images():
    images, labels = load_images("digits"), load_labels("digits")
    assert labels.shape == (images.shape[0],) and labels.dtype == torch.int64
    assert set(labels.tolist()) == set(range(10)) and len(dataset_classes("digits")) == 10
    # a zero is darker at its centre than the average digit: the labels are in image order
    zeros, others = images[labels == 0].float(), images[labels != 0].float()
    assert zeros[..., 3:5, 3:5].mean() < 0.5 * others[..., 3:5, 3:5].mean()
    stream = make_stream("digits", seed=4, labels=True)
    twin = make_stream("digits", seed=4)
    for _ in range(14):  # past an epoch of 1500
        x, y = stream.next_labelled(128)
        assert torch.equal(x, twin.next_batch(128))
        # every image in the batch is the training image its label belongs to
        flat = images.flatten(1).float() / 127.5 - 1
        index = torch.cdist(x.flatten(1), flat).argmin(1)
        assert torch.equal(labels[index], y)
    assert stream.state_dict() == twin.state_dict()


def test_unlabelled_data_is_refused_for_conditioning():
    with pytest.raises(ValueError, match="no class labels"):
        make_stream("checkerboard", labels=True)
    with pytest.raises(ValueError, match="no class labels"):
        make_stream("swissroll").next_labelled(4)
    with pytest.raises(ValueError, match="has no labels"):
        load_labels("folder")
    with pytest.raises(ValueError, match="has no classes"):
        sample_toy_labelled("gaussian", 4)


# ---- training


def test_per_class_ot_keeps_each_class_with_independent_noise_and_is_optimal_within_it():
    g = torch.Generator().manual_seed(0)
    x1, y = sample_toy_labelled("8gaussians", 256, generator=g)
    x0 = torch.randn(256, 2, generator=g)
    _, paired = ot_coupling(x0, x1, labels=y)
    for c in range(8):
        mine = y == c
        # the class's data, re-ordered among the class's own places in the batch
        assert torch.equal(paired[mine].sort(0).values, x1[mine].sort(0).values)
        best = x1[mine][ot_assignment(x0[mine], x1[mine], solver="hungarian")]
        torch.testing.assert_close(
            pairing_cost(x0[mine], paired[mine]), pairing_cost(x0[mine], best)
        )
    # a global OT would move noise between classes; per-class OT costs more than it
    _, free = ot_coupling(x0, x1)
    assert pairing_cost(x0, free) < pairing_cost(x0, paired)


def test_label_dropout_replaces_the_share_asked_for():
    y = torch.randint(0, 10, (20_000,), generator=torch.Generator().manual_seed(0))
    dropped = drop_labels(y, 10, 0.1, generator=torch.Generator().manual_seed(1))
    share = float((dropped == 10).float().mean())
    assert abs(share - 0.1) < 5 * math.sqrt(0.1 * 0.9 / 20_000)
    kept = dropped != 10
    assert torch.equal(dropped[kept], y[kept])
    assert torch.equal(drop_labels(y, 10, 0.0), y)
    with pytest.raises(ValueError, match=r"\[0, 1\)"):
        drop_labels(y, 10, 1.0)


def test_the_loss_sees_the_labels_and_the_null_label():
    net = _trained("mlp", 8)
    seen = []
    net.register_forward_hook(
        lambda m, args, kwargs, out: seen.append(kwargs["y"]), with_kwargs=True
    )
    x1, y = sample_toy_labelled("8gaussians", 512, generator=torch.Generator().manual_seed(0))
    x0 = torch.randn(512, 2, generator=torch.Generator().manual_seed(1))
    gen = torch.Generator().manual_seed(2)
    compute_loss(LossConfig("fm"), net, x0, x1, labels=y, cond_drop=0.25, generator=gen)
    (used,) = seen
    null = used == 8
    assert 0.15 < float(null.float().mean()) < 0.35
    assert torch.equal(used[~null], y[~null])
    with pytest.raises(ValueError, match="unconditional"):
        compute_loss(LossConfig("fm"), build_model(NETS["mlp"](0)), x0, x1, labels=y)


def test_training_configs_refuse_what_does_not_fit():
    with pytest.raises(ValueError, match="has 2 classes"):
        TrainConfig(data="moons", model=MLPConfig(num_classes=3))
    with pytest.raises(ValueError, match="no classes"):
        TrainConfig(data="checkerboard", model=MLPConfig(num_classes=2))
    with pytest.raises(ValueError, match="reflow"):
        TrainConfig(
            data="moons", model=MLPConfig(num_classes=2), loss=LossConfig("reflow"), teacher="x"
        )
    with pytest.raises(ValueError, match="cond_drop"):
        TrainConfig(cond_drop=1.0)


@pytest.fixture(scope="module")
def eight_modes(tmp_path_factory):
    """A conditional OT-CFM flow on the 8 Gaussians: 1,000 steps (about 10 s on 2 cores)."""
    out = tmp_path_factory.mktemp("modes")
    config = TrainConfig(
        data="8gaussians",
        model=MLPConfig(width=128, depth=3, num_classes=8),
        loss=LossConfig("otcfm"),
        iterations=1000,
        batch_size=256,
        lr=2e-3,
        out_dir=str(out),
        device="cpu",
        checkpoint_every=1000,
    )
    fit(config)
    return out / "checkpoint.safetensors"


def _modes(x):
    angles = torch.arange(8) * (math.pi / 4)
    centres = 2 * math.sqrt(2) * torch.stack([angles.cos(), angles.sin()], 1)
    return torch.cdist(x, centres).argmin(1)


def test_a_conditional_2d_model_puts_its_guided_samples_in_the_intended_mode(eight_modes):
    model = load(eight_modes)
    assert model.config.num_classes == 8
    x0 = torch.randn(1600, 2, generator=torch.Generator().manual_seed(0))
    y = torch.arange(8).repeat(200)
    for w in (1.0, 2.0):
        sol = integrate(guided(model, y, w), x0, method="rk4", steps=20)
        assert (_modes(sol.x) == y).float().mean() >= 0.95, w
    # unguided, the same noise spreads over all modes: the labels are what picks them
    free = integrate(model, x0, method="rk4", steps=20).x
    counts = torch.bincount(_modes(free), minlength=8)
    assert (_modes(free) == y).float().mean() < 0.3 and counts.min() > 100


def test_cli_trains_and_samples_a_class_with_guidance(tmp_path, eight_modes, capsys):
    out = tmp_path / "samples"
    args = ["sample", str(eight_modes), "--label", "3", "--guidance", "2", "-n", "200"]
    assert main([*args, "--method", "euler", "--steps", "10", "--out", str(out)]) == 0
    saved = np.load(out.with_suffix(".npz"))
    assert int(saved["nfe"]) == 20 and set(saved["labels"].tolist()) == {3}
    assert (_modes(torch.as_tensor(saved["samples"])) == 3).float().mean() >= 0.95
    for bad, message in (
        (["--label", "8"], "classes are 0..7"),
        (["--label", "x"], "class number"),
        (["--guidance", "2"], "applies with --label"),
    ):
        assert main(["sample", str(eight_modes), *bad, "--out", str(out)]) == 2
        assert message in capsys.readouterr().err
    trained = tmp_path / "run"
    train = ["train", "--data", "moons", "--conditional", "--iterations", "3", "--quiet"]
    assert main([*train, "--cond-drop", "0.2", "--out", str(trained)]) == 0
    model = load(trained / "checkpoint.safetensors")
    assert model.config.num_classes == 2
    assert main(["train", "--data", "checkerboard", "--conditional", "--out", str(tmp_path)]) == 2
    assert "no classes" in capsys.readouterr().err


def test_a_conditional_flow_on_strokes_of_two_colours_draws_each_colour(tmp_path):
    from PIL import Image, ImageDraw

    from ecnf.data import save_drawing

    picture = Image.new("RGB", (200, 200), "white")
    draw = ImageDraw.Draw(picture)
    draw.line([(20, 30), (180, 30)], fill=(220, 30, 30), width=16)
    draw.ellipse([60, 80, 140, 160], outline=(30, 30, 220), width=16)
    name = save_drawing(picture, tmp_path, colours=True)
    assert len(dataset_classes(name)) == 2
    out = tmp_path / "run"
    args = ["train", "--data", name, "--conditional", "--loss", "otcfm", "--quiet"]
    assert main([*args, "--iterations", "1000", "--lr", "2e-3", "--out", str(out)]) == 0
    model = load(out / "checkpoint.safetensors")
    reference, classes = sample_toy_labelled(
        name, 20_000, generator=torch.Generator().manual_seed(2)
    )
    x0 = torch.randn(2000, 2, generator=torch.Generator().manual_seed(1))
    y = torch.arange(2).repeat(1000)
    for w in (1.0, 3.0):
        x = integrate(guided(model, y, w), x0, method="rk4", steps=20).x
        # the colour of the nearest point of the drawing is the colour asked for
        nearest = classes[torch.cdist(x, reference).argmin(1)]
        assert (nearest == y).float().mean() >= 0.95, w


def test_cli_eval_judges_guided_samples_against_their_classes(eight_modes, capsys):
    def evaluate(*extra):
        args = ["eval", str(eight_modes), "-n", "400", "--json", *extra]
        assert main(args) == 0
        return json.loads(capsys.readouterr().out)

    plain = evaluate()
    one = evaluate("--label", "3")
    assert one["classes"] == [3] and one["nfe"] == plain["nfe"]
    # the conditional flow of one mode is close to that mode's own data-vs-data floor, and
    # the floor of one mode is far below the floor of all eight
    assert one["w2"] < 3 * one["w2_data_vs_data"] < plain["w2_data_vs_data"]
    # guidance beyond 1 crowds the samples into the middle of their mode: further in W2
    strong = evaluate("--label", "3", "--guidance", "3")
    assert strong["nfe"] == 2 * plain["nfe"] and strong["w2"] > one["w2"]
    assert main(["eval", str(eight_modes), "--label", "9"]) == 2
    assert "classes are 0..7" in capsys.readouterr().err


def test_cli_eval_of_a_conditional_image_model_reports_class_accuracy(capsys):
    from pathlib import Path

    path = Path(__file__).parents[1] / "checkpoints" / "images" / "digits_unet_fm_cond.safetensors"
    args = ["eval", str(path), "--label", "all", "--guidance", "2", "--device", "cpu"]
    assert main([*args, "--method", "euler", "--steps", "10", "--json"]) == 0
    ev = json.loads(capsys.readouterr().out)
    (row,) = ev["rows"]
    assert row["nfe"] == 20 and row["accuracy"] >= 0.95
    assert main([*args[:3], "3", *args[4:]]) == 2
    assert "pass --label all" in capsys.readouterr().err

"""The command line end to end on tiny runs, and its one-line errors."""

import json
import subprocess
import sys

import numpy as np
import pytest

from ecnf.cli import main

TRAIN = [
    "train",
    "--data",
    "moons",
    "--width",
    "32",
    "--depth",
    "2",
    "--iterations",
    "30",
    "--batch-size",
    "64",
    "--lr",
    "2e-3",
    "--device",
    "cpu",
    "--quiet",
]


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    out = tmp_path_factory.mktemp("cli") / "moons"
    assert main([*TRAIN, "--loss", "otcfm", "--out", str(out)]) == 0
    return out / "checkpoint.safetensors"


def test_sample_writes_arrays_figures_and_gif(ckpt, tmp_path, capsys):
    prefix = tmp_path / "s"
    assert (
        main(
            [
                "sample",
                str(ckpt),
                "--method",
                "rk4",
                "--steps",
                "5",
                "-n",
                "50",
                "--out",
                str(prefix),
                "--gif",
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert "NFE 20" in capsys.readouterr().out
    data = np.load(prefix.with_suffix(".npz"))
    assert data["samples"].shape == (50, 2) and int(data["nfe"]) == 20
    assert data["trajectory"].shape == (6, 50, 2)
    assert prefix.with_suffix(".png").stat().st_size > 0
    assert prefix.with_suffix(".gif").read_bytes()[:3] == b"GIF"


def test_eval_reports_w2_with_floor(ckpt, capsys):
    assert main(["eval", str(ckpt), "-n", "300", "--steps", "4", "--json", "--device", "cpu"]) == 0
    res = json.loads(capsys.readouterr().out)
    assert res["nfe"] == 16 and res["num_samples"] == 300
    assert res["w2_data_vs_data"] < res["w2"]  # a 30-step model is worse than fresh data
    assert np.isfinite(res["mmd2"])


def test_likelihood_prints_nll(ckpt, capsys):
    assert main(["likelihood", str(ckpt), "-n", "20", "--steps", "4", "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("NLL ") and "exact divergence" in out


def test_adaptive_solver_reports_nfe(ckpt, tmp_path, capsys):
    assert (
        main(
            [
                "sample",
                str(ckpt),
                "--method",
                "dopri5",
                "-n",
                "8",
                "--out",
                str(tmp_path / "a"),
                "--device",
                "cpu",
            ]
        )
        == 0
    )
    assert int(np.load(tmp_path / "a.npz")["nfe"]) > 0


def test_export_is_small_and_samples_the_same(ckpt, tmp_path):
    import torch

    from ecnf.checkpoint import load, read_checkpoint

    out = tmp_path / "small.safetensors"
    assert main(["export", str(ckpt), str(out), "--half"]) == 0
    assert out.stat().st_size < 0.4 * ckpt.stat().st_size
    small = read_checkpoint(out)
    assert small.optimizer_state is None and small.ema_state is None
    assert small.metadata["weights"] == "ema" and small.metadata["command"].startswith("python -m")
    x = torch.randn(16, 2)
    t = torch.rand(16)
    with torch.no_grad():
        torch.testing.assert_close(load(out)(x, t), load(ckpt)(x, t), atol=2e-2, rtol=2e-2)


def test_resume_from_cli(tmp_path):
    out = tmp_path / "r"
    assert main([*TRAIN, "--iterations", "10", "--out", str(out)]) == 0
    assert main([*TRAIN, "--iters", "14", "--out", str(out), "--resume"]) == 0
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert json.loads(lines[-1])["step"] == 14


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--iterations", "0", "--out", "{tmp}/x"], "iterations must be"),
        (["train", "--data", "mnist", "--out", "{tmp}/x"], "dataset"),
        (["train", "--model", "unet", "--width", "8", "--out", "{tmp}/x"], "--width"),
        (
            ["train", "--data", "digits", "--channel-mult", "1,x", "--out", "{tmp}/x"],
            "--channel-mult",
        ),
        (["train", "--data", "digits", "--attention", "5", "--out", "{tmp}/x"], "attention"),
        (["train", "--data", "moons", "--channels", "8", "--out", "{tmp}/x"], "--channels"),
        (["train", "--resume", "--out", "{tmp}/none"], "cannot resume"),
        (["sample", "{tmp}/missing.safetensors"], "missing.safetensors"),
        (["sample", "{tmp}/junk.safetensors"], "junk.safetensors"),
    ],
)
def test_errors_are_one_line(tmp_path, capsys, argv, message):
    (tmp_path / "junk.safetensors").write_bytes(b"not a checkpoint at all")
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err and "Traceback" not in err


def test_unknown_solver_is_rejected_by_argparse(ckpt, capsys):
    for flag in ("--method", "--solver"):
        with pytest.raises(SystemExit) as exc:
            main(["sample", str(ckpt), flag, "leapfrog"])
        assert exc.value.code == 2
        assert "leapfrog" in capsys.readouterr().err


def test_old_solver_flags_still_work_and_say_so(ckpt, tmp_path, capsys):
    argv = ["eval", str(ckpt), "-n", "50", "--steps", "2", "--json", "--device", "cpu"]
    assert main([*argv, "--method", "midpoint"]) == 0
    new = json.loads(capsys.readouterr().out)
    assert main([*argv, "--solver", "midpoint"]) == 0
    captured = capsys.readouterr()
    assert "--solver is deprecated; use --method" in captured.err
    old = json.loads(captured.out)
    assert old["method"] == new["method"] == "midpoint" and old["nfe"] == new["nfe"] == 4
    assert old["w2"] == new["w2"]
    from ecnf.cli import build_parser

    args = build_parser().parse_args(["train", "--teacher-solver", "euler"])
    assert args.teacher_method == "euler"
    assert "--teacher-solver is deprecated" in capsys.readouterr().err
    # optimisation steps are --iterations; the old --steps of `train` still works and says so
    args = build_parser().parse_args(["train", "--steps", "7"])
    assert args.iterations == 7
    assert "--steps is deprecated; use --iterations" in capsys.readouterr().err
    assert build_parser().parse_args(["train", "--iters", "9"]).iterations == 9


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["sample", "{ckpt}", "-n", "0", "--out", "{tmp}/s"], "-n/--num must be at least 1, got 0"),
        (["eval", "{ckpt}", "-n", "1"], "-n/--num must be at least 2, got 1"),
        (["likelihood", "{ckpt}", "-n", "-3"], "-n/--num must be at least 1, got -3"),
        (["sample", "{ckpt}", "--steps", "0", "--out", "{tmp}/s"], "steps"),
    ],
)
def test_counts_below_one_are_refused_and_nothing_is_written(ckpt, tmp_path, capsys, argv, flag):
    argv = [a.replace("{ckpt}", str(ckpt)).replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    assert flag in capsys.readouterr().err
    assert not list(tmp_path.iterdir())


def test_sample_starts_from_the_models_own_source(tmp_path, capsys):
    import torch

    from ecnf.data import sample_toy
    from ecnf.solvers import integrate

    out = tmp_path / "ring"
    train = [*TRAIN, "--iterations", "4", "--source", "8gaussians", "--out", str(out)]
    assert main(train) == 0
    ck = out / "checkpoint.safetensors"
    argv = ["sample", str(ck), "--method", "euler", "--steps", "3", "-n", "40", "--seed", "5"]
    assert main([*argv, "--out", str(tmp_path / "s"), "--device", "cpu"]) == 0
    samples = np.load(tmp_path / "s.npz")["samples"]
    from ecnf import load

    x0 = sample_toy("8gaussians", 40, generator=torch.Generator().manual_seed(5))
    expected = integrate(load(ck, device="cpu"), x0, method="euler", steps=3).x
    np.testing.assert_array_equal(samples, expected.numpy())


@pytest.mark.parametrize("command", ["train", "sample", "likelihood", "eval", "export"])
def test_help(command):
    out = subprocess.run(
        [sys.executable, "-m", "ecnf", command, "--help"],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "usage: python -m ecnf" in out.stdout


def test_eval_on_images_names_the_feature_net(tmp_path, capsys):
    out = tmp_path / "digits"
    argv = [
        "train",
        "--data",
        "digits",
        "--channels",
        "8",
        "--iterations",
        "3",
        "--batch-size",
        "16",
        "--device",
        "cpu",
        "--quiet",
        "--out",
        str(out),
    ]
    assert main(argv) == 0
    ck = str(out / "checkpoint.safetensors")
    assert main(["eval", ck, "-n", "64", "--steps", "2", "--device", "cpu"]) == 0
    text = capsys.readouterr().out
    assert "FD-DIGITS" in text and "real vs real" in text and "digits-classifier" in text
    assert "FID" not in text
    assert main(["eval", ck, "-n", "64", "--steps", "1", "--json", "--device", "cpu"]) == 0
    res = json.loads(capsys.readouterr().out)
    row = res["rows"][0]
    assert row["nfe"] == 4 and row["num_samples"] == 64 and 0 <= row["sample_entropy"] <= 1
    assert row["FD-DIGITS"] > res["floor"]["FD-DIGITS"]  # 3 training steps are not the data
    assert (res["reference"], res["sampler"]) == ("test", "eager fp32")
    argv = ["eval", ck, "-n", "64", "--steps", "1", "--json", "--device", "cpu"]
    assert main([*argv, "--reference", "train"]) == 0
    train = json.loads(capsys.readouterr().out)
    assert train["reference"] == "train" and train["floor"] == res["floor"]
    assert train["rows"][0]["FD-DIGITS"] != row["FD-DIGITS"]  # other real images
    missing = tmp_path / "none.pth"
    assert main(["eval", ck, "-n", "8", "--inception-weights", str(missing)]) == 2
    assert "none.pth" in capsys.readouterr().err


def test_train_defaults_are_the_configs_own():
    from ecnf import LossConfig, TrainConfig
    from ecnf.cli import build_parser
    from ecnf.cli.train import configs_from_args

    a, tc, lc = build_parser().parse_args(["train"]), TrainConfig(), LossConfig()
    pairs = {
        "data": tc.data,
        "source": tc.source,
        "iterations": tc.iterations,
        "lr": tc.lr,
        "weight_decay": tc.weight_decay,
        "ema_decay": tc.ema_decay,
        "grad_clip": tc.grad_clip,
        "warmup_iterations": tc.warmup_iterations,
        "lr_schedule": tc.lr_schedule,
        "precision": tc.precision,
        "seed": tc.seed,
        "out_dir": tc.out_dir,
        "checkpoint_every": tc.checkpoint_every,
        "log_every": tc.log_every,
        "sample_every": tc.sample_every,
        "device": tc.device,
        "teacher_method": tc.teacher_method,
        "teacher_steps": tc.teacher_steps,
        "ema_warmup": tc.ema_warmup,
        "loss.name": lc.name,
        "loss.alpha": lc.alpha,
        "loss.dt": lc.dt,
        "loss.num_segments": lc.num_segments,
        "loss.coupling": lc.coupling,
        "loss.fm_weight": lc.fm_weight,
        "loss.sigma": lc.sigma,
    }
    assert {k: getattr(a, k) for k in pairs} == pairs
    assert a.ot_workers is None  # TrainConfig's default_ot_workers() decides
    # with no option given, the config built from the arguments is the default config
    built = configs_from_args(a)
    assert built.loss == lc
    assert built.to_dict() | {"model": None} == tc.to_dict()


def test_train_options_reach_the_config_fields_they_name():
    from ecnf.cli import build_parser
    from ecnf.cli.train import configs_from_args

    argv = [
        "train",
        "--data",
        "digits",
        "--warmup",
        "7",
        "--out",
        "runs/x",
        "--grad-clip",
        "0",
        "--no-ema-warmup",
        "--loss",
        "consistency",
        "--segments",
        "3",
        "--alpha",
        "0.5",
        "--channels",
        "16",
        "--flip",
        "--ot-workers",
        "0",
        "--teacher-method",
        "heun",
    ]
    config = configs_from_args(build_parser().parse_args(argv))
    assert (config.data, config.warmup_iterations, config.out_dir) == ("digits", 7, "runs/x")
    assert config.grad_clip is None and config.ema_warmup is False and config.flip is True
    assert (config.loss.name, config.loss.num_segments, config.loss.alpha) == (
        "consistency",
        3,
        0.5,
    )
    assert config.model.arch == "unet" and config.model.channels == 16
    assert config.ot_workers == 0 and config.teacher_method == "heun"

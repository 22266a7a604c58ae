"""Fixtures shared by the studio's AppTest suites."""

import shutil
from pathlib import Path

import pytest

from ecnf import LossConfig, MLPConfig, TrainConfig, UNetConfig, fit


def train_tiny(out: Path, **config) -> Path:
    result = fit(TrainConfig(out_dir=str(out), log_every=5, **config), overwrite=True)
    return result.checkpoint


@pytest.fixture(scope="session")
def tiny_checkpoints(tmp_path_factory) -> Path:
    """A checkpoint folder like checkpoints/: two tiny 2D flows and a tiny digits UNet."""
    root = tmp_path_factory.mktemp("checkpoints")
    (root / "2d").mkdir()
    (root / "images").mkdir()
    runs = tmp_path_factory.mktemp("runs")
    for loss in ("fm", "otcfm"):
        ckpt = train_tiny(
            runs / loss,
            data="moons",
            model=MLPConfig(width=32, depth=2),
            loss=LossConfig(loss),
            iterations=20,
            batch_size=64,
            lr=2e-3,
        )
        shutil.copy(ckpt, root / "2d" / f"moons_{loss}.safetensors")
    unet = UNetConfig(
        data_shape=(1, 8, 8),
        channels=8,
        channel_mult=(1, 2),
        attention_levels=(),
        mid_attention=False,
        num_heads=1,
    )
    ckpt = train_tiny(runs / "digits", data="digits", model=unet, iterations=4, batch_size=32)
    shutil.copy(ckpt, root / "images" / "tiny_digits.safetensors")
    # the seed-paper ablations are small MLPs: the shipped ones, with their cards
    shutil.copytree(
        Path(__file__).resolve().parents[1] / "checkpoints" / "ablations", root / "ablations"
    )
    return root


@pytest.fixture
def studio(tiny_checkpoints, monkeypatch) -> Path:
    monkeypatch.setenv("ECNF_CHECKPOINTS_DIR", str(tiny_checkpoints))
    return tiny_checkpoints

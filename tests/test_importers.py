"""Importing TorchCFM checkpoints: the released layout, safety, errors, sampling agreement."""

import http.server
import threading
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest
import torch
from torchcfm.models.unet.unet import UNetModelWrapper
from torchdiffeq import odeint

from ecnf import load
from ecnf.checkpoint import CheckpointError, read_checkpoint
from ecnf.cli import main
from ecnf.data.sources import DATA_ENV_VAR
from ecnf.importers import RELEASES, download_release, import_torchcfm, read_torchcfm
from ecnf.nets import build_model, config_from_dict, config_to_dict
from ecnf.nets.torchcfm import TORCHCFM_CIFAR10, TorchCFMUNetConfig
from ecnf.solvers import integrate

# a small TorchCFM UNet of the released kind (the released one has 35.75 M parameters)
SMALL = {
    "dim": (3, 16, 16),
    "num_channels": 32,
    "num_res_blocks": 1,
    "channel_mult": [1, 2],
    "num_heads": 2,
    "num_head_channels": 8,
    "attention_resolutions": "8",
    "dropout": 0.1,
}
SMALL_CONFIG = TorchCFMUNetConfig(
    data_shape=(3, 16, 16),
    num_channels=32,
    num_res_blocks=1,
    channel_mult=(1, 2),
    num_heads=2,
    num_head_channels=8,
    attention_resolutions="8",
)
SMALL_FLAGS = [
    "--data-shape", "3", "16", "16", "--num-channels", "32", "--num-res-blocks", "1",
    "--channel-mult", "1", "2", "--num-heads", "2", "--num-head-channels", "8",
    "--attention-resolutions", "8",
]  # fmt: skip


def torchcfm_net(seed: int = 0) -> UNetModelWrapper:
    torch.manual_seed(seed)
    net = UNetModelWrapper(**SMALL)
    with torch.no_grad():  # the output layer starts at zero: give every weight a value
        for p in net.parameters():
            p.add_(0.02 * torch.randn_like(p))
    return net.eval()


def save_released_layout(path: Path, ema: UNetModelWrapper, *, prefix: str = "") -> Path:
    """A file laid out as TorchCFM's train_cifar10.py saves it."""
    net = torchcfm_net(seed=1)
    optim = torch.optim.Adam(net.parameters(), lr=2e-4)
    sched = torch.optim.lr_scheduler.LambdaLR(optim, lambda step: 1.0)
    torch.save(
        {
            "net_model": {prefix + k: v for k, v in net.state_dict().items()},
            "ema_model": {prefix + k: v for k, v in ema.state_dict().items()},
            "optim": optim.state_dict(),
            "sched": sched.state_dict(),
            "step": 1234,
        },
        path,
    )
    return path


@pytest.fixture(scope="module")
def reference():
    return torchcfm_net()


@pytest.mark.parametrize("prefix", ["", "module."])
def test_released_layout_imports_and_runs_like_torchcfm(tmp_path, reference, prefix):
    pt = save_released_layout(
        tmp_path / "otcfm_cifar10_weights_step_400000.pt", reference, prefix=prefix
    )
    out = import_torchcfm(
        pt, tmp_path / "m.safetensors", config=SMALL_CONFIG, release=RELEASES["otcfm"]
    )
    model = load(out, device="cpu")
    x, t = torch.randn(4, 3, 16, 16), torch.rand(4)
    with torch.no_grad():
        torch.testing.assert_close(model(x, t), reference(t, x), rtol=0, atol=0)
    meta = read_checkpoint(out).metadata
    assert meta["steps"] == 1234 and meta["imported"]["weights"] == "ema_model"
    assert meta["imported"]["reported"]["FID"] == 3.5  # what the source reports, as reported
    card = out.with_suffix(".md").read_text()
    assert "Reported, not measured here: FID 3.5" in card and "MIT" in card


def test_ecnf_samples_equal_torchcfm_sampling(tmp_path, reference):
    """ECNF's solvers against torchdiffeq's odeint called as TorchCFM's compute_fid.py calls
    it: the same noise, the same grid, the same tolerances."""
    pt = save_released_layout(tmp_path / "f.pt", reference)
    model = load(import_torchcfm(pt, tmp_path / "m.safetensors", config=SMALL_CONFIG), device="cpu")
    x0 = torch.randn(3, 3, 16, 16, generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        theirs = odeint(
            reference, x0, torch.linspace(0, 1, 2), rtol=1e-5, atol=1e-5, method="dopri5"
        )[-1]
        ours = integrate(model, x0, method="dopri5", rtol=1e-5, atol=1e-5).x
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)
        theirs = odeint(reference, x0, torch.linspace(0, 1, 11), method="euler")[-1]
        ours = integrate(model, x0, method="euler", steps=10).x
        torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-5)


def test_the_released_configuration_has_the_released_size():
    model = build_model(TORCHCFM_CIFAR10)
    assert round(sum(p.numel() for p in model.parameters()) / 1e6, 2) == 35.75
    assert config_from_dict(config_to_dict(TORCHCFM_CIFAR10)) == TORCHCFM_CIFAR10


class Payload:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):  # unpickling this would create the marker file
        return (open, (str(self.marker), "w"))


def test_a_pickle_payload_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "ran"
    pt = tmp_path / "evil.pt"
    torch.save({"ema_model": Payload(marker), "step": 1}, pt)
    with pytest.raises(CheckpointError, match=r"refused: .*full unpickling.*asks for io.open"):
        read_torchcfm(pt, SMALL_CONFIG)
    assert not marker.exists()
    assert main(["import", "torchcfm", str(pt), "--out", str(tmp_path / "x.safetensors")]) == 2
    assert not marker.exists() and not (tmp_path / "x.safetensors").exists()


def test_errors_name_what_is_wrong(tmp_path, reference):
    pt = save_released_layout(tmp_path / "f.pt", reference)
    wrong = TorchCFMUNetConfig(**{**SMALL_CONFIG.__dict__, "num_channels": 64})
    with pytest.raises(CheckpointError, match=r"num_channels=64.*: wrong shapes time_embed"):
        read_torchcfm(pt, wrong)
    deeper = TorchCFMUNetConfig(**{**SMALL_CONFIG.__dict__, "num_res_blocks": 2})
    with pytest.raises(CheckpointError, match="missing keys"):
        read_torchcfm(pt, deeper)
    torch.save({"net_model": reference.state_dict()}, tmp_path / "no_ema.pt")
    with pytest.raises(CheckpointError, match="no 'ema_model' entry; the file holds net_model"):
        read_torchcfm(tmp_path / "no_ema.pt", SMALL_CONFIG)
    (tmp_path / "junk.pt").write_bytes(b"not a torch file")
    with pytest.raises(CheckpointError, match="not a readable PyTorch file"):
        read_torchcfm(tmp_path / "junk.pt", SMALL_CONFIG)
    with pytest.raises(ValueError, match="attention_resolutions"):
        TorchCFMUNetConfig(attention_resolutions="64")


def test_cli_imports_a_bare_state_dict_and_samples_it(tmp_path, reference, capsys):
    pt = tmp_path / "mnist_like.pt"
    torch.save(reference.state_dict(), pt)  # a bare state dict, as TorchCFM's notebooks save
    out = tmp_path / "m.safetensors"
    assert main(["import", "torchcfm", str(pt), "--out", str(out), *SMALL_FLAGS, "--half"]) == 0
    assert "imported" in capsys.readouterr().out
    assert read_checkpoint(out).metadata["imported"]["weights"] == "state_dict"
    argv = ["sample", str(out), "--method", "euler", "--steps", "2", "-n", "3", "--device", "cpu"]
    assert main([*argv, "--out", str(tmp_path / "s")]) == 0
    assert (tmp_path / "s.png").exists()
    # a wrong configuration is a one-line error, and nothing is written
    bad = tmp_path / "bad.safetensors"
    assert main(["import", "torchcfm", str(pt), "--out", str(bad)]) == 2
    assert "do not fit" in capsys.readouterr().err and not bad.exists()
    assert main(["import", "torchcfm", "--out", str(bad)]) == 2  # neither a file nor --download


class RangeHandler(http.server.BaseHTTPRequestHandler):
    """Serves one file and honours ``Range: bytes=N-`` as a release server does."""

    body = b""
    ranges: ClassVar[list] = []

    def do_GET(self):
        start = 0
        header = self.headers.get("Range")
        type(self).ranges.append(header)
        if header:
            start = int(header.removeprefix("bytes=").rstrip("-"))
            if start >= len(self.body):
                self.send_response(416)
                self.end_headers()
                return
            self.send_response(206)
            self.send_header(
                "Content-Range", f"bytes {start}-{len(self.body) - 1}/{len(self.body)}"
            )
        else:
            self.send_response(200)
        self.send_header("Content-Length", str(len(self.body) - start))
        self.end_headers()
        self.wfile.write(self.body[start:])

    def log_message(self, *args):
        pass


@pytest.fixture
def server(tmp_path, reference):
    pt = save_released_layout(tmp_path / "served.pt", reference)
    RangeHandler.body, RangeHandler.ranges = pt.read_bytes(), []
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RangeHandler)
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{httpd.server_port}/file.pt"
    httpd.shutdown()


def test_download_resumes_a_partial_file(tmp_path, server):
    folder = tmp_path / "downloads"
    folder.mkdir()
    name = RELEASES["icfm"].file
    half = len(RangeHandler.body) // 2
    (folder / f"{name}.part").write_bytes(RangeHandler.body[:half])  # an interrupted download
    path = download_release("icfm", folder, url=server, progress=False)
    assert path == folder / name and path.read_bytes() == RangeHandler.body
    assert RangeHandler.ranges == [f"bytes={half}-"] and not (folder / f"{name}.part").exists()
    assert download_release("icfm", folder, url=server, progress=False) == path  # no refetch
    assert len(RangeHandler.ranges) == 1


def test_cli_download_then_import(tmp_path, server, monkeypatch, capsys):
    monkeypatch.setenv("ECNF_IMPORTED_DIR", str(tmp_path / "imported"))
    argv = ["import", "torchcfm", "--download", "otcfm", "--url", server, *SMALL_FLAGS]
    assert main(argv) == 0
    out = tmp_path / "imported" / "cifar10_otcfm_torchcfm.safetensors"
    meta = read_checkpoint(out).metadata
    assert meta["imported"]["url"] == RELEASES["otcfm"].url and RangeHandler.ranges == [None]
    unreachable = ["import", "torchcfm", "--download", "fm", "--url", "http://127.0.0.1:9/x.pt"]
    assert main(unreachable) == 1
    assert "offline" in capsys.readouterr().err


@pytest.fixture
def imported(studio, tmp_path, reference, monkeypatch):
    """The tiny studio checkpoints plus one imported TorchCFM model (small configuration)."""
    monkeypatch.setenv("ECNF_IMPORTED_DIR", str(tmp_path / "imported"))
    pt = save_released_layout(tmp_path / RELEASES["otcfm"].file, reference)
    out = tmp_path / "imported" / "cifar10_otcfm_torchcfm.safetensors"
    return import_torchcfm(pt, out, config=SMALL_CONFIG, release=RELEASES["otcfm"])


def test_image_page_lists_and_samples_an_imported_model(imported, monkeypatch):
    from helpers import metric, open_app

    at = open_app("app_pages/image_trajectories.py")
    assert not any("no imported model" in c.value for c in at.caption)
    at.selectbox(key="img_checkpoint").set_value("imported/cifar10_otcfm_torchcfm").run()
    assert not at.exception, at.exception
    captions = " ".join(c.value for c in at.caption)
    assert "Imported from TorchCFM" in captions and "FID 3.5 reported by" in captions
    assert len(at.image) == 2 and metric(at, "NFE") == "40"  # rk4, 10 steps
    # a large model on a CPU starts at 4 images and waits for the estimate to be accepted
    monkeypatch.setattr("ecnf_display.budget.LARGE_MODEL_PARAMETERS", 0)
    at.run()
    assert not at.exception, at.exception
    assert at.slider(key="img_count_large").value == 4
    assert any("runs on the CPU: about" in i.value for i in at.info) and not at.image
    at.button(key="img_run").click().run()
    assert not at.exception, at.exception
    assert len(at.image) == 2 and metric(at, "NFE") == "40"


def test_without_an_imported_model_the_pages_say_how_to_get_one(studio, tmp_path, monkeypatch):
    from helpers import open_app

    monkeypatch.setenv("ECNF_IMPORTED_DIR", str(tmp_path / "none"))
    at = open_app("app_pages/image_trajectories.py")
    assert any("python -m ecnf import torchcfm --download otcfm" in c.value for c in at.caption)


def test_the_labs_list_an_imported_model(imported, tmp_path, monkeypatch):
    from helpers import open_app

    label = "imported/cifar10_otcfm_torchcfm"
    at = open_app("app_pages/solver_lab.py")
    at.selectbox(key="sl_model").set_value(label).run()
    assert not at.exception, at.exception
    assert any("only samples are shown" in i.value for i in at.info)  # no classifier for it
    at = open_app("app_pages/likelihood_lab.py")
    assert label in at.selectbox(key="ll_image_model").options
    monkeypatch.setattr("ecnf_display.budget.LARGE_MODEL_PARAMETERS", 0)
    monkeypatch.setenv(DATA_ENV_VAR, str(tmp_path / "no-data"))
    at.selectbox(key="ll_image_model").set_value(label).run()
    assert not at.exception, at.exception
    # without the CIFAR-10 test set the page says so before any slow work
    assert at.error and "CIFAR-10 was not found" in at.error[0].value and not at.info


def test_the_demo_samples_an_imported_model(imported, monkeypatch, tmp_path):
    from helpers import demo_client
    from PIL import Image

    import gradio_app

    with demo_client(tmp_path / "dl") as client:
        name = "imported/cifar10_otcfm_torchcfm"
        _, samples, real, info = client.predict(name, "euler", 3, 4, 0, api_name="/sample_images")
    # 4 images of 16x16 tiled 2 x 2 with 2-pixel gaps: 38 px, enlarged to at most 480 px
    assert Image.open(samples).size == (456, 456) and real is None
    assert "**NFE:** 3 (euler" in info and "unavailable" in info  # no CIFAR-10 data here
    model = load(imported, device="cpu")
    x0 = torch.randn((4, 3, 16, 16), generator=torch.Generator().manual_seed(0))
    expected = gradio_app.grid_image(integrate(model, x0, method="euler", steps=3).x)
    assert np.array_equal(np.asarray(Image.open(samples).convert("RGB")), np.asarray(expected))


def test_the_space_imports_at_start_unless_turned_off(monkeypatch):
    import gradio_app

    calls = []
    monkeypatch.setattr(gradio_app, "fetch_release", lambda name, **kw: calls.append(name))
    monkeypatch.delenv("SPACE_ID", raising=False)
    monkeypatch.delenv(gradio_app.IMPORT_AT_START, raising=False)
    gradio_app.import_at_start()
    assert calls == []  # not on a Space: nothing is fetched
    monkeypatch.setenv("SPACE_ID", "someone/ecnf")
    gradio_app.import_at_start()
    assert calls == ["otcfm"]
    monkeypatch.setenv(gradio_app.IMPORT_AT_START, "none")
    gradio_app.import_at_start()
    assert calls == ["otcfm"]


def test_torchcfms_mnist_example_imports_given_its_options(tmp_path):
    from torchcfm.models.unet import UNetModel

    torch.manual_seed(0)
    theirs = UNetModel(dim=(1, 28, 28), num_channels=32, num_res_blocks=1).eval()  # as in
    torch.save(theirs.state_dict(), tmp_path / "mnist.pt")  # TorchCFM's MNIST example
    out = tmp_path / "mnist.safetensors"
    options = ["--data-shape", "1", "28", "28", "--num-channels", "32", "--num-res-blocks", "1"]
    options += ["--channel-mult", "1", "2", "2", "--num-heads", "1", "--num-head-channels", "-1"]
    argv = ["import", "torchcfm", str(tmp_path / "mnist.pt"), "--out", str(out), "--dropout", "0"]
    assert main([*argv, "--dataset", "mnist", *options]) == 0
    x, t = torch.randn(2, 1, 28, 28), torch.rand(2)
    with torch.no_grad():
        torch.testing.assert_close(load(out, device="cpu")(x, t), theirs(t, x), rtol=0, atol=0)

r"""The standard FID and Inception Score network, through torch-fidelity.

FID and IS are only comparable with published numbers when computed with one particular
network: the TensorFlow Inception-v3 graph of 2015-12-05, its pool features (2048) and its
1008 logits, fed 299 x 299 RGB images resized the way TensorFlow 1 resized them.
`torch-fidelity <https://github.com/toshas/torch-fidelity>`_ (which torchmetrics' FID also
builds on) reimplements that network bit for bit in PyTorch; :class:`InceptionFeatures`
wraps it as a :class:`~ecnf.metrics.FeatureNet` named :py:`"inception-v3"`, whose metrics
are the only ones called ``"FID"``, ``"KID"`` and ``"IS"``.

The weights (about 92 MB) are the file :data:`INCEPTION_WEIGHTS_FILE`, published by
torch-fidelity at :data:`INCEPTION_WEIGHTS_URL`; pytorch-fid publishes the same
conversion as ``pt_inception-2015-12-05-6726825d.pth``, which loads too. Give a local copy
with :py:`weights_path` (``--inception-weights PATH`` on the command line), or let the
file be downloaded once into torch's hub cache. It is read with :py:`torch.load` in
weights-only mode, which refuses any pickled code.

References:
    | Rethinking the Inception Architecture for Computer Vision (Szegedy et al., 2016)
      https://arxiv.org/abs/1512.00567
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from .._checks import check_finite, check_positive_int
from ..data.images import from_model_range

__all__ = [
    "INCEPTION_WEIGHTS_FILE",
    "INCEPTION_WEIGHTS_URL",
    "InceptionFeatures",
    "InceptionWeightsError",
    "default_inception_weights_path",
]

INCEPTION_WEIGHTS_FILE = "weights-inception-2015-12-05-6726825d.pth"
INCEPTION_WEIGHTS_URL = (
    f"https://github.com/toshas/torch-fidelity/releases/download/v0.2.0/{INCEPTION_WEIGHTS_FILE}"
)
INCEPTION_INPUT_SIZE = 299
_NUM_CLASSES = 1008
_HOW_TO = (
    f"pass the file with --inception-weights PATH (weights_path=PATH): download "
    f"{INCEPTION_WEIGHTS_URL} (or pytorch-fid's pt_inception-2015-12-05-6726825d.pth) on a "
    "machine that is online and copy it here, or run once online so it is cached; offline, "
    "use the FD-<DATASET> metrics of ecnf.metrics.ClassifierFeatures instead"
)


class InceptionWeightsError(FileNotFoundError):
    r"""The Inception-v3 weights are not available; the message says how to get them."""


def default_inception_weights_path() -> Path:
    r"""Where the weights are cached: :py:`<torch hub dir>/checkpoints/<file>`."""
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_WEIGHTS_FILE


def _torch_fidelity() -> Any:
    try:
        import torch_fidelity.feature_extractor_inceptionv3 as module
    except ImportError as error:
        raise ImportError(
            "InceptionFeatures needs torch-fidelity: pip install torch-fidelity==0.4.0"
        ) from error
    return module


@contextlib.contextmanager
def _weights_only_loads() -> Iterator[None]:
    """Make every torch.load inside run in weights-only mode (torch-fidelity asks for full
    unpickling, which could run code from the file)."""
    saved = {k: os.environ.pop(k, None) for k in ("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD",)}
    saved["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = os.environ.get("TORCH_FORCE_WEIGHTS_ONLY_LOAD")
    os.environ["TORCH_FORCE_WEIGHTS_ONLY_LOAD"] = "1"
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


def _check_weights(path: Path) -> None:
    """Open the file safely and refuse anything but the FID Inception state dict."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # unpickling fails in many ways on foreign files
        raise ValueError(
            f"weights_path={str(path)!r} is not a readable PyTorch weights file ({error}); "
            + _HOW_TO
        ) from error
    fc = state.get("fc.weight") if isinstance(state, dict) else None
    if fc is None or tuple(fc.shape) != (_NUM_CLASSES, 2048) or "AuxLogits.fc.weight" in state:
        found = tuple(fc.shape) if torch.is_tensor(fc) else None
        raise ValueError(
            f"weights_path={str(path)!r} does not hold the FID Inception-v3 weights (expected "
            f"fc.weight of shape ({_NUM_CLASSES}, 2048), found {found}); torchvision's ImageNet "
            "Inception-v3 is a different network whose scores are not comparable with "
            "published FIDs. " + _HOW_TO
        )


def _build_extractor(path: Path) -> nn.Module:
    """torch-fidelity's Inception-v3, giving pool features and unbiased logits."""
    module = _torch_fidelity()
    with _weights_only_loads():
        return module.FeatureExtractorInceptionV3(
            "inception-v3-compat",
            ["2048", "logits_unbiased"],
            feature_extractor_weights_path=str(path),
        )


def _resolve_weights(weights_path: str | os.PathLike | None, download: bool) -> Path:
    if weights_path is not None:
        path = Path(weights_path).expanduser()
        if not path.is_file():
            raise InceptionWeightsError(
                f"weights_path={str(weights_path)!r} does not exist; {_HOW_TO}"
            )
        return path
    path = default_inception_weights_path()
    if path.is_file():
        return path
    if not download:
        raise InceptionWeightsError(
            f"no Inception-v3 weights at {path} and download=False; {_HOW_TO}"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        torch.hub.download_url_to_file(INCEPTION_WEIGHTS_URL, str(path), progress=True)
    except Exception as error:  # URLError, HTTPError, timeouts, ...
        reason = " ".join(str(error).split())
        raise InceptionWeightsError(
            f"downloading the Inception-v3 weights to {path} failed ({reason}); {_HOW_TO}"
        ) from error
    return path


class InceptionFeatures:
    r"""The FID / IS Inception-v3 network as a :class:`~ecnf.metrics.FeatureNet`.

    Images in :math:`[-1, 1]` of shape :math:`(N, C, H, W)` with :math:`C` 1 or 3 are
    clamped and rounded to uint8 (as an image file would hold them), grey images are
    repeated to RGB, and torch-fidelity resizes them to 299 x 299 with TensorFlow 1's
    bilinear resampling and scales them to :math:`[-1, 1]` inside the network. The
    features are the 2048 pool features; the probabilities the softmax of the 1008
    logits without bias that torch-fidelity's Inception Score uses.

    Arguments:
        weights_path: A local copy of :data:`INCEPTION_WEIGHTS_FILE`. By default the file
            in torch's hub cache (:func:`default_inception_weights_path`), downloaded
            there first when missing and :py:`download` is true.
        download: Whether a missing cached file may be downloaded.
        device: The device; by default CUDA when available, else the CPU.
        batch_size: Images per forward pass.

    Raises:
        InceptionWeightsError: If the weights are missing and cannot be downloaded.
        ValueError: If the file is not the FID Inception-v3 state dict.
    """

    name = "inception-v3"
    metric_prefix = "FID"
    num_classes = _NUM_CLASSES

    def __init__(
        self,
        weights_path: str | os.PathLike | None = None,
        *,
        download: bool = True,
        device: str | torch.device | None = None,
        batch_size: int = 64,
    ):
        self.batch_size = check_positive_int("batch_size", batch_size)
        self.weights_path = _resolve_weights(weights_path, download)
        _check_weights(self.weights_path)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.network = _build_extractor(self.weights_path).to(self.device).eval()

    @staticmethod
    def to_network_input(x: Tensor) -> Tensor:
        r"""Images in :math:`[-1, 1]` (or uint8) of shape :math:`(N, 1 \text{ or } 3, H, W)`
        as the uint8 RGB batch :math:`(N, 3, H, W)` the network takes.

        Example:
            >>> InceptionFeatures.to_network_input(torch.zeros(2, 1, 8, 8)).shape
            torch.Size([2, 3, 8, 8])
        """
        if not torch.is_tensor(x) or x.dim() != 4 or x.shape[1] not in (1, 3):
            found = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(
                f"x must have shape (N, 1, H, W) or (N, 3, H, W) for inception-v3, got {found}"
            )
        if min(x.shape[2:]) < 2:
            raise ValueError(f"x must be at least 2 x 2 pixels, got {tuple(x.shape)}")
        if x.dtype != torch.uint8:
            if not x.is_floating_point():
                raise ValueError(f"x must be floating point in [-1, 1] or uint8, got {x.dtype}")
            x = from_model_range(check_finite("x", x))
        return x.expand(-1, 3, -1, -1).contiguous()

    @torch.no_grad()
    def features_and_probs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""The pool features :math:`(N, 2048)` and class probabilities :math:`(N, 1008)`."""
        x = self.to_network_input(x)
        features, probs = [], []
        for batch in x.split(self.batch_size):
            pool, logits = self.network(batch.to(self.device))
            features.append(pool.float().cpu())
            probs.append(logits.double().softmax(dim=1).float().cpu())
        if not features:
            return torch.empty(0, 2048), torch.empty(0, _NUM_CLASSES)
        return torch.cat(features), torch.cat(probs)

    def features(self, x: Tensor) -> Tensor:
        r"""The pool features, of shape :math:`(N, 2048)`."""
        return self.features_and_probs(x)[0]

    def probs(self, x: Tensor) -> Tensor:
        r"""The class probabilities, of shape :math:`(N, 1008)`."""
        return self.features_and_probs(x)[1]

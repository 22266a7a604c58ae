r"""Checkpoints from other libraries, turned into ordinary ECNF checkpoints.

TorchCFM (Tong et al. 2023, "Improving and generalizing flow-based generative models with
minibatch optimal transport", https://github.com/atong01/conditional-flow-matching, MIT
licence) releases three CIFAR-10 flows trained for 400,000 steps: OT-CFM, I-CFM and the FM
of Lipman et al. Each ``.pt`` file is a dict with ``net_model``, ``ema_model``, ``optim``,
``sched`` and ``step``; the model entries are state dicts of its ``UNetModelWrapper``
(sometimes with the ``module.`` prefix of ``DataParallel``).

:func:`import_torchcfm` reads such a file with :py:`torch.load(..., weights_only=True)` and
nothing else, checks every key and shape against the configuration, and writes a
safetensors checkpoint that :func:`ecnf.load` rebuilds, with a model card beside it.
:func:`download_release` fetches a released file, resumably.
"""

from __future__ import annotations

import os
import pickle
import re
import sys
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from ._checkpoint_file import CheckpointError
from ._io import atomic_write
from .checkpoint import save_checkpoint
from .nets.torchcfm import TORCHCFM_CIFAR10, TorchCFMUNet, TorchCFMUNetConfig
from .shipped import imported_dir

__all__ = [
    "RELEASES",
    "RELEASE_URL",
    "Release",
    "default_import_path",
    "download_release",
    "fetch_release",
    "import_command",
    "import_torchcfm",
    "read_torchcfm",
    "release_reachable",
]

#: Where TorchCFM's release 1.0.4 keeps its CIFAR-10 weights.
RELEASE_URL = "https://github.com/atong01/conditional-flow-matching/releases/download/1.0.4/"
_README = "https://github.com/atong01/conditional-flow-matching/tree/main/examples/images/cifar10"


@dataclass(frozen=True)
class Release:
    """One released TorchCFM CIFAR-10 model.

    ``reported`` is what TorchCFM's README says of it (``None`` where it says nothing);
    ECNF shows it labelled as reported, never as measured.
    """

    name: str
    file: str
    loss: str
    title: str
    reported: dict[str, Any] | None = None

    @property
    def url(self) -> str:
        return RELEASE_URL + self.file


RELEASES: dict[str, Release] = {
    "otcfm": Release(
        "otcfm",
        "otcfm_cifar10_weights_step_400000.pt",
        "otcfm",
        "OT-CFM (minibatch optimal-transport couplings)",
        reported={
            "FID": 3.5,
            "by": f"TorchCFM's CIFAR-10 README ({_README})",
            "solver": "dopri5, rtol = atol = 1e-5 (compute_fid.py)",
            "samples": 50000,
            "reference": "CIFAR-10 training set, clean-fid legacy_tensorflow mode",
        },
    ),
    "icfm": Release(
        "icfm",
        "cfm_cifar10_weights_step_400000.pt",
        "icfm",
        "I-CFM (independent couplings)",
    ),
    "fm": Release(
        "fm",
        "fm_cifar10_weights_step_400000.pt",
        "fm",
        "FM (Lipman et al. 2023)",
    ),
}


def default_import_path(name: str) -> Path:
    """Where ``python -m ecnf import torchcfm --download NAME`` writes its checkpoint."""
    return imported_dir() / f"cifar10_{name}_torchcfm.safetensors"


def import_command(name: str = "otcfm") -> str:
    """The one command that gets a released model, as the studio and the demo print it."""
    return f"python -m ecnf import torchcfm --download {name}"


def _torch_load(path: Path) -> Any:
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as error:
        found = re.search(r"Unsupported global: GLOBAL (\S+)", str(error))
        if found is None:  # the restricted unpickler met bytes that are no pickle at all
            raise CheckpointError(f"{path}: not a readable PyTorch file") from None
        raise CheckpointError(
            f"{path}: refused: loading it needs full unpickling, which can run arbitrary code "
            f"(it asks for {found.group(1)}), and foreign files are only read with "
            "torch.load(weights_only=True). Re-save its state dicts as plain tensors."
        ) from None
    except FileNotFoundError:
        raise
    except (RuntimeError, EOFError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable PyTorch file: {error}") from None


def _few(items: list[str], n: int = 4) -> str:
    shown = ", ".join(items[:n])
    return shown + (f" and {len(items) - n} more" if len(items) > n else "")


def read_torchcfm(
    path: str | os.PathLike,
    config: TorchCFMUNetConfig = TORCHCFM_CIFAR10,
    *,
    weights: str = "ema_model",
) -> tuple[TorchCFMUNet, dict[str, Any]]:
    r"""Builds TorchCFM's UNet from a TorchCFM checkpoint file, safely.

    Arguments:
        path: A TorchCFM ``.pt`` file: the training dict (``net_model``, ``ema_model``,
            ``step``...) or a bare state dict.
        config: The network's configuration (the released CIFAR-10 one by default).
        weights: Which entry of the training dict to use: ``ema_model`` (what TorchCFM
            evaluates) or ``net_model``.

    Returns:
        The network in evaluation mode, and ``{"weights": ..., "step": ..., "prefix":
        ...}`` describing what was read.

    Raises:
        CheckpointError: A file that needs full unpickling (refused, nothing in it runs),
            an unreadable file, a missing entry, or weights that do not fit ``config``
            (the missing, unexpected and mis-shaped keys are named).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such file")
    if weights not in ("ema_model", "net_model"):
        raise ValueError(f"weights must be 'ema_model' or 'net_model', got {weights!r}")
    content = _torch_load(path)
    if not isinstance(content, dict):
        raise CheckpointError(f"{path}: expected a dict, found a {type(content).__name__}")
    step = None
    if content and all(isinstance(v, Tensor) for v in content.values()):
        state, weights = content, "state_dict"
    else:
        if weights not in content:
            raise CheckpointError(
                f"{path}: no {weights!r} entry; the file holds {_few(sorted(map(str, content)))}"
            )
        state, step = content[weights], content.get("step")
        if not isinstance(state, dict) or not all(isinstance(v, Tensor) for v in state.values()):
            raise CheckpointError(f"{path}: {weights!r} is not a state dict of tensors")
    prefix = ""
    if state and all(k.startswith("module.") for k in state):  # saved from DataParallel
        prefix = "module."
        state = {k[len(prefix) :]: v for k, v in state.items()}

    model = TorchCFMUNet(config)
    expected = model.net.state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {tuple(v.shape)})"
        for k, v in expected.items()
        if k in state and state[k].shape != v.shape
    ]
    if missing or unexpected or wrong:
        problems = []
        if missing:
            problems.append(f"missing keys {_few(missing)}")
        if unexpected:
            problems.append(f"unexpected keys {_few(unexpected)}")
        if wrong:
            problems.append(f"wrong shapes {_few(wrong)}")
        raise CheckpointError(
            f"{path}: its {weights} weights do not fit TorchCFM's UNet with "
            f"{_changed_options(config)}: {'; '.join(problems)}. Give the configuration it was "
            "trained with (python -m ecnf import torchcfm --help lists the options)."
        )
    model.net.load_state_dict(state)
    if isinstance(step, Tensor):
        step = int(step)
    return model.eval(), {"weights": weights, "step": step, "prefix": prefix}


def _changed_options(config: TorchCFMUNetConfig) -> str:
    default = asdict(TorchCFMUNetConfig())
    changed = {k: v for k, v in asdict(config).items() if default[k] != v}
    if not changed:
        return "the released CIFAR-10 configuration"
    return ", ".join(f"{k}={v}" for k, v in changed.items())


def import_torchcfm(
    path: str | os.PathLike,
    out: str | os.PathLike | None = None,
    *,
    config: TorchCFMUNetConfig = TORCHCFM_CIFAR10,
    weights: str = "ema_model",
    release: Release | None = None,
    dataset: str = "cifar10",
    half: bool = False,
    command: str | None = None,
) -> Path:
    r"""Turns a TorchCFM checkpoint into an ECNF checkpoint, with a model card beside it.

    Arguments:
        path: The TorchCFM ``.pt`` file (see :func:`read_torchcfm`).
        out: The ``.safetensors`` file to write; by default
            :func:`default_import_path` of the release (or of the file's name).
        config, weights: As :func:`read_torchcfm`.
        release: The :data:`RELEASES` entry the file comes from (provenance and the
            reported FID in the metadata and the card); ``None`` for another file.
        dataset: What the model was trained on (``cifar10`` for the releases).
        half: Store the weights as float16 (half the file; :func:`ecnf.load` casts back).
        command: The command line recorded in the metadata.

    Returns:
        The checkpoint written. Its card is the same path with ``.md``.
    """
    path = Path(path)
    model, read = read_torchcfm(path, config, weights=weights)
    if out is None:
        out = default_import_path(release.name if release else path.stem)
    out = Path(out)
    if out.suffix != ".safetensors":
        raise ValueError(f"--out must end in .safetensors, got {out}")
    metadata = {
        "dataset": dataset,
        "source": "gaussian",
        "loss": release.loss if release else "unknown",
        "steps": read["step"],
        "status": "imported",
        "imported": {
            "library": "TorchCFM",
            "licence": "MIT",
            "file": path.name,
            "url": release.url if release else None,
            "weights": read["weights"],
            "training_steps": read["step"],
            "reported": release.reported if release else None,
        },
        "command": command,
    }
    written = save_checkpoint(out, model=model, metadata=metadata, half=half)
    atomic_write(written.with_suffix(".md"), model_card(written.stem, model, metadata).encode())
    return written


def model_card(name: str, model: TorchCFMUNet, metadata: dict[str, Any]) -> str:
    """The Markdown card of an imported checkpoint: provenance, configuration and what the
    source reports, labelled as reported."""
    imported = metadata["imported"]
    params = sum(p.numel() for p in model.parameters())
    release = next((r for r in RELEASES.values() if r.file == imported["file"]), None)
    title = release.title if release else "a TorchCFM UNet"
    lines = [
        f"# {name}",
        "",
        f"{title}, trained by TorchCFM on `{metadata['dataset']}` and imported into ECNF "
        f"({imported['weights']} weights, {params / 1e6:.2f} M parameters, "
        f"{imported['training_steps'] or 'unrecorded'} training steps).",
        "",
        f"- Source: {imported['url'] or imported['file']}",
        f"- Licence: {imported['licence']} (TorchCFM, Tong et al. 2023, arXiv:2302.00482)",
        f"- Network: TorchCFM's `UNetModelWrapper` with {_changed_options(model.config)}, run by "
        "TorchCFM's own code behind ECNF's `(x, t)` convention.",
        "",
        "## Quality",
        "",
    ]
    reported = imported["reported"]
    if reported:
        lines.append(
            f"- Reported, not measured here: FID {reported['FID']} by {reported['by']}, "
            f"{reported['samples']} samples, {reported['solver']}, against the "
            f"{reported['reference']}."
        )
    else:
        lines.append("- The source reports no FID for this file.")
    lines += [
        "- To measure it: `python -m ecnf eval "
        f"{name}.safetensors --method dopri5 -n 50000 --inception-weights PATH` "
        "(Inception-v3 FID; a GPU is needed for 50,000 samples in reasonable time).",
        "",
        f"Imported with: `{metadata['command'] or 'ecnf.importers.import_torchcfm'}`",
        "",
    ]
    return "\n".join(lines)


def download_release(
    name: str,
    folder: str | os.PathLike | None = None,
    *,
    url: str | None = None,
    progress: bool = True,
    timeout: float = 30.0,
) -> Path:
    r"""Downloads a released TorchCFM file, resuming a partial download.

    The bytes go to ``FILE.part`` first (an interrupted download continues from there
    with an HTTP range request) and the file takes its final name only when complete.

    Arguments:
        name: A key of :data:`RELEASES` (``otcfm``, ``icfm`` or ``fm``).
        folder: Where to keep the ``.pt`` file (default: :func:`imported_dir`/``downloads``).
        url: Another address for the same file (a mirror).
        progress: Show a progress bar on stderr.
        timeout: Seconds to wait for the server.

    Returns:
        The complete file (already complete files are not fetched again).
    """
    if name not in RELEASES:
        raise ValueError(f"unknown release {name!r}; choose one of {', '.join(RELEASES)}")
    release = RELEASES[name]
    url = url or release.url
    folder = Path(folder) if folder is not None else imported_dir() / "downloads"
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / release.file
    if target.is_file():
        return target
    part = target.with_name(target.name + ".part")
    have = part.stat().st_size if part.exists() else 0
    request = urllib.request.Request(url, headers={"Range": f"bytes={have}-"} if have else {})
    try:
        response = urllib.request.urlopen(request, timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code == 416 and have:  # the partial file is already complete
            part.replace(target)
            return target
        raise OSError(f"downloading {url} failed: HTTP {error.code} {error.reason}") from None
    except (urllib.error.URLError, TimeoutError) as error:
        reason = getattr(error, "reason", error)
        raise OSError(
            f"downloading {url} failed ({reason}); this machine may be offline. Download the "
            f"file elsewhere and run: python -m ecnf import torchcfm FILE"
        ) from None
    with response:
        resumed = response.status == 206
        if not resumed:
            have = 0
        length = response.headers.get("Content-Length")
        total = have + int(length) if length is not None else None
        from tqdm.auto import tqdm

        bar = tqdm(
            total=total,
            initial=have,
            unit="B",
            unit_scale=True,
            desc=release.file,
            disable=not progress,
            file=sys.stderr,
        )
        with open(part, "ab" if resumed else "wb") as f, bar:
            while chunk := response.read(1 << 20):
                f.write(chunk)
                bar.update(len(chunk))
    size = part.stat().st_size
    if total is not None and size != total:
        raise OSError(
            f"downloading {url} stopped at {size} of {total} bytes; run the same command "
            "again to resume"
        )
    part.replace(target)
    return target


def fetch_release(
    name: str,
    *,
    url: str | None = None,
    config: TorchCFMUNetConfig = TORCHCFM_CIFAR10,
    out: str | os.PathLike | None = None,
    progress: bool = True,
    weights: str = "ema_model",
    half: bool = False,
    command: str | None = None,
) -> Path:
    """Downloads a released TorchCFM model (:func:`download_release`) and imports it
    (:func:`import_torchcfm`) to ``out`` or :func:`default_import_path`; what
    ``python -m ecnf import torchcfm --download NAME``, the studio's import button and the
    Space's start-up run. An already imported model is returned as it is."""
    target = Path(out) if out is not None else default_import_path(name)
    if target.is_file():
        return target
    path = download_release(name, url=url, progress=progress)
    release = RELEASES[name]
    return import_torchcfm(
        path, target, config=config, weights=weights, release=release, half=half, command=command
    )


def release_reachable(name: str = "otcfm", timeout: float = 3.0) -> bool:
    """Whether the released file answers a HEAD request now (is this machine online?)."""
    request = urllib.request.Request(RELEASES[name].url, method="HEAD")
    try:
        with urllib.request.urlopen(request, timeout=timeout):
            return True
    except (urllib.error.URLError, TimeoutError, OSError, ValueError):
        return False

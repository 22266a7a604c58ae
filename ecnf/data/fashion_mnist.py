"""Fashion-MNIST through torchvision, fed from Debian's ``dataset-fashion-mnist`` when offline.

torchvision's :class:`~torchvision.datasets.FashionMNIST` reads the four uncompressed IDX
files from ``<root>/FashionMNIST/raw/`` and otherwise downloads them. Debian and Ubuntu ship
the same files, gzipped, in the package ``dataset-fashion-mnist``
(``/usr/share/datasets/fashion-mnist/train-images-idx3-ubyte.gz`` and so on). Before asking
torchvision, :func:`load_fashion_mnist` decompresses them into the raw folder once, so the
data set loads on machines that reach a package mirror but not the internet.

References:
    | Fashion-MNIST: a Novel Image Dataset for Benchmarking Machine Learning Algorithms
      (Xiao et al., 2017) https://arxiv.org/abs/1708.07747
"""

from __future__ import annotations

import gzip
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .._io import atomic_file
from .sources import DatasetNotFoundError, resolve_root

__all__ = [
    "FASHION_MNIST_DEBIAN_DIR",
    "FASHION_MNIST_DIR_ENV_VAR",
    "FASHION_MNIST_FILES",
    "fashion_mnist_source_dir",
    "load_fashion_mnist",
    "stage_fashion_mnist",
]

#: Where Debian's ``dataset-fashion-mnist`` installs the gzipped IDX files.
FASHION_MNIST_DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")
#: Environment variable naming another folder that holds the IDX files (gzipped or not).
FASHION_MNIST_DIR_ENV_VAR = "ECNF_FASHION_MNIST_DIR"
#: The uncompressed IDX file names torchvision expects in its raw folder.
FASHION_MNIST_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


def fashion_mnist_source_dir() -> Path:
    """``$ECNF_FASHION_MNIST_DIR`` when set, else :data:`FASHION_MNIST_DEBIAN_DIR`."""
    override = os.environ.get(FASHION_MNIST_DIR_ENV_VAR)
    return Path(override).expanduser() if override else FASHION_MNIST_DEBIAN_DIR


def _raw_folder(root: Path) -> Path:
    return root / "FashionMNIST" / "raw"


def _missing(raw: Path) -> list[str]:
    return [name for name in FASHION_MNIST_FILES if not (raw / name).is_file()]


def _copy_atomic(source: Path, target: Path) -> None:
    """Write ``source`` (gunzipped when it ends in ``.gz``) to ``target`` in one rename."""
    opener = gzip.open if source.suffix == ".gz" else open
    with opener(source, "rb") as src, atomic_file(target) as dst:
        shutil.copyfileobj(src, dst, length=1 << 20)


def stage_fashion_mnist(
    root: str | os.PathLike[str] | None = None, source_dir: str | os.PathLike[str] | None = None
) -> bool:
    """Put the IDX files of ``source_dir`` where torchvision looks for them.

    Each of :data:`FASHION_MNIST_FILES` missing from ``<root>/FashionMNIST/raw/`` is copied
    from ``source_dir``, from ``NAME.gz`` (decompressed) or ``NAME``. Nothing is copied
    unless ``source_dir`` completes the set.

    Arguments:
        root: the data folder (default :func:`~ecnf.data.default_root`).
        source_dir: folder holding the files (default :func:`fashion_mnist_source_dir`).

    Returns:
        Whether the raw folder now holds all four files.
    """
    raw = _raw_folder(resolve_root(root))
    missing = _missing(raw)
    if not missing:
        return True
    source = fashion_mnist_source_dir() if source_dir is None else Path(source_dir).expanduser()
    found = {}
    for name in missing:
        candidates = [source / f"{name}.gz", source / name]
        found[name] = next((path for path in candidates if path.is_file()), None)
    if any(path is None for path in found.values()):
        return False
    raw.mkdir(parents=True, exist_ok=True)
    for name, path in found.items():
        _copy_atomic(path, raw / name)
    return True


def _not_found_message(raw: Path, source: Path) -> str:
    return (
        f"Fashion-MNIST was not found in {raw} nor in {source}. To obtain it, either "
        "install Debian/Ubuntu's package (`sudo apt-get install dataset-fashion-mnist`, "
        f"which puts the files in {FASHION_MNIST_DEBIAN_DIR}; set "
        f"{FASHION_MNIST_DIR_ENV_VAR} if they sit elsewhere), or pass --download "
        "(download=True) on a machine that is online."
    )


def _download(root: Path, raw: Path, train: bool) -> Any:
    """torchvision's FashionMNIST with ``download=True``; a failure says what to do."""
    from torchvision.datasets import FashionMNIST

    try:
        return FashionMNIST(str(root), train=train, download=True)
    except (OSError, RuntimeError) as err:
        reason = " ".join(str(err).split())  # one line
        raise DatasetNotFoundError(
            f"downloading Fashion-MNIST into {raw} failed ({reason}); check the connection, "
            "or install Debian/Ubuntu's package (`sudo apt-get install dataset-fashion-mnist`)"
        ) from err


def load_fashion_mnist(
    root: str | os.PathLike[str] | None = None,
    *,
    train: bool = True,
    download: bool = False,
    source_dir: str | os.PathLike[str] | None = None,
    with_labels: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """The Fashion-MNIST images, read by torchvision.

    Arguments:
        root: the data folder (default :func:`~ecnf.data.default_root`).
        train: the 60,000 training images, or else the 10,000 test images.
        download: let torchvision download the files when neither the raw folder nor
            ``source_dir`` holds them.
        source_dir: a folder of IDX files to copy from first (default
            :func:`fashion_mnist_source_dir`, Debian's folder).
        with_labels: also return the classes, int64 of shape ``(N,)``.

    Returns:
        The images, uint8 of shape ``(N, 1, 28, 28)`` (and the labels).
    """
    root = resolve_root(root)
    source = fashion_mnist_source_dir() if source_dir is None else Path(source_dir).expanduser()
    complete = stage_fashion_mnist(root, source)
    raw = _raw_folder(root)
    if not complete and not download:
        raise DatasetNotFoundError(_not_found_message(raw, source))

    if complete:
        from torchvision.datasets import FashionMNIST

        dataset = FashionMNIST(str(root), train=train)
    else:
        dataset = _download(root, raw, train)
    images = dataset.data
    if images.ndim != 3 or tuple(images.shape[1:]) != (28, 28):
        raise ValueError(
            f"Fashion-MNIST files in {raw} hold images of shape {tuple(images.shape[1:])}, "
            "expected (28, 28); delete them to obtain the data set again"
        )
    images = images.unsqueeze(1).contiguous()
    if with_labels:
        return images, torch.as_tensor(dataset.targets, dtype=torch.int64)
    return images

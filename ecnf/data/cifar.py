"""CIFAR-10 read from its ``cifar-10-batches-py`` folder with a restricted unpickler.

The Python version of CIFAR-10 is a folder of pickles: ``data_batch_1`` to ``data_batch_5``
(50,000 training images) and ``test_batch`` (10,000), each a dict whose ``b"data"`` is a
uint8 array of shape ``(N, 3072)`` (each row the red, green and blue 32 x 32 planes, row
major) and whose ``b"labels"`` lists the classes. Unpickling can run arbitrary code, so
these files are read by an unpickler that builds numpy arrays and nothing else. torchvision
is used only to download and extract the archive.

References:
    | Learning Multiple Layers of Features from Tiny Images (Krizhevsky, 2009)
      https://www.cs.toronto.edu/~kriz/learning-features-2009-TR.pdf
"""

from __future__ import annotations

import importlib
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor

from .sources import DatasetNotFoundError, resolve_root

__all__ = [
    "CIFAR10_FOLDER",
    "CIFAR10_TEST_FILES",
    "CIFAR10_TRAIN_FILES",
    "load_cifar10",
    "read_cifar_batch",
]

CIFAR10_FOLDER = "cifar-10-batches-py"
CIFAR10_TRAIN_FILES = tuple(f"data_batch_{i}" for i in range(1, 6))
CIFAR10_TEST_FILES = ("test_batch",)

# The globals that pickled numpy arrays need (protocols 0 to 5, numpy 1 and 2 module
# names), each mapped to where it lives today. Anything else is refused.
_ALLOWED_GLOBALS: dict[tuple[str, str], tuple[str, str]] = {
    ("numpy", "ndarray"): ("numpy", "ndarray"),
    ("numpy", "dtype"): ("numpy", "dtype"),
    ("numpy.core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy._core.multiarray", "_reconstruct"): ("numpy._core.multiarray", "_reconstruct"),
    ("numpy.core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"): ("numpy._core.numeric", "_frombuffer"),
    ("_codecs", "encode"): ("_codecs", "encode"),  # bytes in protocol 2 written by Python 3
}


class _NumpyOnlyUnpickler(pickle.Unpickler):
    """Unpickles plain containers and numpy arrays; refuses every other global."""

    def find_class(self, module: str, name: str) -> Any:
        target = _ALLOWED_GLOBALS.get((module, name))
        if target is None:
            raise pickle.UnpicklingError(
                f"refusing to load the global {module}.{name}: a CIFAR-10 batch holds only "
                "numpy arrays, lists and bytes"
            )
        return getattr(importlib.import_module(target[0]), target[1])


def _field(batch: dict, key: str) -> Any:
    for candidate in (key.encode(), key):
        if candidate in batch:
            return batch[candidate]
    raise KeyError(key)


def read_cifar_batch(path: str | os.PathLike[str]) -> tuple[Tensor, Tensor]:
    """Read one CIFAR batch file without executing code from it.

    Arguments:
        path: a file such as ``cifar-10-batches-py/data_batch_1``.

    Returns:
        The images, uint8 of shape ``(N, 3, 32, 32)``, and the labels, int64 of shape
        ``(N,)``.
    """
    path = Path(path)
    with path.open("rb") as file:
        try:
            batch = _NumpyOnlyUnpickler(file, encoding="bytes").load()
        except Exception as err:  # a damaged or hostile file can fail in many ways
            raise ValueError(f"{path} is not a readable CIFAR batch: {err}") from err
    try:
        data, labels = _field(batch, "data"), _field(batch, "labels")
    except (KeyError, TypeError) as err:
        raise ValueError(f"{path} is not a CIFAR batch: it lacks the entry {err}") from err
    if not (
        isinstance(data, np.ndarray)
        and data.dtype == np.uint8
        and data.ndim == 2
        and data.shape[1] == 3 * 32 * 32
    ):
        found = f"{data.dtype} array of shape {data.shape}" if hasattr(data, "shape") else data
        raise ValueError(f"{path}: 'data' must be a uint8 array of shape (N, 3072), got {found}")
    labels = torch.as_tensor(np.asarray(labels, dtype=np.int64))
    if labels.shape != (data.shape[0],):
        raise ValueError(
            f"{path}: {data.shape[0]} images but 'labels' has shape {tuple(labels.shape)}"
        )
    images = torch.from_numpy(np.ascontiguousarray(data)).reshape(-1, 3, 32, 32)
    return images, labels


def _not_found_message(folder: Path, missing: list[str]) -> str:
    return (
        f"CIFAR-10 was not found: {folder} lacks {', '.join(missing)}. To obtain it, pass "
        "--download (download=True) on a machine that is online, or put the extracted "
        f"{CIFAR10_FOLDER} folder of the Python version of CIFAR-10 under {folder.parent}."
    )


def load_cifar10(
    root: str | os.PathLike[str] | None = None,
    *,
    train: bool = True,
    download: bool = False,
    with_labels: bool = False,
) -> Tensor | tuple[Tensor, Tensor]:
    """The CIFAR-10 images from ``<root>/cifar-10-batches-py``.

    Arguments:
        root: the data folder (default :func:`~ecnf.data.default_root`).
        train: the five training batches, or else the test batch.
        download: let torchvision download and extract the archive when files are missing.
        with_labels: also return the classes, int64 of shape ``(N,)``.

    Returns:
        The images, uint8 of shape ``(N, 3, 32, 32)`` (50,000 or 10,000 for the real set),
        and the labels.
    """
    root = resolve_root(root)
    folder = root / CIFAR10_FOLDER
    names = CIFAR10_TRAIN_FILES if train else CIFAR10_TEST_FILES
    missing = [name for name in names if not (folder / name).is_file()]
    if missing and download:
        from torchvision.datasets import CIFAR10

        try:
            CIFAR10(str(root), train=train, download=True)
        except (OSError, RuntimeError) as err:
            reason = " ".join(str(err).split())  # one line
            raise DatasetNotFoundError(
                f"downloading CIFAR-10 into {root} failed ({reason}); check the connection, or "
                f"put the extracted {CIFAR10_FOLDER} folder of the Python version of "
                f"CIFAR-10 under {root}"
            ) from err
        missing = [name for name in names if not (folder / name).is_file()]
    if missing:
        raise DatasetNotFoundError(_not_found_message(folder, missing))
    batches = [read_cifar_batch(folder / name) for name in names]
    images = torch.cat([images for images, _ in batches])
    if with_labels:
        return images, torch.cat([labels for _, labels in batches])
    return images

"""Data for training and evaluation: 2D toys, image data sets and resumable batch streams.

* :mod:`ecnf.data.toys`: :func:`sample_toy` draws from the 2D distributions of
  :data:`TOY_DATASETS`, as data or as noise.
* :mod:`ecnf.data.images`: :func:`load_images` returns the data sets of
  :data:`IMAGE_DATASETS` (scikit-learn's digits, Fashion-MNIST, CIFAR-10, a folder of
  images) as uint8 tensors; :func:`to_model_range` and :func:`from_model_range` map them to
  and from ``[-1, 1]``.
* :mod:`ecnf.data.stream`: :func:`make_stream` builds the endless batch stream that
  training draws from, whose position is saved in checkpoints as JSON.

Files are looked for under :func:`default_root` (``$ECNF_DATA`` or ``~/.cache/ecnf/data``);
a missing data set raises :class:`DatasetNotFoundError`, whose message says how to get it.
"""

from __future__ import annotations

from .cifar import load_cifar10, read_cifar_batch
from .fashion_mnist import FASHION_MNIST_DEBIAN_DIR, load_fashion_mnist, stage_fashion_mnist
from .images import (
    IMAGE_DATASETS,
    dataset_shape,
    from_model_range,
    load_image_folder,
    load_images,
    to_model_range,
)
from .sources import DatasetNotFoundError, default_root
from .stream import DataStream, ImageStream, ToyStream, make_stream
from .toys import TOY_DATASETS, TOY_EXTENT, sample_toy

__all__ = [
    "FASHION_MNIST_DEBIAN_DIR",
    "IMAGE_DATASETS",
    "TOY_DATASETS",
    "TOY_EXTENT",
    "DataStream",
    "DatasetNotFoundError",
    "ImageStream",
    "ToyStream",
    "dataset_shape",
    "default_root",
    "from_model_range",
    "load_cifar10",
    "load_fashion_mnist",
    "load_image_folder",
    "load_images",
    "make_stream",
    "read_cifar_batch",
    "sample_toy",
    "stage_fashion_mnist",
    "to_model_range",
]

"""Data for training and evaluation: 2D toys, image data sets and resumable batch streams.

* :mod:`ecnf.data.toys`: :func:`sample_toy` draws from the 2D distributions of
  :data:`TOY_DATASETS`, as data or as noise; :func:`sample_toy_labelled` also returns the
  class (mode, moon, arm) of each point.
* :mod:`ecnf.data.drawn`: :class:`Drawing` turns a picture (drawn by hand, a typed word
  from :func:`text_image`, an upload) into a 2D density in proportion to its ink;
  :func:`points_from_image` samples it, and :func:`save_drawing` names it
  ``"drawn:<file>"`` for training, wherever a toy name is accepted.
* :mod:`ecnf.data.images`: :func:`load_images` returns the data sets of
  :data:`IMAGE_DATASETS` (scikit-learn's digits, Fashion-MNIST, CIFAR-10, a folder of
  images) as uint8 tensors; :func:`to_model_range` and :func:`from_model_range` map them to
  and from ``[-1, 1]``; :func:`load_labels` their classes, :func:`dataset_classes` the
  class names of any data set.
* :mod:`ecnf.data.stream`: :func:`make_stream` builds the endless batch stream that
  training draws from, whose position is saved in checkpoints as JSON.

Files are looked for under :func:`default_root` (``$ECNF_DATA`` or ``~/.cache/ecnf/data``);
a missing data set raises :class:`DatasetNotFoundError`, whose message says how to get it.
"""

from __future__ import annotations

from .cifar import load_cifar10, read_cifar_batch
from .drawn import (
    DRAWN_PREFIX,
    Drawing,
    is_drawn,
    load_drawing,
    points_from_image,
    save_drawing,
    text_image,
)
from .fashion_mnist import FASHION_MNIST_DEBIAN_DIR, load_fashion_mnist, stage_fashion_mnist
from .images import (
    IMAGE_CLASSES,
    IMAGE_DATASETS,
    dataset_classes,
    dataset_shape,
    from_model_range,
    load_image_folder,
    load_images,
    load_labels,
    to_model_range,
)
from .sources import DatasetNotFoundError, default_root
from .stream import DataStream, ImageStream, ToyStream, make_stream
from .toys import (
    TOY_CLASSES,
    TOY_DATASETS,
    TOY_EXTENT,
    check_toy,
    is_toy,
    sample_toy,
    sample_toy_labelled,
)

__all__ = [
    "DRAWN_PREFIX",
    "FASHION_MNIST_DEBIAN_DIR",
    "IMAGE_CLASSES",
    "IMAGE_DATASETS",
    "TOY_CLASSES",
    "TOY_DATASETS",
    "TOY_EXTENT",
    "DataStream",
    "DatasetNotFoundError",
    "Drawing",
    "ImageStream",
    "ToyStream",
    "check_toy",
    "dataset_classes",
    "dataset_shape",
    "default_root",
    "from_model_range",
    "is_drawn",
    "is_toy",
    "load_cifar10",
    "load_drawing",
    "load_fashion_mnist",
    "load_image_folder",
    "load_images",
    "load_labels",
    "make_stream",
    "points_from_image",
    "read_cifar_batch",
    "sample_toy",
    "sample_toy_labelled",
    "save_drawing",
    "stage_fashion_mnist",
    "text_image",
    "to_model_range",
]

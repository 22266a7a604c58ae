r"""Image data sets as uint8 tensors in memory, and the map to and from the model's range.

Images are kept as uint8 tensors of shape ``(N, C, H, W)`` and turned into floats in
:math:`[-1, 1]` batch by batch (:func:`to_model_range`), the scaling of torchvision's
``ToTensor()`` followed by ``Normalize(0.5, 0.5)`` that the seed paper uses:

.. math:: x = \frac{u / 255 - 0.5}{0.5}, \qquad u \in \{0, \dots, 255\}.

============== =========================== =========================================
name           shape (train / test)        source
============== =========================== =========================================
digits         (1500 / 297, 1, 8, 8)       scikit-learn's ``load_digits`` (shipped)
fashion_mnist  (60000 / 10000, 1, 28, 28)  torchvision, or Debian's package
cifar10        (50000 / 10000, 3, 32, 32)  ``cifar-10-batches-py`` under the root
folder         (N, channels, size, size)   the user's png / jpg / bmp / webp files
============== =========================== =========================================

``image_size`` and ``channels`` resize (antialiased bilinear) and convert (grey to RGB by
repetition, RGB to grey by ITU-R 601-2 luma, as PIL does) any of them; a folder defaults to
3 channels at 32 x 32.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor

from .._checks import check_choice, check_finite, check_positive_int
from .cifar import load_cifar10
from .fashion_mnist import load_fashion_mnist
from .sources import DatasetNotFoundError
from .toys import TOY_DATASETS, is_toy

__all__ = [
    "DIGITS_TRAIN_SIZE",
    "IMAGE_CLASSES",
    "IMAGE_DATASETS",
    "IMAGE_EXTENSIONS",
    "dataset_classes",
    "dataset_shape",
    "from_model_range",
    "load_image_folder",
    "load_images",
    "load_labels",
    "to_model_range",
]

IMAGE_DATASETS: tuple[str, ...] = ("digits", "fashion_mnist", "cifar10", "folder")
#: File types read from an image folder (compared case-insensitively).
IMAGE_EXTENSIONS: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".webp")
#: The first this many of scikit-learn's 1797 digits are the training split, the rest test.
DIGITS_TRAIN_SIZE = 1500

#: The classes of the labelled image data sets, in label order.
IMAGE_CLASSES: dict[str, tuple[str, ...]] = {
    "digits": tuple(str(k) for k in range(10)),
    "fashion_mnist": (
        "T-shirt/top",
        "Trouser",
        "Pullover",
        "Dress",
        "Coat",
        "Sandal",
        "Shirt",
        "Sneaker",
        "Bag",
        "Ankle boot",
    ),
    "cifar10": (
        "airplane",
        "automobile",
        "bird",
        "cat",
        "deer",
        "dog",
        "frog",
        "horse",
        "ship",
        "truck",
    ),
}

_NATIVE_SHAPES = {"digits": (1, 8, 8), "fashion_mnist": (1, 28, 28), "cifar10": (3, 32, 32)}
_FOLDER_DEFAULTS = (3, 32)  # channels, image size
_LUMA = (0.299, 0.587, 0.114)


def to_model_range(images: Tensor) -> Tensor:
    """uint8 images in ``{0, ..., 255}`` to float32 in ``[-1, 1]``.

    Bit for bit what ``ToTensor()`` then ``Normalize(0.5, 0.5)`` give.

    Example:
        >>> to_model_range(torch.tensor([0, 51, 255], dtype=torch.uint8))
        tensor([-1.0000, -0.6000,  1.0000])
    """
    if not torch.is_tensor(images) or images.dtype != torch.uint8:
        found = images.dtype if torch.is_tensor(images) else type(images).__name__
        raise ValueError(f"images must be a uint8 tensor with values 0..255, got {found}")
    return images.to(torch.float32).div(255).sub(0.5).div(0.5)


def from_model_range(x: Tensor) -> Tensor:
    """Floats in ``[-1, 1]`` (clamped) back to uint8 images, rounding to the nearest level.

    The inverse of :func:`to_model_range`, for saving or showing samples.

    Example:
        >>> from_model_range(torch.tensor([-1.5, 0.0, 0.999]))
        tensor([  0, 128, 255], dtype=torch.uint8)
    """
    check_finite("x", x)
    if not x.is_floating_point():
        raise ValueError(f"x must be a floating point tensor in [-1, 1], got {x.dtype}")
    return x.detach().clamp(-1, 1).add(1).mul(127.5).round().to(torch.uint8)


def _check_size_and_channels(image_size: int | None, channels: int | None) -> None:
    if image_size is not None:
        check_positive_int("image_size", image_size)
    if channels is not None and channels not in (1, 3):
        raise ValueError(f"channels must be 1 (grey) or 3 (RGB), got {channels!r}")


def dataset_shape(
    name: str, image_size: int | None = None, channels: int | None = None
) -> tuple[int, ...]:
    """The shape of one sample of data set ``name``: ``(2,)`` for toys, else ``(C, H, W)``.

    Example:
        >>> dataset_shape("moons"), dataset_shape("fashion_mnist"), dataset_shape("folder")
        ((2,), (1, 28, 28), (3, 32, 32))
    """
    if not is_toy(name):
        check_choice("dataset", name, (*TOY_DATASETS, *IMAGE_DATASETS))
    _check_size_and_channels(image_size, channels)
    if is_toy(name):
        if image_size is not None or channels is not None:
            raise ValueError(
                f"image_size and channels apply to image data sets only, not the 2D toy "
                f"dataset={name!r}; leave them None"
            )
        return (2,)
    native_channels, native_size = _FOLDER_DEFAULTS
    if name in _NATIVE_SHAPES:
        native_channels, native_size, _ = _NATIVE_SHAPES[name]
    size = native_size if image_size is None else image_size
    return (native_channels if channels is None else channels, size, size)


def _convert(images: Tensor, image_size: int | None, channels: int | None) -> Tensor:
    """Resize (square, antialiased) and change the channel count of uint8 images."""
    if channels is not None and channels != images.shape[1]:
        if channels == 3:
            images = images.expand(-1, 3, -1, -1)
        else:
            luma = torch.tensor(_LUMA).view(1, 3, 1, 1)
            images = (images.float() * luma).sum(1, keepdim=True).round().to(torch.uint8)
    if image_size is not None and image_size != images.shape[-1]:
        x = F.interpolate(
            images.float(), size=(image_size, image_size), mode="bilinear", antialias=True
        )
        images = x.round().clamp(0, 255).to(torch.uint8)
    return images.contiguous()


def _load_digits(train: bool, with_labels: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    from sklearn.datasets import load_digits

    digits = load_digits()
    pixels = torch.from_numpy(digits.images)  # (1797, 8, 8), values 0..16
    images = (pixels * (255 / 16)).round().to(torch.uint8).unsqueeze(1)
    part = slice(None, DIGITS_TRAIN_SIZE) if train else slice(DIGITS_TRAIN_SIZE, None)
    if with_labels:
        return images[part], torch.as_tensor(digits.target, dtype=torch.int64)[part]
    return images[part]


def _read_image(path: Path, mode: str, image_size: int) -> Tensor:
    from PIL import Image, ImageOps

    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened).convert(mode)
    except Exception as err:  # PIL raises many types for damaged files
        raise ValueError(f"cannot read the image file {path}: {err}") from err
    side = min(image.size)
    left, top = (image.width - side) // 2, (image.height - side) // 2
    image = image.crop((left, top, left + side, top + side))
    image = image.resize((image_size, image_size), Image.Resampling.BICUBIC)
    pixels = torch.frombuffer(bytearray(image.tobytes()), dtype=torch.uint8)
    return pixels.view(image_size, image_size, -1).permute(2, 0, 1)


def load_image_folder(
    root: str | os.PathLike[str], *, image_size: int = 32, channels: int = 3
) -> Tensor:
    """Every image file under ``root`` (recursively, in sorted path order).

    Each is converted to grey (``channels=1``) or RGB (``channels=3``), center-cropped to
    a square and resized (bicubic, antialiased) to ``image_size``.

    Arguments:
        root: a folder of png, jpg, jpeg, bmp or webp files.
        image_size: side of the square output images.
        channels: 1 or 3.

    Returns:
        The images, uint8 of shape ``(N, channels, image_size, image_size)``.
    """
    _check_size_and_channels(image_size, channels)
    folder = Path(root).expanduser()
    if not folder.is_dir():
        raise DatasetNotFoundError(
            f"the image folder root={str(root)!r} does not exist; pass a folder of "
            f"{', '.join(IMAGE_EXTENSIONS)} files"
        )
    paths = sorted(
        path
        for path in folder.rglob("*")
        if path.suffix.lower() in IMAGE_EXTENSIONS and path.is_file()
    )
    if not paths:
        raise ValueError(
            f"root={str(root)!r} holds no image files; expected {', '.join(IMAGE_EXTENSIONS)}"
        )
    mode = "L" if channels == 1 else "RGB"
    return torch.stack([_read_image(path, mode, image_size) for path in paths])


def load_images(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    train: bool = True,
    download: bool = False,
    image_size: int | None = None,
    channels: int | None = None,
) -> Tensor:
    """Load the image data set ``name`` into memory as uint8.

    Arguments:
        name: one of :data:`IMAGE_DATASETS`.
        root: the data folder (default :func:`~ecnf.data.default_root`); for ``folder``,
            the folder of images itself (required).
        train: the training split, or else the test split (``digits``: the first
            :data:`DIGITS_TRAIN_SIZE` images, or the rest). A folder has no split.
        download: let torchvision download Fashion-MNIST or CIFAR-10 when missing.
        image_size: resize to this square size (default: native; 32 for a folder).
        channels: convert to 1 (grey) or 3 (RGB) channels (default: native; 3 for a
            folder).

    Returns:
        The images, uint8 of shape ``(N, C, H, W)`` (see :func:`dataset_shape`).

    Raises:
        DatasetNotFoundError: the files are missing; the message says how to get them.

    Example:
        >>> images = load_images("digits")
        >>> images.shape, images.dtype
        (torch.Size([1500, 1, 8, 8]), torch.uint8)
    """
    check_choice("dataset", name, IMAGE_DATASETS)
    shape = dataset_shape(name, image_size, channels)
    if name == "folder":
        if root is None:
            raise ValueError("dataset='folder' needs root=, the folder holding the images")
        return load_image_folder(root, image_size=shape[-1], channels=shape[0])
    if name == "digits":
        images = _load_digits(train)
    elif name == "fashion_mnist":
        images = load_fashion_mnist(root, train=train, download=download)
    else:
        images = load_cifar10(root, train=train, download=download)
    return _convert(images, image_size, channels)


def load_labels(
    name: str,
    *,
    root: str | os.PathLike[str] | None = None,
    train: bool = True,
    download: bool = False,
) -> Tensor:
    """The classes of the images :func:`load_images` returns for the same arguments.

    Arguments:
        name: one of :data:`IMAGE_CLASSES` (a folder of images has no labels).
        root, train, download: as in :func:`load_images`.

    Returns:
        int64 labels of shape ``(N,)`` in ``0 .. 9``, one per image, in the same order.

    Example:
        >>> labels = load_labels("digits")
        >>> labels.shape, labels[:5].tolist()
        (torch.Size([1500]), [0, 1, 2, 3, 4])
    """
    if name not in IMAGE_CLASSES:
        check_choice("dataset", name, IMAGE_DATASETS)
        raise ValueError(
            f"dataset={name!r} has no labels; the labelled image data sets are "
            f"{', '.join(IMAGE_CLASSES)}"
        )
    if name == "digits":
        return _load_digits(train, with_labels=True)[1]
    if name == "fashion_mnist":
        return load_fashion_mnist(root, train=train, download=download, with_labels=True)[1]
    return load_cifar10(root, train=train, download=download, with_labels=True)[1]


def dataset_classes(name: str) -> tuple[str, ...]:
    """The class names of data set ``name`` in label order; empty for unlabelled data
    (``gaussian``, ``checkerboard``, a folder, a drawing of one colour).

    Example:
        >>> len(dataset_classes("digits")), dataset_classes("moons"), dataset_classes("folder")
        (10, ('upper moon', 'lower moon'), ())
    """
    from .drawn import is_drawn, load_drawing
    from .toys import TOY_CLASSES

    if is_drawn(name):
        return load_drawing(name).class_names
    return IMAGE_CLASSES.get(name) or TOY_CLASSES.get(name) or ()

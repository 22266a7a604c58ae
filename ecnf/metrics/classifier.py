r"""Small CNN classifiers that serve as offline feature networks for image metrics.

Inception-v3 weights cannot be obtained offline, so the project trains and ships one small
classifier per grey-scale data set (Fashion-MNIST, scikit-learn's 8x8 digits). Its
globally pooled last convolution, a :py:`feature_dim`-dimensional vector, plays the part
of Inception's pool features; its softmax the part of Inception's class probabilities.
Metrics computed with it are named after the data set (``"FD-FMNIST"``, ``"KID-DIGITS"``,
...), never ``"FID"``: their values are not comparable with published FIDs.

A classifier file is a safetensors file of float16 weights whose header metadata holds
:py:`"format"` (:py:`"ecnf-classifier"`), :py:`"format_version"`, :py:`"config"` (JSON of
:class:`ClassifierConfig`) and :py:`"training"` (JSON: test accuracy, epochs, wall
time...). Loading it never unpickles.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
import torch.nn.functional as F
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

from .._checks import check_choice, check_finite, check_positive_int
from .._io import atomic_write
from ..checkpoint import CheckpointError
from ..data.images import from_model_range, load_images, load_labels, to_model_range

__all__ = [
    "CLASSIFIER_DATASETS",
    "Classifier",
    "ClassifierConfig",
    "ClassifierFeatures",
    "classifier_config",
    "labelled_images",
    "load_classifier",
    "save_classifier",
    "shipped_classifier_path",
    "train_classifier",
]

FORMAT = "ecnf-classifier"
FORMAT_VERSION = 1
#: The data sets a classifier is made for, and the tag that names their metrics.
CLASSIFIER_DATASETS: dict[str, str] = {"fashion_mnist": "FMNIST", "digits": "DIGITS"}
_SHIPPED = Path(__file__).resolve().parents[2] / "checkpoints" / "classifiers"
_FILE_NAMES = {"fashion_mnist": "fmnist_classifier", "digits": "digits_classifier"}


@dataclass(frozen=True)
class ClassifierConfig:
    r"""The architecture of a :class:`Classifier`.

    Arguments:
        dataset: The data set it classifies, one of :data:`CLASSIFIER_DATASETS`.
        in_channels: The image channels :math:`C`.
        image_size: The image side :math:`H = W`.
        widths: The channels of each convolution block; a 2x2 max pooling (rounding the
            size up) comes between blocks.
        num_classes: The number of classes :math:`K`.
    """

    dataset: str = "fashion_mnist"
    in_channels: int = 1
    image_size: int = 28
    widths: tuple[int, ...] = (32, 64, 128)
    num_classes: int = 10

    def __post_init__(self) -> None:
        check_choice("dataset", self.dataset, tuple(CLASSIFIER_DATASETS))
        check_positive_int("in_channels", self.in_channels)
        check_positive_int("image_size", self.image_size)
        check_positive_int("num_classes", self.num_classes, minimum=2)
        object.__setattr__(self, "widths", tuple(self.widths))
        if not self.widths or any(
            isinstance(w, bool) or not isinstance(w, int) or w < 1 for w in self.widths
        ):
            raise ValueError(f"widths must be positive integers, got {self.widths!r}")


def classifier_config(dataset: str) -> ClassifierConfig:
    r"""The configuration of the shipped classifier for :py:`dataset`.

    Example:
        >>> classifier_config("digits")
        ClassifierConfig(dataset='digits', in_channels=1, image_size=8, widths=(32, 64, 128), num_classes=10)
    """  # noqa: E501
    check_choice("dataset", dataset, tuple(CLASSIFIER_DATASETS))
    if dataset == "fashion_mnist":  # 28 -> 14 -> 7 -> 4
        return ClassifierConfig(dataset=dataset, image_size=28, widths=(32, 64, 128, 128))
    return ClassifierConfig(dataset=dataset, image_size=8, widths=(32, 64, 128))  # 8 -> 4 -> 2


class Classifier(nn.Module):
    r"""Convolution blocks (3x3 convolution, batch norm, ReLU), global average pooling,
    then a linear layer to the class logits.

    .. math:: f(x) = \operatorname{avgpool}(\operatorname{blocks}(x)) \in
        \mathbb{R}^{F}, \qquad \operatorname{logits}(x) = W f(x) + b

    The features :math:`f` (:math:`F` = :py:`widths[-1]`) are the penultimate layer.

    Arguments:
        config: The :class:`ClassifierConfig`.

    Example:
        >>> net = Classifier(classifier_config("digits"))
        >>> features, logits = net.features_and_logits(torch.zeros(2, 1, 8, 8))
        >>> features.shape, logits.shape
        (torch.Size([2, 128]), torch.Size([2, 10]))
    """

    def __init__(self, config: ClassifierConfig):
        super().__init__()
        self.config = config
        layers: list[nn.Module] = []
        channels = config.in_channels
        for i, width in enumerate(config.widths):
            if i > 0:
                layers.append(nn.MaxPool2d(2, ceil_mode=True))
            layers += [
                nn.Conv2d(channels, width, 3, padding=1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
            ]
            channels = width
        self.blocks = nn.Sequential(*layers)
        self.head = nn.Linear(channels, config.num_classes)

    def features_and_logits(self, x: Tensor) -> tuple[Tensor, Tensor]:
        features = self.blocks(x).mean(dim=(2, 3))  # (B, F)
        return features, self.head(features)  # (B, F), (B, K)

    def forward(self, x: Tensor) -> Tensor:
        return self.features_and_logits(x)[1]


def _round_to_half(model: nn.Module) -> nn.Module:
    """Round the floating-point weights and buffers to float16 values, in place."""
    with torch.no_grad():
        for tensor in model.state_dict().values():
            if tensor.is_floating_point():
                tensor.copy_(tensor.half())
    return model


def save_classifier(
    path: str | os.PathLike, model: Classifier, training: dict[str, Any], *, half: bool = True
) -> Path:
    r"""Writes a classifier's weights and JSON metadata to a safetensors file, atomically.

    Arguments:
        path: The file to write; its folder is created.
        model: The :class:`Classifier`.
        training: JSON-serialisable facts about its training (test accuracy...).
        half: Whether to store the floating-point tensors as float16 (half the size;
            :func:`load_classifier` casts them back to float32).
    """
    path = Path(path)
    tensors = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    if half:
        tensors = {k: v.half() if v.is_floating_point() else v for k, v in tensors.items()}
    metadata = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "config": json.dumps(asdict(model.config)),
        "training": json.dumps(training),
        "torch_version": torch.__version__,
    }
    atomic_write(path, safetensors.torch.save(tensors, metadata=metadata))
    return path


def load_classifier(path: str | os.PathLike) -> tuple[Classifier, dict[str, Any]]:
    r"""Reads a classifier written by :func:`save_classifier`, without unpickling.

    Returns:
        The classifier in evaluation mode on the CPU, and its :py:`"training"` metadata.

    Raises:
        CheckpointError: If the file is missing, unreadable or not a classifier file.
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(
            f"{path}: no such classifier file; train one with `python scripts/train_classifiers.py`"
        )
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            metadata = f.metadata() or {}
            state = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    except (SafetensorError, OSError, ValueError) as error:
        raise CheckpointError(f"{path}: not a readable safetensors file: {error}") from error
    if metadata.get("format") != FORMAT or metadata.get("format_version") != str(FORMAT_VERSION):
        raise CheckpointError(
            f"{path}: not an {FORMAT} file of version {FORMAT_VERSION} "
            f"(format={metadata.get('format')!r}, version={metadata.get('format_version')!r})"
        )
    try:
        config = ClassifierConfig(**json.loads(metadata["config"]))
        training = json.loads(metadata.get("training", "{}"))
        model = Classifier(config)
        model.load_state_dict({k: v.float() for k, v in state.items()})
    except (KeyError, TypeError, ValueError, RuntimeError) as error:
        raise CheckpointError(
            f"{path}: its configuration or weights are invalid: {error}"
        ) from error
    return model.eval(), training


def shipped_classifier_path(dataset: str) -> Path:
    r"""Where the classifier shipped for :py:`dataset` lives in a source checkout.

    Example:
        >>> shipped_classifier_path("fashion_mnist").name
        'fmnist_classifier.safetensors'
    """
    check_choice("dataset", dataset, tuple(CLASSIFIER_DATASETS))
    return _SHIPPED / f"{_FILE_NAMES[dataset]}.safetensors"


class ClassifierFeatures:
    r"""A trained :class:`Classifier` as a :class:`~ecnf.metrics.FeatureNet`.

    Its name is :py:`"<tag>-classifier"` and its metrics :py:`"FD-<TAG>"`,
    :py:`"KID-<TAG>"` and :py:`"IS-<TAG>"` (:py:`TAG` is :py:`FMNIST` or :py:`DIGITS`).
    Inputs are clamped to :math:`[-1, 1]` and rounded to the 256 levels of an image file,
    so samples are judged as they would be saved.

    Arguments:
        source: A classifier file (see :func:`shipped_classifier_path`), or a
            :class:`Classifier`.
        device: The device to run on; by default CUDA when available, else the CPU.
        batch_size: Images per forward pass.
    """

    def __init__(
        self,
        source: str | os.PathLike | Classifier,
        *,
        device: str | torch.device | None = None,
        batch_size: int = 1000,
    ):
        if isinstance(source, Classifier):
            model, self.training = source, {}
        else:
            model, self.training = load_classifier(source)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = model.to(self.device).eval()
        self.batch_size = check_positive_int("batch_size", batch_size)
        config = model.config
        tag = CLASSIFIER_DATASETS[config.dataset]
        self.name = f"{tag.lower()}-classifier"
        self.metric_prefix = f"FD-{tag}"
        self.num_classes = config.num_classes
        self.input_shape = (config.in_channels, config.image_size, config.image_size)

    def _check(self, x: Tensor) -> Tensor:
        if not torch.is_tensor(x) or x.dim() != 4 or tuple(x.shape[1:]) != self.input_shape:
            found = tuple(x.shape) if torch.is_tensor(x) else type(x).__name__
            raise ValueError(
                f"x must have shape (N, {', '.join(map(str, self.input_shape))}) for "
                f"{self.name}, got {found}"
            )
        if x.dtype == torch.uint8:
            return to_model_range(x)
        check_finite("x", x)
        return to_model_range(from_model_range(x))

    @torch.no_grad()
    def features_and_probs(self, x: Tensor) -> tuple[Tensor, Tensor]:
        r"""The features :math:`(N, F)` and class probabilities :math:`(N, K)` of images
        :math:`(N, C, H, W)` in :math:`[-1, 1]` (or uint8)."""
        x = self._check(x)
        features, probs = [], []
        for batch in x.split(self.batch_size):
            f, logits = self.model.features_and_logits(batch.to(self.device))
            features.append(f.float().cpu())
            probs.append(logits.float().softmax(dim=1).cpu())
        if not features:
            return torch.empty(0, self.model.head.in_features), torch.empty(0, self.num_classes)
        return torch.cat(features), torch.cat(probs)

    def features(self, x: Tensor) -> Tensor:
        r"""The penultimate features, of shape :math:`(N, F)`."""
        return self.features_and_probs(x)[0]

    def probs(self, x: Tensor) -> Tensor:
        r"""The class probabilities, of shape :math:`(N, K)`."""
        return self.features_and_probs(x)[1]


def labelled_images(
    dataset: str, *, train: bool, root: str | os.PathLike | None = None
) -> tuple[Tensor, Tensor]:
    r"""The uint8 images :math:`(N, 1, H, W)` and int64 labels :math:`(N,)` of a split."""
    check_choice("dataset", dataset, tuple(CLASSIFIER_DATASETS))
    images = load_images(dataset, root=root, train=train)
    return images, load_labels(dataset, root=root, train=train)


def _augment(x: Tensor, flip: bool, shift: int, generator: torch.Generator) -> Tensor:
    """Random translations by up to ``shift`` pixels (padding with black) and flips."""
    n, _, h, w = x.shape
    if flip:
        mask = torch.rand(n, generator=generator) < 0.5
        x = torch.where(mask.view(-1, 1, 1, 1), x.flip(3), x)
    if shift:
        padded = F.pad(x, (shift,) * 4, value=-1.0)
        offsets = torch.randint(0, 2 * shift + 1, (2, n), generator=generator)
        out = torch.empty_like(x)
        for dy in range(2 * shift + 1):
            for dx in range(2 * shift + 1):
                index = ((offsets[0] == dy) & (offsets[1] == dx)).nonzero().squeeze(1)
                out[index] = padded[index, :, dy : dy + h, dx : dx + w]
        x = out
    return x


@torch.no_grad()
def _accuracy(model: Classifier, images: Tensor, labels: Tensor, device: torch.device) -> float:
    model.eval()
    correct = 0
    for x, y in zip(images.split(1000), labels.split(1000), strict=True):
        correct += int((model(to_model_range(x).to(device)).argmax(1).cpu() == y).sum())
    return correct / len(labels)


def train_classifier(
    dataset: str,
    out_path: str | os.PathLike,
    *,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 3e-3,
    seed: int = 0,
    root: str | os.PathLike | None = None,
    device: str | torch.device | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    r"""Trains the classifier of :func:`classifier_config` on the training split.

    AdamW (weight decay :math:`10^{-4}`) with a one-cycle learning-rate schedule and
    cross-entropy; the batches are augmented by random translations of up to 1 pixel and,
    for Fashion-MNIST, horizontal flips. The weights are then rounded to float16, as
    they are stored, and the accuracy on the held-out test split is measured once and saved
    with them.

    Arguments:
        dataset: One of :data:`CLASSIFIER_DATASETS`.
        out_path: The safetensors file to write (:func:`save_classifier`).
        epochs: Passes over the training split.
        batch_size: Images per step.
        lr: The peak learning rate.
        seed: The seed of the initialisation, batch order and augmentation.
        root: The data folder (see :func:`~ecnf.data.load_images`).
        device: The device; by default CUDA when available, else the CPU.
        progress: Called with a line of text after every epoch.

    Returns:
        The training facts saved in the file: :py:`"test_accuracy"`,
        :py:`"train_accuracy"`, :py:`"epochs"`, :py:`"batch_size"`, :py:`"lr"`,
        :py:`"seed"`, :py:`"num_parameters"`, :py:`"train_size"`, :py:`"test_size"`,
        :py:`"wall_time_s"` and :py:`"device"`.
    """
    config = classifier_config(dataset)
    check_positive_int("epochs", epochs)
    check_positive_int("batch_size", batch_size)
    if not lr > 0:
        raise ValueError(f"lr must be > 0, got {lr!r}")
    device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
    start = time.perf_counter()
    train_x, train_y = labelled_images(dataset, train=True, root=root)
    test_x, test_y = labelled_images(dataset, train=False, root=root)

    torch.manual_seed(seed)
    generator = torch.Generator().manual_seed(seed)
    model = Classifier(config).to(device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    steps_per_epoch = -(-len(train_x) // batch_size)
    schedule = torch.optim.lr_scheduler.OneCycleLR(
        optimizer, max_lr=lr, total_steps=epochs * steps_per_epoch
    )
    flip, shift = dataset == "fashion_mnist", 1
    for epoch in range(epochs):
        model.train()
        total = 0.0
        for index in torch.randperm(len(train_x), generator=generator).split(batch_size):
            x = _augment(to_model_range(train_x[index]), flip, shift, generator)
            loss = F.cross_entropy(model(x.to(device)), train_y[index].to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            schedule.step()
            total += float(loss.detach()) * len(index)
        if progress is not None:
            elapsed = time.perf_counter() - start
            progress(
                f"{dataset}: epoch {epoch + 1}/{epochs}, loss {total / len(train_x):.4f}, "
                f"{elapsed:.0f} s"
            )

    _round_to_half(model)
    training = {
        "dataset": dataset,
        "test_accuracy": _accuracy(model, test_x, test_y, device),
        "train_accuracy": _accuracy(model, train_x, train_y, device),
        "epochs": epochs,
        "batch_size": batch_size,
        "lr": lr,
        "seed": seed,
        "num_parameters": sum(p.numel() for p in model.parameters()),
        "train_size": len(train_x),
        "test_size": len(test_x),
        "wall_time_s": round(time.perf_counter() - start, 1),
        "device": str(device),
    }
    save_classifier(out_path, model.cpu(), training)
    return training

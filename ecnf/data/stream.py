"""Endless, resumable streams of training batches.

A stream hands out batches of float32 data in the model's range, on the CPU, for ever.
Every random choice it makes is drawn from a generator seeded by a hash of
``(seed, counter)``, so its whole state is a few integers: :meth:`DataStream.state_dict`
is plain JSON, and a fresh stream that loads it continues exactly where the saved one
was. The state is also the same on every rank of a distributed run, so the state saved by
rank 0 resumes all of them.

An :class:`ImageStream` walks through epochs. Epoch ``e`` is a permutation of the images
drawn from ``(seed, e)``, the same on every rank; rank ``r`` of ``world_size`` takes the
positions ``r, r + world_size, ...`` of its first ``N - N % world_size`` entries, so ranks
see disjoint, equally long shares. Batches run across epoch boundaries without a seam.
"""

from __future__ import annotations

import hashlib
import os
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import torch
from torch import Tensor

from .._checks import check_choice, check_finite, check_positive_int
from .images import (
    IMAGE_CLASSES,
    IMAGE_DATASETS,
    dataset_classes,
    dataset_shape,
    load_images,
    load_labels,
    to_model_range,
)
from .toys import TOY_CLASSES, TOY_DATASETS, check_toy, is_toy, sample_toy, sample_toy_labelled

__all__ = ["DataStream", "ImageStream", "ToyStream", "make_stream"]


def _generator(*parts: object) -> torch.Generator:
    """A CPU generator seeded by a hash of ``parts`` (independent streams per tuple)."""
    digest = hashlib.blake2b(repr(parts).encode(), digest_size=8).digest()
    return torch.Generator().manual_seed(int.from_bytes(digest, "little") >> 1)


def _check_rank(rank: int, world_size: int) -> None:
    check_positive_int("world_size", world_size)
    if isinstance(rank, bool) or not isinstance(rank, int) or not 0 <= rank < world_size:
        raise ValueError(f"rank must be an integer in [0, {world_size}), got {rank!r}")


def _check_seed(seed: int) -> int:
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, got {seed!r}")
    return seed


class DataStream(ABC):
    """An endless source of training batches whose position can be saved and restored.

    Attributes:
        name: the data set's name.
        shape: the shape of one sample, e.g. ``(2,)`` or ``(3, 32, 32)``.
    """

    name: str
    shape: tuple[int, ...]

    @abstractmethod
    def next_batch(self, batch_size: int) -> Tensor:
        """The next ``batch_size`` samples, float32 on the CPU, shape ``(B, *shape)``."""

    def next_labelled(self, batch_size: int) -> tuple[Tensor, Tensor]:
        """The next batch, as :meth:`next_batch` would return it, and its class labels
        (int64, shape ``(B,)``), for a stream of labelled data."""
        raise ValueError(f"dataset={self.name!r} has no class labels to condition on")

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """The stream's position, as JSON-serialisable ints and strings."""

    @abstractmethod
    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Continue from a position saved by :meth:`state_dict` of a like stream."""

    def _check_state(self, state: Mapping[str, Any], **expected: object) -> None:
        for key, value in expected.items():
            if state.get(key) != value:
                raise ValueError(
                    f"state was saved by a stream with {key}={state.get(key)!r}, but this "
                    f"stream has {key}={value!r}; build the stream with the same arguments"
                )


class ToyStream(DataStream):
    """Batches of a 2D toy distribution (see :func:`~ecnf.data.sample_toy`).

    Arguments:
        name: one of :data:`~ecnf.data.TOY_DATASETS`, or ``"drawn:<file>"``.
        seed: the seed; batch ``k`` is drawn from a generator seeded by ``(seed, rank, k)``.
        rank: this process's rank, so that ranks draw different samples.

    Example:
        >>> stream = ToyStream("8gaussians", seed=0)
        >>> stream.next_batch(256).shape
        torch.Size([256, 2])
    """

    def __init__(self, name: str, seed: int = 0, *, rank: int = 0) -> None:
        self.name = check_toy("dataset", name)
        self.shape = (2,)
        self.seed = _check_seed(seed)
        self.rank = check_positive_int("rank", rank, minimum=0)
        self.batches = 0

    def next_batch(self, batch_size: int) -> Tensor:
        check_positive_int("batch_size", batch_size)
        generator = _generator("toy", self.seed, self.rank, self.batches)
        x1 = sample_toy(self.name, batch_size, generator=generator)
        check_finite(f"a batch of dataset={self.name!r}", x1)
        self.batches += 1
        return x1

    def next_labelled(self, batch_size: int) -> tuple[Tensor, Tensor]:
        check_positive_int("batch_size", batch_size)
        if not dataset_classes(self.name):
            super().next_labelled(batch_size)
        generator = _generator("toy", self.seed, self.rank, self.batches)
        x1, y = sample_toy_labelled(self.name, batch_size, generator=generator)
        check_finite(f"a batch of dataset={self.name!r}", x1)
        self.batches += 1
        return x1, y

    def state_dict(self) -> dict[str, Any]:
        return {"kind": "toy", "dataset": self.name, "seed": self.seed, "batches": self.batches}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._check_state(state, kind="toy", dataset=self.name, seed=self.seed)
        self.batches = check_positive_int("state['batches']", state["batches"], minimum=0)


class ImageStream(DataStream):
    """Shuffled epochs of uint8 images, in batches in the model's range ``[-1, 1]``.

    Arguments:
        images: uint8 images of shape ``(N, C, H, W)``.
        seed: the seed shared by all ranks.
        flip: mirror each sample left-right with probability 1/2.
        rank: this process's rank in ``[0, world_size)``.
        world_size: the number of processes sharing each epoch.
        name: the data set's name, recorded in the state.
        labels: the class of each image, int64 of shape ``(N,)``, for
            :meth:`next_labelled`.

    Example:
        >>> images = torch.randint(0, 256, (10, 1, 8, 8), dtype=torch.uint8)
        >>> stream = ImageStream(images, seed=0, flip=True)
        >>> stream.next_batch(16).shape  # runs into the second epoch
        torch.Size([16, 1, 8, 8])
    """

    def __init__(
        self,
        images: Tensor,
        seed: int = 0,
        *,
        flip: bool = False,
        rank: int = 0,
        world_size: int = 1,
        name: str = "images",
        labels: Tensor | None = None,
    ) -> None:
        if not torch.is_tensor(images) or images.dtype != torch.uint8 or images.ndim != 4:
            found = (
                f"{images.dtype} tensor of shape {tuple(images.shape)}"
                if torch.is_tensor(images)
                else type(images).__name__
            )
            raise ValueError(f"images must be a uint8 tensor of shape (N, C, H, W), got {found}")
        _check_rank(rank, world_size)
        if images.shape[0] < world_size:
            raise ValueError(
                f"{images.shape[0]} images cannot be shared among world_size={world_size} ranks"
            )
        if labels is not None and (
            not torch.is_tensor(labels)
            or labels.dtype != torch.int64
            or labels.shape != (images.shape[0],)
        ):
            raise ValueError(
                f"labels must be an int64 tensor of shape ({images.shape[0]},), one per image"
            )
        self.images = images.cpu()
        self.labels = None if labels is None else labels.cpu()
        self.name = name
        self.shape = tuple(images.shape[1:])
        self.seed = _check_seed(seed)
        self.flip = bool(flip)
        self.rank = rank
        self.world_size = world_size
        self.share = images.shape[0] // world_size  # samples per rank per epoch
        self.epoch, self.position, self.batches = 0, 0, 0
        self._order: tuple[int, Tensor] | None = None

    def _epoch_indices(self) -> Tensor:
        if self._order is None or self._order[0] != self.epoch:
            perm = torch.randperm(self.images.shape[0], generator=_generator(self.seed, self.epoch))
            mine = perm[: self.share * self.world_size][self.rank :: self.world_size]
            self._order = (self.epoch, mine)
        return self._order[1]

    def next_batch(self, batch_size: int) -> Tensor:
        return self._next(batch_size)[0]

    def next_labelled(self, batch_size: int) -> tuple[Tensor, Tensor]:
        if self.labels is None:
            raise ValueError(
                f"this stream of dataset={self.name!r} was built without labels; pass labels="
            )
        x1, indices = self._next(batch_size)
        return x1, self.labels[indices]

    def _next(self, batch_size: int) -> tuple[Tensor, Tensor]:
        check_positive_int("batch_size", batch_size)
        chunks, needed = [], batch_size
        while needed:
            take = min(needed, self.share - self.position)
            chunks.append(self._epoch_indices()[self.position : self.position + take])
            self.position += take
            needed -= take
            if self.position == self.share:
                self.epoch, self.position = self.epoch + 1, 0
        indices = torch.cat(chunks)
        x1 = to_model_range(self.images[indices])
        if self.flip:
            generator = _generator("flip", self.seed, self.rank, self.batches)
            mirror = torch.rand(batch_size, generator=generator) < 0.5
            x1[mirror] = x1[mirror].flip(-1)
        self.batches += 1
        return x1, indices

    def state_dict(self) -> dict[str, Any]:
        return {
            "kind": "images",
            "dataset": self.name,
            "seed": self.seed,
            "size": int(self.images.shape[0]),
            "world_size": self.world_size,
            "epoch": self.epoch,
            "position": self.position,
            "batches": self.batches,
        }

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self._check_state(
            state,
            kind="images",
            dataset=self.name,
            seed=self.seed,
            size=int(self.images.shape[0]),
            world_size=self.world_size,
        )
        position = state["position"]
        if isinstance(position, bool) or not isinstance(position, int):
            raise ValueError(f"state['position'] must be an integer, got {position!r}")
        if not 0 <= position < self.share:
            raise ValueError(f"state['position'] must be in [0, {self.share}), got {position}")
        self.epoch = check_positive_int("state['epoch']", state["epoch"], minimum=0)
        self.batches = check_positive_int("state['batches']", state["batches"], minimum=0)
        self.position = position


def make_stream(
    name: str,
    *,
    seed: int = 0,
    root: str | os.PathLike[str] | None = None,
    train: bool = True,
    flip: bool = False,
    download: bool = False,
    rank: int = 0,
    world_size: int = 1,
    image_size: int | None = None,
    channels: int | None = None,
    labels: bool = False,
) -> DataStream:
    """The training stream for data set ``name``, a 2D toy or an image data set.

    Arguments:
        name: one of :data:`~ecnf.data.TOY_DATASETS` or :data:`~ecnf.data.IMAGE_DATASETS`.
        seed: the stream's seed (the same on every rank).
        root, train, download, image_size, channels: where and how to load images, as in
            :func:`~ecnf.data.load_images` (``root``, ``train`` and ``download`` are
            unused by toys).
        flip: random horizontal flips (images only).
        rank, world_size: this process's place in a distributed run.
        labels: whether the stream must also give class labels (:meth:`next_labelled`);
            the data set must have them (:func:`~ecnf.data.dataset_classes`).

    Example:
        >>> make_stream("moons", seed=1).next_batch(4).shape
        torch.Size([4, 2])
        >>> make_stream("digits", flip=True).next_batch(4).shape
        torch.Size([4, 1, 8, 8])
    """
    if not is_toy(name):
        check_choice("dataset", name, (*TOY_DATASETS, *IMAGE_DATASETS))
    _check_rank(rank, world_size)
    _check_seed(seed)
    dataset_shape(name, image_size, channels)  # validates image_size and channels
    if labels and not dataset_classes(name):
        raise ValueError(
            f"dataset={name!r} has no class labels; the labelled data sets are "
            f"{', '.join((*TOY_CLASSES, *IMAGE_CLASSES))}"
        )
    if is_toy(name):
        if flip:
            raise ValueError(f"flip=True applies to image data sets only, not dataset={name!r}")
        return ToyStream(name, seed, rank=rank)
    images = load_images(
        name, root=root, train=train, download=download, image_size=image_size, channels=channels
    )
    y = load_labels(name, root=root, train=train, download=download) if labels else None
    return ImageStream(
        images, seed, flip=flip, rank=rank, world_size=world_size, name=name, labels=y
    )

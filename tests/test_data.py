"""Data: toy distributions, image loaders (on small files the tests write), batch streams."""

import gzip
import json
import math
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch

from ecnf.data import (
    IMAGE_DATASETS,
    TOY_DATASETS,
    DatasetNotFoundError,
    ImageStream,
    ToyStream,
    dataset_shape,
    default_root,
    from_model_range,
    load_images,
    make_stream,
    read_cifar_batch,
    sample_toy,
    to_model_range,
)
from ecnf.data.fashion_mnist import FASHION_MNIST_DEBIAN_DIR, FASHION_MNIST_DIR_ENV_VAR


def _sample(name, n=4000, seed=0):
    return sample_toy(name, n, generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- 2D toys


@pytest.mark.parametrize("name", TOY_DATASETS)
def test_toy_shape_determinism_and_spread(name):
    x = _sample(name)
    assert x.shape == (4000, 2) and x.dtype == torch.float32
    assert torch.isfinite(x).all()
    assert torch.equal(x, _sample(name))
    assert not torch.equal(x, _sample(name, seed=1))
    assert x.abs().max() < 6
    assert (x.std(0) > 0.5).all() and (x.std(0) < 3).all()
    assert sample_toy(name, 3, dtype=torch.float64).dtype == torch.float64


def _radius(x):
    return x.norm(dim=1)


def test_gaussian_and_uniform_have_unit_variance():
    for name in ("gaussian", "uniform"):
        x = _sample(name, 20000)
        assert torch.allclose(x.mean(0), torch.zeros(2), atol=0.05)
        assert torch.allclose(x.var(0), torch.ones(2), atol=0.05)
    assert _sample("uniform").abs().max() <= math.sqrt(3)


def test_8gaussians_cluster_near_eight_centres_on_a_circle():
    x = _sample("8gaussians")
    angles = torch.arange(8) * (math.pi / 4)
    centres = 2 * math.sqrt(2) * torch.stack([angles.cos(), angles.sin()], 1)
    nearest = torch.cdist(x, centres).min(1)
    assert nearest.values.mean() < 0.6
    assert torch.bincount(nearest.indices, minlength=8).min() > 4000 / 8 * 0.8


def test_25gaussians_cluster_on_a_grid():
    x = _sample("25gaussians")
    assert ((x / 1.5 - (x / 1.5).round()).abs() * 1.5 < 0.5).all()
    assert len(set(map(tuple, (x / 1.5).round().int().tolist()))) == 25


def test_circles_and_rings_lie_on_their_radii():
    for name, radii in (("circles", [1.5, 3.0]), ("rings", [0.75, 1.5, 2.25, 3.0])):
        r = _radius(_sample(name))
        gap = (r[:, None] - torch.tensor(radii)).abs().min(1)
        assert gap.values.median() < 0.25
        assert torch.bincount(gap.indices).min() > 4000 / len(radii) * 0.8


def test_checkerboard_fills_only_black_squares():
    x = _sample("checkerboard")
    assert (x.abs() <= 4).all()
    cells = torch.floor(x / 2).long()
    assert ((cells[:, 0] + cells[:, 1]) % 2 == 0).all()
    assert len(set(map(tuple, cells.tolist()))) == 8


def test_moons_are_two_half_circles():
    x = _sample("moons")
    # Undo the scaling; the upper moon is the unit half circle around (0, 0), the lower
    # one around (1, 0.5).
    u = (x - torch.tensor([-1.0, -0.2])) / 2
    d_upper = (u.norm(dim=1) - 1).abs()
    d_lower = ((u - torch.tensor([1.0, 0.5])).norm(dim=1) - 1).abs()
    upper = d_upper < d_lower
    assert torch.minimum(d_upper, d_lower).median() < 0.1
    assert 0.4 < upper.float().mean() < 0.6
    assert u[upper, 1].mean() > 0.4 and u[~upper, 1].mean() < 0.1


def test_spirals_swissroll_pinwheel_have_their_symmetry():
    spirals = _sample("2spirals", 20000)
    assert torch.allclose(spirals.mean(0), torch.zeros(2), atol=0.1)  # point-symmetric arms
    roll = _radius(_sample("swissroll"))
    assert roll.min() < 1.5 and roll.max() > 2.5  # a roll, not a ring
    angle = torch.atan2(*_sample("pinwheel", 20000).flip(1).T)
    counts = torch.histc(angle, bins=20, min=-math.pi, max=math.pi)
    assert counts.max() > 3 * counts.min()  # arms and gaps, not a uniform disk


def test_unknown_toy_and_bad_arguments_name_the_argument():
    with pytest.raises(ValueError, match=r"dataset='spiral'.*moons"):
        sample_toy("spiral", 10)
    with pytest.raises(ValueError, match="n must be"):
        sample_toy("moons", 0)
    with pytest.raises(ValueError, match="dtype"):
        sample_toy("moons", 3, dtype=torch.int64)


# ---------------------------------------------------------------- model range and digits


def test_model_range_matches_torchvision_and_round_trips():
    from torchvision import transforms

    levels = torch.arange(256, dtype=torch.uint8).view(1, 16, 16)
    x = to_model_range(levels)
    reference = transforms.Normalize(0.5, 0.5)(transforms.ToTensor()(levels[0].numpy()))
    assert torch.equal(x, reference)
    assert x.min() == -1 and x.max() == 1
    assert torch.equal(from_model_range(x), levels)
    assert torch.equal(from_model_range(torch.tensor([-7.0, 7.0])), torch.tensor([0, 255]).byte())
    with pytest.raises(ValueError, match="uint8"):
        to_model_range(levels.float())
    with pytest.raises(ValueError, match="NaN"):
        from_model_range(torch.tensor([float("nan")]))


def test_digits():
    train, test = load_images("digits"), load_images("digits", train=False)
    assert train.shape == (1500, 1, 8, 8) and test.shape == (297, 1, 8, 8)
    assert train.dtype == torch.uint8
    assert train.min() == 0 and train.max() == 255
    x = to_model_range(train)
    assert x.min() == -1 and x.max() == 1
    assert torch.equal(from_model_range(x), train)
    assert dataset_shape("digits") == (1, 8, 8)


def test_resize_and_channel_conversion():
    images = load_images("digits", image_size=16, channels=3)
    assert images.shape == (1500, 3, 16, 16) and images.dtype == torch.uint8
    assert torch.equal(images[:, 0], images[:, 2])
    assert dataset_shape("digits", image_size=16, channels=3) == (3, 16, 16)
    with pytest.raises(ValueError, match="channels must be 1"):
        load_images("digits", channels=2)
    with pytest.raises(ValueError, match="image_size must be"):
        dataset_shape("cifar10", image_size=0)


def test_dataset_shapes_and_unknown_names():
    assert [dataset_shape(name) for name in ("moons", *IMAGE_DATASETS)] == [
        (2,),
        (1, 8, 8),
        (1, 28, 28),
        (3, 32, 32),
        (3, 32, 32),
    ]
    assert dataset_shape("folder", image_size=64, channels=1) == (1, 64, 64)
    with pytest.raises(ValueError, match=r"dataset='mnist'.*cifar10"):
        load_images("mnist")
    with pytest.raises(ValueError, match=r"dataset='mnist'"):
        dataset_shape("mnist")
    with pytest.raises(ValueError, match="image data sets only"):
        dataset_shape("moons", image_size=32)


def test_default_root_follows_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("ECNF_DATA", str(tmp_path))
    assert default_root() == tmp_path
    monkeypatch.delenv("ECNF_DATA")
    assert default_root() == Path.home() / ".cache" / "ecnf" / "data"


# ---------------------------------------------------------------- Fashion-MNIST


def _write_idx(path: Path, array: np.ndarray) -> None:
    """The IDX format: magic (0, 0, 0x08 = ubyte, ndim), big-endian dims, then the bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    with gzip.open(path, "wb") as file:
        file.write(header + array.astype(np.uint8).tobytes())


def _write_fashion_debian_dir(folder: Path) -> dict[str, np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    images = {"train": rng.integers(0, 256, (5, 28, 28)), "t10k": rng.integers(0, 256, (3, 28, 28))}
    for split, pixels in images.items():
        _write_idx(folder / f"{split}-images-idx3-ubyte.gz", pixels)
        _write_idx(folder / f"{split}-labels-idx1-ubyte.gz", np.arange(len(pixels)) % 10)
    return images


def test_idx_header_is_the_real_format(tmp_path):
    _write_idx(tmp_path / "x.gz", np.zeros((2, 28, 28)))
    _write_idx(tmp_path / "y.gz", np.zeros(2))
    for name, magic in (("x.gz", 2051), ("y.gz", 2049)):
        with gzip.open(tmp_path / name) as file:
            assert file.read(4) == magic.to_bytes(4, "big")


def test_fashion_mnist_from_a_debian_style_folder(tmp_path, monkeypatch):
    expected = _write_fashion_debian_dir(tmp_path / "debian")
    monkeypatch.setenv(FASHION_MNIST_DIR_ENV_VAR, str(tmp_path / "debian"))
    root = tmp_path / "root"
    train = load_images("fashion_mnist", root=root)
    test = load_images("fashion_mnist", root=root, train=False)
    assert train.shape == (5, 1, 28, 28) and test.shape == (3, 1, 28, 28)
    assert train.dtype == torch.uint8
    assert np.array_equal(train[:, 0].numpy(), expected["train"])
    assert np.array_equal(test[:, 0].numpy(), expected["t10k"])
    # torchvision read the decompressed copies in its raw folder.
    raw = root / "FashionMNIST" / "raw"
    assert (raw / "train-images-idx3-ubyte").read_bytes()[:4] == (2051).to_bytes(4, "big")
    # Once staged, the source folder is no longer needed.
    monkeypatch.setenv(FASHION_MNIST_DIR_ENV_VAR, str(tmp_path / "nowhere"))
    assert torch.equal(load_images("fashion_mnist", root=root), train)


def test_fashion_mnist_real_debian_package(tmp_path):
    """The real data set from Debian's ``dataset-fashion-mnist``.

    With ``ECNF_REQUIRE_FASHION_MNIST=1`` (set in CI, which installs the package) a missing
    package fails the test; elsewhere the test is skipped, with the reason shown.
    """
    if not FASHION_MNIST_DEBIAN_DIR.is_dir():
        assert os.environ.get("ECNF_REQUIRE_FASHION_MNIST") != "1", (
            f"{FASHION_MNIST_DEBIAN_DIR} is missing: apt-get install dataset-fashion-mnist"
        )
        pytest.skip("Debian's dataset-fashion-mnist is not installed")
    from ecnf.data import load_fashion_mnist

    train = load_fashion_mnist(tmp_path, source_dir=FASHION_MNIST_DEBIAN_DIR)
    test = load_fashion_mnist(tmp_path, train=False, source_dir=FASHION_MNIST_DEBIAN_DIR)
    assert train.shape == (60000, 1, 28, 28) and test.shape == (10000, 1, 28, 28)
    assert train.dtype == torch.uint8 and train.max() == 255
    assert 60 < train.float().mean() < 85  # mostly dark background, as in the real set
    labels = load_fashion_mnist(
        tmp_path, train=False, source_dir=FASHION_MNIST_DEBIAN_DIR, with_labels=True
    )[1]
    assert labels.shape == (10000,) and torch.equal(labels.bincount(), torch.full((10,), 1000))


def test_fashion_mnist_missing_says_how_to_get_it(tmp_path, monkeypatch):
    (tmp_path / "empty").mkdir()
    monkeypatch.setenv(FASHION_MNIST_DIR_ENV_VAR, str(tmp_path / "empty"))
    with pytest.raises(DatasetNotFoundError) as info:
        load_images("fashion_mnist", root=tmp_path / "root")
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "download=True" in message and "--download" in message


# ---------------------------------------------------------------- CIFAR-10


def _write_cifar(root: Path, sizes=(3, 2, 2, 2, 2), test_size=4, protocol=2) -> Path:
    """A small archive in the layout of the real ``cifar-10-batches-py``."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    names = [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]
    for index, (name, n) in enumerate(zip(names, [*sizes, test_size], strict=True)):
        data = np.full((n, 3072), index, dtype=np.uint8)
        data[:, 1024 + 2 * 32 + 5] = 200 + index  # green channel, row 2, column 5
        batch = {
            b"batch_label": f"batch {index}".encode(),
            b"labels": list(range(n)),
            b"data": data,
            b"filenames": [f"img_{k}.png".encode() for k in range(n)],
        }
        (folder / name).write_bytes(pickle.dumps(batch, protocol=protocol))
    meta = {b"label_names": [b"airplane"], b"num_cases_per_batch": 10000, b"num_vis": 3072}
    (folder / "batches.meta").write_bytes(pickle.dumps(meta, protocol=protocol))
    return folder


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar10_reads_the_pickle_layout(tmp_path, protocol):
    _write_cifar(tmp_path, protocol=protocol)
    train = load_images("cifar10", root=tmp_path)
    test = load_images("cifar10", root=tmp_path, train=False)
    assert train.shape == (11, 3, 32, 32) and test.shape == (4, 3, 32, 32)
    assert train.dtype == torch.uint8
    assert train[0, 1, 2, 5] == 200 and train[3, 1, 2, 5] == 201 and test[0, 1, 2, 5] == 205
    assert train[0, 0, 2, 5] == 0 and train[0, 1, 5, 2] == 0 and train[0, 2, 2, 5] == 0
    assert int(train[3, 0, 0, 0]) == 1  # the second batch follows the first
    labels = read_cifar_batch(tmp_path / "cifar-10-batches-py" / "test_batch")[1]
    assert labels.tolist() == [0, 1, 2, 3]
    # the labels of load_labels follow the images batch after batch
    from ecnf.data import load_labels

    assert load_labels("cifar10", root=tmp_path).tolist() == [0, 1, 2, 0, 1] + [0, 1] * 3
    assert load_labels("cifar10", root=tmp_path, train=False).tolist() == [0, 1, 2, 3]


class _Exploit:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def test_cifar10_refuses_a_pickle_with_a_foreign_global(tmp_path):
    folder = _write_cifar(tmp_path)
    marker = tmp_path / "pwned"
    batch = {b"data": np.zeros((1, 3072), np.uint8), b"labels": [_Exploit(marker)]}
    (folder / "data_batch_2").write_bytes(pickle.dumps(batch))
    with pytest.raises(ValueError, match=r"data_batch_2.*refusing to load the global .*system"):
        load_images("cifar10", root=tmp_path)
    assert not marker.exists()


def test_cifar10_rejects_damaged_batches(tmp_path):
    folder = _write_cifar(tmp_path)
    (folder / "test_batch").write_bytes(b"\x80\x02truncated")
    with pytest.raises(ValueError, match="test_batch is not a readable CIFAR batch"):
        load_images("cifar10", root=tmp_path, train=False)
    bad = {b"data": np.zeros((2, 100), np.uint8), b"labels": [0, 1]}
    (folder / "test_batch").write_bytes(pickle.dumps(bad))
    with pytest.raises(ValueError, match=r"shape \(N, 3072\)"):
        load_images("cifar10", root=tmp_path, train=False)


def test_cifar10_missing_says_how_to_get_it(tmp_path):
    with pytest.raises(DatasetNotFoundError, match=r"download=True.*cifar-10-batches-py"):
        load_images("cifar10", root=tmp_path)
    folder = _write_cifar(tmp_path)
    (folder / "data_batch_4").unlink()
    with pytest.raises(DatasetNotFoundError, match="data_batch_4"):
        load_images("cifar10", root=tmp_path)


# ---------------------------------------------------------------- image folders


def _write_png(path: Path, array: np.ndarray) -> None:
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(array.astype(np.uint8)).save(path)


def test_folder_of_images(tmp_path):
    wide = np.zeros((20, 60, 3))
    wide[:, :20, 0] = wide[:, 20:40, 1] = wide[:, 40:, 2] = 255  # red | green | blue
    _write_png(tmp_path / "a_wide.png", wide)
    _write_png(tmp_path / "sub" / "b_grey.PNG", np.full((50, 40), 128))
    (tmp_path / "notes.txt").write_text("not an image")
    images = load_images("folder", root=tmp_path)
    assert images.shape == (2, 3, 32, 32) and images.dtype == torch.uint8
    # The center crop of the wide image is its green third.
    assert (images[0, 1] == 255).all() and (images[0, 0] == 0).all() and (images[0, 2] == 0).all()
    assert (images[1] == 128).all()
    small = load_images("folder", root=tmp_path, image_size=8, channels=1)
    assert small.shape == (2, 1, 8, 8)
    assert abs(int(small[0, 0, 4, 4]) - round(0.587 * 255)) <= 1  # green's luma


def test_folder_errors_name_the_problem(tmp_path):
    with pytest.raises(ValueError, match="holds no image files"):
        load_images("folder", root=tmp_path)
    with pytest.raises(DatasetNotFoundError, match="does not exist"):
        load_images("folder", root=tmp_path / "missing")
    with pytest.raises(ValueError, match="needs root"):
        load_images("folder")
    _write_png(tmp_path / "good.png", np.zeros((8, 8, 3)))
    (tmp_path / "broken.jpg").write_bytes(b"\xff\xd8 this is not a jpeg")
    with pytest.raises(ValueError, match=r"broken\.jpg"):
        load_images("folder", root=tmp_path)


# ---------------------------------------------------------------- streams


def _index_images(n: int) -> torch.Tensor:
    """Images whose pixels are their own index, to read back which ones a batch took."""
    return torch.arange(n, dtype=torch.uint8).view(n, 1, 1, 1).expand(n, 1, 2, 3).contiguous()


def _indices(batch: torch.Tensor) -> list[int]:
    return from_model_range(batch)[:, 0, 0, 0].tolist()


STREAMS = {
    "toy": dict(name="pinwheel", seed=3),
    "digits": dict(name="digits", seed=5, flip=True),
    "digits_rank1": dict(name="digits", seed=5, flip=True, rank=1, world_size=2),
    "digits_small": dict(name="digits", train=False, seed=7),  # 297 images: epochs end often
}


@pytest.mark.parametrize("k", [0, 1, 4])
@pytest.mark.parametrize("kind", STREAMS)
def test_resumed_stream_continues_exactly(kind, k):
    kwargs = dict(STREAMS[kind])
    name = kwargs.pop("name")
    uninterrupted = make_stream(name, **kwargs)
    first = make_stream(name, **kwargs)
    sizes = [100, 37, 64]
    for i in range(k):
        uninterrupted.next_batch(sizes[i % 3])
        first.next_batch(sizes[i % 3])
    state = json.loads(json.dumps(first.state_dict()))
    resumed = make_stream(name, **kwargs)
    resumed.load_state_dict(state)
    for m in range(3):
        assert torch.equal(resumed.next_batch(90 + m), uninterrupted.next_batch(90 + m))


def test_state_from_another_stream_is_refused():
    state = make_stream("moons", seed=1).state_dict()
    with pytest.raises(ValueError, match=r"seed=1.*seed=2"):
        make_stream("moons", seed=2).load_state_dict(state)
    images = _index_images(10)
    with pytest.raises(ValueError, match="kind="):
        ImageStream(images).load_state_dict(state)
    state = ImageStream(images, world_size=2).state_dict()
    with pytest.raises(ValueError, match="world_size"):
        ImageStream(images).load_state_dict(state)


def test_image_stream_epochs_are_permutations():
    stream = ImageStream(_index_images(10), seed=0)
    seen = _indices(stream.next_batch(25))
    assert sorted(seen[:10]) == sorted(seen[10:20]) == list(range(10))
    assert seen[:10] != seen[10:20]  # a new permutation each epoch
    x = stream.next_batch(2)
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1


def test_ranks_draw_disjoint_shares_of_each_epoch():
    images = _index_images(11)
    ranks = [ImageStream(images, seed=4, rank=r, world_size=2) for r in range(2)]
    for epoch in range(3):
        shares = [_indices(stream.next_batch(5)) for stream in ranks]
        assert set(shares[0]).isdisjoint(shares[1]), epoch
        assert len(set(shares[0] + shares[1])) == 10  # one image left out of this epoch
    # Every rank holds the same state, so the state saved by rank 0 resumes rank 1.
    assert ranks[0].state_dict() == ranks[1].state_dict()
    resumed = ImageStream(images, seed=4, rank=1, world_size=2)
    resumed.load_state_dict(ranks[0].state_dict())
    assert torch.equal(resumed.next_batch(7), ranks[1].next_batch(7))
    with pytest.raises(ValueError, match="rank must be"):
        ImageStream(images, rank=2, world_size=2)
    with pytest.raises(ValueError, match="cannot be shared"):
        ImageStream(images[:1], world_size=2)


def test_toy_ranks_draw_different_samples():
    assert not torch.equal(
        ToyStream("moons", 0, rank=0).next_batch(8), ToyStream("moons", 0, rank=1).next_batch(8)
    )


def test_flips_mirror_some_samples():
    images = torch.randint(0, 256, (64, 3, 4, 4), dtype=torch.uint8)
    plain = ImageStream(images, seed=2).next_batch(64)
    flipped = ImageStream(images, seed=2, flip=True).next_batch(64)
    same = (plain == flipped).flatten(1).all(1)
    mirrored = (plain.flip(-1) == flipped).flatten(1).all(1)
    assert (same | mirrored).all()
    assert 10 < int(mirrored.sum()) < 54 and int(same.sum()) > 10


def test_streams_refuse_bad_data():
    with pytest.raises(ValueError, match=r"uint8 tensor of shape \(N, C, H, W\)"):
        ImageStream(torch.zeros(10, 8, 8, dtype=torch.uint8))
    with pytest.raises(ValueError, match="uint8"):
        ImageStream(torch.zeros(10, 1, 8, 8))
    with pytest.raises(ValueError, match="flip=True"):
        make_stream("moons", flip=True)
    with pytest.raises(ValueError, match="batch_size"):
        make_stream("moons").next_batch(0)


def test_toy_stream_refuses_nan(monkeypatch):
    import ecnf.data.stream as stream_module

    monkeypatch.setattr(stream_module, "sample_toy", lambda *a, **k: torch.full((4, 2), math.nan))
    with pytest.raises(ValueError, match="NaN"):
        ToyStream("moons").next_batch(4)

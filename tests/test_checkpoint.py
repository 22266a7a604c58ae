"""Checkpoints: exact round trips, bitwise resume, refusals that never unpickle, atomicity."""

import json
import os
import pathlib
import pickle
import random

import numpy as np
import pytest
import safetensors.torch
import torch
from safetensors import safe_open

import ecnf.checkpoint as ckpt
from ecnf.checkpoint import (
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    checkpoint_info,
    load,
    read_checkpoint,
    save_checkpoint,
)
from ecnf.ema import EMA
from ecnf.nets import MLPConfig, ResNetConfig, UNetConfig, build_model, config_from_dict

CONFIGS = {
    "mlp": lambda: MLPConfig(data_shape=(2,)),
    "resnet": lambda: ResNetConfig(data_shape=(1, 8, 8), width=32, num_blocks=2),
    "unet": lambda: UNetConfig(data_shape=(1, 8, 8), channels=8, channel_mult=(1, 2)),
}


def trained_pair(arch: str, seed: int = 0) -> tuple[torch.nn.Module, EMA]:
    """A model and an EMA that differ from each other and from the initialisation."""

    torch.manual_seed(seed)
    model = build_model(CONFIGS[arch]())
    ema = EMA(model, decay=0.5)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.1 * torch.randn_like(p))
    ema.update(model)
    return model, ema


def inputs(model: torch.nn.Module, batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(batch, *model.config.data_shape, generator=gen)
    return x, torch.rand(batch, generator=gen)


def write_variant(src, dst, *, metadata=None, tensors=None):
    """Rewrites a checkpoint through safetensors with edited metadata or tensors."""

    with safe_open(src, framework="pt") as f:
        meta = f.metadata()
        flat = {name: f.get_tensor(name) for name in f.keys()}  # noqa: SIM118
    meta = metadata(meta) if metadata else meta
    flat = tensors(flat) if tensors else flat
    safetensors.torch.save_file(flat, dst, metadata=meta)
    return dst


@pytest.fixture
def saved(tmp_path):
    model, ema = trained_pair("mlp")
    return save_checkpoint(tmp_path / "ok.safetensors", model=model, ema=ema)


# Round trips


@pytest.mark.parametrize("arch", list(CONFIGS))
def test_load_rebuilds_each_architecture_exactly(tmp_path, arch):
    model, ema = trained_pair(arch)
    path = save_checkpoint(tmp_path / f"{arch}.safetensors", model=model, ema=ema)
    assert path == tmp_path / f"{arch}.safetensors"
    x, t = inputs(model)

    restored = load(path, device="cpu")
    assert type(restored) is type(model) and not restored.training
    assert restored.config == model.config
    with torch.no_grad():
        assert torch.equal(restored(x, t), ema(x, t))
        raw = load(path, device="cpu", use_ema=False)
        assert torch.equal(raw(x, t), model.eval()(x, t))
        assert not torch.equal(raw(x, t), restored(x, t))


def test_load_without_ema_uses_model_weights(tmp_path):
    model, _ = trained_pair("mlp")
    path = save_checkpoint(tmp_path / "plain.safetensors", model=model)
    x, t = inputs(model)
    with torch.no_grad():
        assert torch.equal(load(path, device="cpu")(x, t), model(x, t))
    assert read_checkpoint(path).ema_state is None


def test_half_precision_halves_the_file(tmp_path):
    model, ema = trained_pair("mlp")
    full = save_checkpoint(tmp_path / "full.safetensors", model=model, ema=ema)
    half = save_checkpoint(tmp_path / "half.safetensors", model=model, ema=ema, half=True)
    assert 0.45 < half.stat().st_size / full.stat().st_size < 0.55

    checkpoint = read_checkpoint(half)
    assert all(t.dtype == torch.float16 for t in checkpoint.model_state.values())
    restored = load(half, device="cpu")
    assert all(p.dtype == torch.float32 for p in restored.parameters())
    x, t = inputs(model)
    with torch.no_grad():
        torch.testing.assert_close(restored(x, t), ema(x, t), rtol=1e-2, atol=1e-2)
        assert not torch.equal(restored(x, t), ema(x, t))
        wide = load(half, device="cpu", dtype=torch.float64)
        assert all(p.dtype == torch.float64 for p in wide.parameters())


def test_resume_with_ema_and_adamw_is_bitwise(tmp_path):
    torch.manual_seed(0)
    model = build_model(MLPConfig(data_shape=(2,), width=32, depth=2))
    ema = EMA(model, decay=0.9)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-2, betas=(0.8, 0.95), weight_decay=1e-3)
    batches = [(torch.randn(16, 2), torch.rand(16), torch.randn(16, 2)) for _ in range(10)]

    def step(model, ema, optimizer, batch):
        x, t, target = batch
        optimizer.zero_grad()
        ((model(x, t) - target) ** 2).mean().backward()
        optimizer.step()
        ema.update(model)

    for batch in batches[:5]:
        step(model, ema, optimizer, batch)
    path = save_checkpoint(
        tmp_path / "resume.safetensors",
        model=model,
        ema=ema,
        optimizer=optimizer,
        train_state={"step": 5},
    )

    checkpoint = read_checkpoint(path)
    copy = build_model(config_from_dict(checkpoint.model_config))
    copy.load_state_dict(checkpoint.model_state)
    copy_ema = EMA(copy, decay=0.9)
    copy_ema.model.load_state_dict(checkpoint.ema_state)
    copy_ema._num_updates.fill_(checkpoint.ema_updates)
    copy_optimizer = torch.optim.AdamW(copy.parameters())  # hyper-parameters come back too
    copy_optimizer.load_state_dict(checkpoint.optimizer_state)
    assert copy_optimizer.param_groups[0]["lr"] == 1e-2
    assert list(copy_optimizer.param_groups[0]["betas"]) == [0.8, 0.95]
    assert copy_ema.num_updates == 5 and checkpoint.train_state == {"step": 5}

    for batch in batches[5:]:
        step(model, ema, optimizer, batch)
        step(copy, copy_ema, copy_optimizer, batch)
    for a, b in zip(model.parameters(), copy.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(ema.model.parameters(), copy_ema.model.parameters(), strict=True):
        assert torch.equal(a, b)
    for a, b in zip(optimizer.state.values(), copy_optimizer.state.values(), strict=True):
        assert all(torch.equal(a[k], b[k]) for k in a)


def test_optimizer_state_is_never_halved(tmp_path):
    model = build_model(MLPConfig(data_shape=(2,), width=8))
    optimizer = torch.optim.AdamW(model.parameters())
    model(torch.randn(3, 2), torch.rand(3)).sum().backward()
    optimizer.step()
    path = save_checkpoint(tmp_path / "h.safetensors", model=model, optimizer=optimizer, half=True)
    state = read_checkpoint(path).optimizer_state["state"]
    assert set(state) == set(range(len(list(model.parameters()))))
    assert all(v.dtype == torch.float32 for s in state.values() for v in s.values())


def test_train_state_metadata_and_extra_tensors_survive(tmp_path):
    model = build_model(MLPConfig(data_shape=(2,), width=8))
    train_state = {
        "step": 123,
        "config": {"lr": 2e-4, "betas": [0.9, 0.999], "tiny": 1e-300, "name": "moons"},
        "python_rng": random.getstate(),
        "numpy_rng": np.random.default_rng(7).bit_generator.state,  # 128-bit integers
        "data": {"epoch": 3, "offset": np.int64(17)},
    }
    metadata = {"dataset": "moons", "loss": "ot_cfm", "metrics": {"w2": np.float32(0.25)}}
    extra = {
        "rng.torch": torch.get_rng_state(),
        "ids": torch.arange(5, dtype=torch.int64),
        "mask": torch.tensor([True, False]),
        "strided": torch.arange(12.0, dtype=torch.float64).reshape(3, 4).T,
    }
    path = save_checkpoint(
        tmp_path / "s.safetensors",
        model=model,
        train_state=train_state,
        metadata=metadata,
        tensors=extra,
    )

    checkpoint = read_checkpoint(path)
    assert checkpoint.train_state == json.loads(json.dumps(train_state, default=lambda a: a.item()))
    assert checkpoint.train_state["numpy_rng"] == train_state["numpy_rng"]
    assert checkpoint.metadata == {"dataset": "moons", "loss": "ot_cfm", "metrics": {"w2": 0.25}}
    assert set(checkpoint.tensors) == set(extra)
    for name, tensor in extra.items():
        assert checkpoint.tensors[name].dtype == tensor.dtype
        assert torch.equal(checkpoint.tensors[name], tensor)

    state = checkpoint.train_state["python_rng"]  # tuples come back as lists
    random.setstate((state[0], tuple(state[1]), state[2]))
    expected = random.random()
    random.setstate(train_state["python_rng"])
    assert random.random() == expected
    torch.set_rng_state(checkpoint.tensors["rng.torch"])


def test_checkpoint_info_reads_the_header_only(tmp_path, monkeypatch):
    model, ema = trained_pair("mlp")
    optimizer = torch.optim.AdamW(model.parameters())
    path = save_checkpoint(
        tmp_path / "i.safetensors",
        model=model,
        ema=ema,
        optimizer=optimizer,
        metadata={"dataset": "moons"},
        tensors={"rng.torch": torch.get_rng_state()},
    )

    def no_tensor_reads(*args, **kwargs):
        raise AssertionError("checkpoint_info must not open the tensors")

    monkeypatch.setattr(ckpt, "safe_open", no_tensor_reads)
    info = checkpoint_info(path)
    assert info["format"] == FORMAT and info["format_version"] == FORMAT_VERSION
    assert info["model_config"]["arch"] == "mlp" and info["metadata"] == {"dataset": "moons"}
    assert info["ema_updates"] == 1 and info["has_ema"] and info["has_optimizer"]
    assert info["torch_version"] == torch.__version__ and info["ecnf_version"]
    assert info["created"].endswith("+00:00")
    numel = sum(t.numel() for t in model.state_dict().values())
    assert info["tensors"]["model"] == {
        "count": len(model.state_dict()),
        "numel": numel,
        "bytes": 4 * numel,
        "dtypes": ["F32"],
    }
    assert info["tensors"]["extra"]["dtypes"] == ["U8"]
    assert info["tensors"]["optim"]["count"] == 0  # AdamW holds no state before a step


# Refusals


def refusal_cases():
    def missing(p, _):
        return p.parent / "missing.safetensors"

    def directory(p, _):
        (p.parent / "folder").mkdir()
        return p.parent / "folder"

    def empty(p, _):
        (p.parent / "empty.safetensors").write_bytes(b"")
        return p.parent / "empty.safetensors"

    def truncated(p, _):
        data = p.read_bytes()
        (p.parent / "cut.safetensors").write_bytes(data[: len(data) // 2])
        return p.parent / "cut.safetensors"

    def header_cut(p, _):
        (p.parent / "cut.safetensors").write_bytes(p.read_bytes()[:40])
        return p.parent / "cut.safetensors"

    def random_bytes(p, _):
        data = torch.randint(0, 256, (4096,), generator=torch.Generator().manual_seed(0))
        (p.parent / "noise.safetensors").write_bytes(bytes(data.to(torch.uint8).tolist()))
        return p.parent / "noise.safetensors"

    def torch_pickle(p, _):
        torch.save({"model.w": torch.zeros(2)}, p.parent / "pickle.pt")
        return p.parent / "pickle.pt"

    def foreign(p, _):
        safetensors.torch.save_file({"weight": torch.zeros(2)}, p.parent / "foreign.safetensors")
        return p.parent / "foreign.safetensors"

    def other_format(p, d):
        return write_variant(p, d, metadata=lambda m: {**m, "format": "diffusers"})

    def newer(p, d):
        return write_variant(p, d, metadata=lambda m: {**m, "format_version": "2"})

    def bad_json(p, d):
        return write_variant(p, d, metadata=lambda m: {**m, "train_state": '{"step": 1'})

    def no_entry(p, d):
        return write_variant(
            p, d, metadata=lambda m: {k: v for k, v in m.items() if k != "metadata"}
        )

    def stray_tensor(p, d):
        return write_variant(p, d, tensors=lambda t: {**t, "weight": torch.zeros(1)})

    def trailing(p, d):
        d.write_bytes(p.read_bytes() + b"\0" * 16)
        return d

    return [
        (missing, "does not exist"),
        (directory, "is a directory"),
        (empty, "is empty"),
        (truncated, "truncated"),
        (header_cut, "truncated"),
        (random_bytes, "not a safetensors file"),
        (torch_pickle, "PyTorch pickle"),
        (foreign, "not an ECNF checkpoint"),
        (other_format, "not an ECNF checkpoint.*'diffusers'"),
        (newer, "format version 2 by a newer ecnf"),
        (bad_json, "'train_state' is not JSON"),
        (no_entry, "no 'metadata' entry"),
        (stray_tensor, "unexpected tensor 'weight'"),
        (trailing, "16 unexpected bytes"),
    ]


@pytest.mark.parametrize(
    ("make", "message"), refusal_cases(), ids=[make.__name__ for make, _ in refusal_cases()]
)
def test_refusals_name_the_path_and_the_problem(saved, tmp_path, make, message):
    bad = make(saved, tmp_path / "variant.safetensors")
    for reader in (read_checkpoint, load, checkpoint_info):
        with pytest.raises(CheckpointError, match=message) as info:
            reader(bad)
        assert str(bad) in str(info.value)
        assert isinstance(info.value, ValueError)


def test_unknown_architecture_is_refused_by_readers_not_by_info(saved, tmp_path):
    def other_arch(meta):
        config = {**json.loads(meta["model_config"]), "arch": "transformer"}
        return {**meta, "model_config": json.dumps(config)}

    bad = write_variant(saved, tmp_path / "arch.safetensors", metadata=other_arch)
    for reader in (read_checkpoint, load):
        with pytest.raises(CheckpointError, match=r"invalid model_config.*transformer"):
            reader(bad)
    assert checkpoint_info(bad)["model_config"]["arch"] == "transformer"


def test_mismatched_weights_name_the_keys(saved, tmp_path):
    def rename(tensors):
        tensors = dict(tensors)
        name = next(k for k in tensors if k.startswith("ema."))
        tensors["ema.surprise"] = tensors.pop(name)
        return tensors

    bad = write_variant(saved, tmp_path / "keys.safetensors", tensors=rename)
    with pytest.raises(CheckpointError, match=r"missing keys .*\w.*unexpected keys surprise"):
        load(bad, device="cpu")
    assert read_checkpoint(bad).ema_state["surprise"] is not None


class Bomb:
    """Unpickling this object creates a file: proof that code ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (pathlib.Path(self.marker),))


@pytest.mark.parametrize("zipped", [True, False])
def test_pickles_are_refused_without_unpickling(tmp_path, monkeypatch, zipped):
    live, marker = tmp_path / "live", tmp_path / "marker"
    torch.save({"model": Bomb(live)}, tmp_path / "live.pt", _use_new_zipfile_serialization=zipped)
    torch.load(tmp_path / "live.pt", weights_only=False)  # the bomb is real
    assert live.exists()

    path = tmp_path / "evil.safetensors"
    torch.save({"model": Bomb(marker)}, path, _use_new_zipfile_serialization=zipped)

    def forbidden(*args, **kwargs):
        raise AssertionError("a checkpoint reader unpickled")

    monkeypatch.setattr(torch, "load", forbidden)
    monkeypatch.setattr(pickle, "load", forbidden)
    monkeypatch.setattr(pickle, "loads", forbidden)
    monkeypatch.setattr(pickle, "Unpickler", forbidden)
    for reader in (read_checkpoint, load, checkpoint_info):
        with pytest.raises(CheckpointError, match="refuses to unpickle"):
            reader(path)
    assert not marker.exists()


# Writing


@pytest.mark.parametrize("failure", ["serialise", "fsync", "replace", "interrupt"])
def test_failed_save_keeps_the_previous_checkpoint(tmp_path, monkeypatch, failure):
    model, ema = trained_pair("mlp")
    path = save_checkpoint(tmp_path / "ck.safetensors", model=model, ema=ema, metadata={"v": 1})
    before = path.read_bytes()

    def fail(*args, **kwargs):
        raise KeyboardInterrupt if failure == "interrupt" else OSError("disk on fire")

    target = {"serialise": (safetensors.torch, "save"), "replace": (os, "replace")}
    monkeypatch.setattr(*target.get(failure, (os, "fsync")), fail)
    other, _ = trained_pair("mlp", seed=1)
    with pytest.raises(KeyboardInterrupt if failure == "interrupt" else OSError):
        save_checkpoint(path, model=other, metadata={"v": 2})
    with pytest.raises(KeyboardInterrupt if failure == "interrupt" else OSError):
        save_checkpoint(tmp_path / "new.safetensors", model=other)
    monkeypatch.undo()

    assert sorted(os.listdir(tmp_path)) == ["ck.safetensors"]
    assert path.read_bytes() == before
    assert read_checkpoint(path).metadata == {"v": 1}


def test_save_overwrites_and_creates_folders(tmp_path):
    model, _ = trained_pair("mlp")
    path = tmp_path / "runs" / "a" / "ck.safetensors"
    save_checkpoint(path, model=model, metadata={"v": 1})
    save_checkpoint(path, model=model, metadata={"v": 2})
    assert read_checkpoint(path).metadata == {"v": 2}
    assert os.listdir(path.parent) == ["ck.safetensors"]


def test_save_rejects_bad_arguments(tmp_path):
    model = build_model(MLPConfig(data_shape=(2,), width=8))
    path = tmp_path / "x.safetensors"
    with pytest.raises(ValueError, match="no config attribute"):
        save_checkpoint(path, model=torch.nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"ema must be an ecnf\.EMA"):
        save_checkpoint(path, model=model, ema=model)
    with pytest.raises(ValueError, match="train_state must be JSON-serialisable"):
        save_checkpoint(path, model=model, train_state={"rng": torch.get_rng_state()})
    with pytest.raises(ValueError, match=r"tensors\['x'\] must be a torch.Tensor"):
        save_checkpoint(path, model=model, tensors={"x": [1, 2]})
    with pytest.raises(ValueError, match="is a directory"):
        save_checkpoint(tmp_path, model=model)
    with torch.no_grad():
        model.output.weight[0, 0] = 1e6
    with pytest.raises(ValueError, match="beyond float16's range"):
        save_checkpoint(path, model=model, half=True)
    with pytest.raises(ValueError, match="dtype must be a floating-point"):
        load(path, dtype=torch.int64)
    assert os.listdir(tmp_path) == []


def test_wrapped_models_are_unwrapped(tmp_path):
    model = build_model(MLPConfig(data_shape=(2,), width=8))
    path = save_checkpoint(tmp_path / "w.safetensors", model=torch.nn.DataParallel(model))
    assert set(read_checkpoint(path).model_state) == set(model.state_dict())

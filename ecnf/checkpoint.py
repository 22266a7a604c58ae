r"""Checkpoints as tensors, not pickles: one safetensors file with JSON metadata.

A checkpoint is a single `safetensors <https://huggingface.co/docs/safetensors>`_ file.
Its tensors are named by prefix

* :py:`"model.<key>"`: the network's :py:`state_dict()`;
* :py:`"ema.<key>"`: the EMA copy's :py:`state_dict()` (of :py:`ema.model`);
* :py:`"optim.state.<param_index>.<name>"` (and :py:`"optim.param_groups.<i>.<key>"` for
  tensor hyper-parameters): the optimizer's state tensors;
* :py:`"extra.<name>"`: any other named tensor, such as RNG states.

Its header metadata (a string-to-string map) holds :py:`"format"`,
:py:`"format_version"`, the model configuration, the training state, free metadata and
the optimizer's JSON part (hyper-parameters and scalar state), each as JSON text.

Reading parses the header itself (length, JSON, offsets against the file size) before
handing the file to safetensors, which never unpickles, so loading a checkpoint never
executes code, and a corrupt, truncated or foreign file raises a :class:`CheckpointError`
that names the path. Saving writes a temporary file in the same folder, flushes and
fsyncs it, then renames it over the target, so an interrupted save leaves any previous
checkpoint at that path intact.
"""

from __future__ import annotations

__all__ = [
    "FORMAT",
    "FORMAT_VERSION",
    "Checkpoint",
    "CheckpointError",
    "checkpoint_info",
    "load",
    "read_checkpoint",
    "save_checkpoint",
]

import json
import os
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

import safetensors.torch
import torch
from safetensors import SafetensorError, safe_open
from torch import Tensor, nn

from ._checkpoint_file import (
    _GROUPS,
    FORMAT,
    FORMAT_VERSION,
    CheckpointError,
    read_header,
)
from ._io import atomic_write
from .ema import EMA
from .nets.config import build_model, config_from_dict, config_to_dict

_TENSOR_REF = "__tensor__"


@dataclass
class Checkpoint:
    r"""The contents of a checkpoint, as returned by :func:`read_checkpoint`.

    Arguments:
        path: The file it was read from.
        model_config: The network's :func:`~ecnf.nets.config_to_dict`.
        model_state: The network's :py:`state_dict()`.
        ema_state: The :py:`state_dict()` of the EMA copy (:py:`ema.model`), if saved.
        ema_updates: The EMA's number of updates, if saved.
        optimizer_state: An optimizer :py:`state_dict()` (:py:`"state"` and
            :py:`"param_groups"`; tuples come back as lists), if saved.
        train_state: JSON training state (step, configuration, data stream, RNGs...).
        metadata: JSON metadata (dataset, loss, wall time, metrics...).
        tensors: The extra named tensors.
    """

    path: Path
    model_config: dict[str, Any]
    model_state: dict[str, Tensor]
    ema_state: dict[str, Tensor] | None
    ema_updates: int | None
    optimizer_state: dict[str, Any] | None
    train_state: dict[str, Any]
    metadata: dict[str, Any]
    tensors: dict[str, Tensor]


def save_checkpoint(
    path: str | os.PathLike,
    *,
    model: nn.Module,
    ema: EMA | None = None,
    optimizer: torch.optim.Optimizer | dict[str, Any] | None = None,
    train_state: dict[str, Any] | None = None,
    metadata: dict[str, Any] | None = None,
    tensors: dict[str, Tensor] | None = None,
    half: bool = False,
) -> Path:
    r"""Saves a checkpoint atomically (temporary file, fsync, rename).

    Arguments:
        path: The file to write (its folder is created if needed), conventionally
            ending in :py:`.safetensors`. An existing file is replaced only once the new
            one is complete on disk.
        model: A network from :func:`~ecnf.nets.build_model` (it must carry
            :py:`config`); DDP and :py:`torch.compile` wrappers are unwrapped.
        ema: The :class:`~ecnf.ema.EMA` of :py:`model`.
        optimizer: An optimizer, or its :py:`state_dict()`.
        train_state: JSON-serialisable training state (numpy scalars and arrays are
            converted; tuples come back as lists).
        metadata: JSON-serialisable metadata, same rules.
        tensors: Extra named tensors, e.g. :py:`{"rng.torch": torch.get_rng_state()}`.
        half: Whether to store the floating-point model and EMA weights as float16 (for
            small shipped files; :func:`load` casts them back). The optimizer state and
            extra tensors are always stored as they are.

    Returns:
        The path written.

    Example:
        >>> import tempfile
        >>> from ecnf.nets import MLPConfig, build_model
        >>> model = build_model(MLPConfig(data_shape=(2,), width=16))
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = save_checkpoint(f"{tmp}/mlp.safetensors", model=model, metadata={"steps": 0})
        ...     checkpoint_info(path)["metadata"]
        ...     restored = load(path, device="cpu")
        {'steps': 0}
    """

    path = Path(path)
    model = _unwrap(model)
    config = getattr(model, "config", None)
    if config is None:
        raise ValueError(
            f"model ({type(model).__name__}) has no config attribute; build it with "
            "ecnf.build_model so the checkpoint can rebuild it"
        )

    flat = _prefixed("model.", model.state_dict(), half)
    ema_updates = None
    if ema is not None:
        if not isinstance(ema, EMA):
            raise ValueError(f"ema must be an ecnf.EMA or None, got {type(ema).__name__}")
        flat |= _prefixed("ema.", _unwrap(ema.model).state_dict(), half)
        ema_updates = ema.num_updates

    optimizer_json = None
    if optimizer is not None:
        state = optimizer if isinstance(optimizer, dict) else optimizer.state_dict()
        optimizer_json, optim_tensors = _encode_optimizer(state)
        flat |= _prefixed("", optim_tensors, half=False)

    for name, tensor in (tensors or {}).items():
        if not isinstance(name, str) or not name:
            raise ValueError(f"tensors must be keyed by non-empty strings, got key {name!r}")
        if not torch.is_tensor(tensor):
            raise ValueError(f"tensors[{name!r}] must be a torch.Tensor, got {type(tensor)}")
        flat[f"extra.{name}"] = _prepare(tensor)

    header = {
        "format": FORMAT,
        "format_version": str(FORMAT_VERSION),
        "model_config": _dumps("model_config", config_to_dict(config)),
        "train_state": _dumps("train_state", train_state or {}),
        "metadata": _dumps("metadata", metadata or {}),
        "optimizer": _dumps("optimizer state", optimizer_json),
        "ema_updates": json.dumps(ema_updates),
        "ecnf_version": _ecnf_version(),
        "torch_version": torch.__version__,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_write(path, safetensors.torch.save(flat, metadata=header))
    return path


def read_checkpoint(
    path: str | os.PathLike,
    *,
    map_location: str | torch.device | None = "cpu",
    weights_only: bool = False,
) -> Checkpoint:
    r"""Reads a checkpoint without unpickling or executing anything.

    Arguments:
        path: A file written by :func:`save_checkpoint`.
        map_location: The device to put the tensors on (:py:`None` keeps them on CPU).
        weights_only: Whether to read only the model and EMA weights (for inference),
            leaving :py:`optimizer_state` as :py:`None` and :py:`tensors` empty.

    Raises:
        CheckpointError: If the file is missing, not a safetensors file, truncated,
            not an ECNF checkpoint, from a newer format version, or has a malformed
            header or model configuration.
    """

    path = Path(path)
    header, entries = read_header(path)
    _model_config(path, header["model_config"])  # refuse an unbuildable configuration early

    names = [n for n in entries if not weights_only or n.startswith(("model.", "ema."))]
    try:
        with safe_open(path, framework="pt", device="cpu") as f:
            flat = {name: f.get_tensor(name) for name in names}
    except (SafetensorError, OSError, RuntimeError, ValueError) as error:
        raise CheckpointError(f"{path}: cannot read its tensors: {error}") from error
    if map_location is not None:
        flat = {name: t.to(map_location) for name, t in flat.items()}

    groups: dict[str, dict[str, Tensor]] = {group: {} for group in _GROUPS}
    for name, tensor in flat.items():
        group, key = name.split(".", 1)
        groups[group][name if group == "optim" else key] = tensor

    optimizer_state = None
    if header["optimizer"] is not None and not weights_only:
        optimizer_state = _decode_optimizer(path, header["optimizer"], groups["optim"])

    has_ema = any(name.startswith("ema.") for name in entries)
    return Checkpoint(
        path=path,
        model_config=header["model_config"],
        model_state=groups["model"],
        ema_state=groups["ema"] if has_ema else None,
        ema_updates=header["ema_updates"],
        optimizer_state=optimizer_state,
        train_state=header["train_state"],
        metadata=header["metadata"],
        tensors=groups["extra"],
    )


def load(
    path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    use_ema: bool = True,
    dtype: torch.dtype = torch.float32,
) -> nn.Module:
    r"""Rebuilds the trained network from a checkpoint alone, ready for sampling.

    The network is built from the stored configuration, given the EMA weights if the
    checkpoint has them and :py:`use_ema` (else the raw weights), cast to :py:`dtype`,
    moved to :py:`device` and put in evaluation mode.

    Arguments:
        path: A file written by :func:`save_checkpoint`.
        device: The device; by default CUDA when available, else the CPU.
        use_ema: Whether to prefer the EMA weights.
        dtype: The floating-point dtype of the returned network.

    Raises:
        CheckpointError: As :func:`read_checkpoint`, or if the stored weights do not
            match the network the configuration builds.
    """

    if not isinstance(dtype, torch.dtype) or not dtype.is_floating_point:
        raise ValueError(f"dtype must be a floating-point torch.dtype, got {dtype!r}")
    if device is None:
        device = "cuda" if torch.cuda.is_available() else "cpu"

    checkpoint = read_checkpoint(path, weights_only=True)
    path = checkpoint.path
    model = build_model(_model_config(path, checkpoint.model_config))
    which = "ema" if use_ema and checkpoint.ema_state is not None else "model"
    state = checkpoint.ema_state if which == "ema" else checkpoint.model_state

    expected = model.state_dict()
    missing = [key for key in expected if key not in state]
    unexpected = [key for key in state if key not in expected]
    if missing or unexpected:
        raise CheckpointError(
            f"{path}: its {which} weights do not fit the network its model_config builds: "
            f"missing keys {_few(missing)}, unexpected keys {_few(unexpected)}"
        )
    wrong = [
        f"{key} {tuple(state[key].shape)} != {tuple(value.shape)}"
        for key, value in expected.items()
        if state[key].shape != value.shape
    ]
    if wrong:
        raise CheckpointError(f"{path}: its {which} weights have wrong shapes: {_few(wrong)}")

    model.to(dtype=dtype)
    model.load_state_dict(state)
    return model.to(device).eval()


def checkpoint_info(path: str | os.PathLike) -> dict[str, Any]:
    r"""Describes a checkpoint from its header alone; no tensor data is read.

    Returns:
        A dictionary with :py:`"path"`, :py:`"file_bytes"`, :py:`"format"`,
        :py:`"format_version"`, :py:`"ecnf_version"`, :py:`"torch_version"`,
        :py:`"created"`, :py:`"model_config"`, :py:`"train_state"`, :py:`"metadata"`,
        :py:`"ema_updates"`, :py:`"has_ema"`, :py:`"has_optimizer"` and
        :py:`"tensors"`, which maps each group (:py:`"model"`, :py:`"ema"`,
        :py:`"optim"`, :py:`"extra"`) to its :py:`"count"`, :py:`"numel"`,
        :py:`"bytes"` and :py:`"dtypes"`.

    Raises:
        CheckpointError: As :func:`read_checkpoint`, except that the model
            configuration is not checked against the known architectures.
    """

    path = Path(path)
    header, entries = read_header(path)
    groups = {group: {"count": 0, "numel": 0, "bytes": 0, "dtypes": []} for group in _GROUPS}
    for name, entry in entries.items():
        group = groups[name.split(".", 1)[0]]
        numel = 1
        for n in entry["shape"]:
            numel *= n
        begin, end = entry["data_offsets"]
        group["count"] += 1
        group["numel"] += numel
        group["bytes"] += end - begin
        if entry["dtype"] not in group["dtypes"]:
            group["dtypes"].append(entry["dtype"])

    return {
        "path": str(path),
        "file_bytes": path.stat().st_size,
        **{key: header.get(key) for key in ("format", "ecnf_version", "torch_version")},
        "format_version": int(header["format_version"]),
        "created": header.get("created"),
        **{key: header[key] for key in ("model_config", "train_state", "metadata")},
        "ema_updates": header["ema_updates"],
        "has_ema": groups["ema"]["count"] > 0,
        "has_optimizer": header["optimizer"] is not None,
        "tensors": groups,
    }


# Writing


def _unwrap(model: nn.Module) -> nn.Module:
    while True:
        if isinstance(model, nn.parallel.DistributedDataParallel | nn.DataParallel):
            model = model.module
        elif hasattr(model, "_orig_mod"):  # torch.compile
            model = model._orig_mod
        else:
            return model


def _prepare(tensor: Tensor, dtype: torch.dtype | None = None) -> Tensor:
    # a private, contiguous CPU copy: safetensors refuses shared or strided storage
    return tensor.detach().to("cpu", dtype, memory_format=torch.contiguous_format, copy=True)


def _prefixed(prefix: str, state: dict[str, Tensor], half: bool) -> dict[str, Tensor]:
    out = {}
    for key, tensor in state.items():
        if half and tensor.is_floating_point():
            small = _prepare(tensor, torch.float16)
            if bool((torch.isinf(small) & torch.isfinite(tensor.cpu())).any()):
                raise ValueError(f"half=True: {prefix}{key} has values beyond float16's range")
            out[prefix + key] = small
        else:
            out[prefix + key] = _prepare(tensor)
    return out


def _encode_optimizer(state: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Tensor]]:
    r"""Splits an optimizer state dict into JSON (tensors as references) and tensors."""

    if not isinstance(state.get("state"), dict) or not isinstance(state.get("param_groups"), list):
        raise ValueError("optimizer state must have a 'state' dict and a 'param_groups' list")
    tensors: dict[str, Tensor] = {}

    def encode(obj: Any, key: str) -> Any:
        if torch.is_tensor(obj):
            if key in tensors:
                raise ValueError(f"optimizer state has two tensors named {key!r}")
            tensors[key] = obj
            return {_TENSOR_REF: key}
        if isinstance(obj, dict):
            return {str(k): encode(v, f"{key}.{k}") for k, v in obj.items()}
        if isinstance(obj, list | tuple):
            return [encode(v, f"{key}.{i}") for i, v in enumerate(obj)]
        return obj

    encoded = {k: encode(state[k], f"optim.{k}") for k in ("state", "param_groups")}
    return encoded, tensors


def _dumps(name: str, value: Any) -> str:
    try:
        return json.dumps(value, default=_json_default)
    except (TypeError, ValueError) as error:
        raise ValueError(f"{name} must be JSON-serialisable: {error}") from error


def _json_default(obj: Any) -> Any:
    import numpy as np

    if isinstance(obj, np.generic | np.ndarray):
        return obj.tolist()
    raise TypeError(f"object of type {type(obj).__name__} is not JSON-serialisable")


def _ecnf_version() -> str:
    try:  # at call time the package is fully imported, whatever imports this module
        from . import __version__

        return str(__version__)
    except ImportError:
        pass
    try:
        return version("ecnf")
    except PackageNotFoundError:
        return "unknown"


def _model_config(path: Path, d: dict[str, Any]) -> Any:
    try:
        return config_from_dict(d)
    except (TypeError, ValueError) as error:
        raise CheckpointError(f"{path}: invalid model_config: {error}") from None


def _decode_optimizer(path: Path, encoded: Any, tensors: dict[str, Tensor]) -> dict[str, Any]:
    def decode(obj: Any) -> Any:
        if isinstance(obj, dict):
            if set(obj) == {_TENSOR_REF}:
                if obj[_TENSOR_REF] not in tensors:
                    raise CheckpointError(
                        f"{path}: optimizer state refers to a missing tensor {obj[_TENSOR_REF]!r}"
                    )
                return tensors[obj[_TENSOR_REF]]
            return {k: decode(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [decode(v) for v in obj]
        return obj

    if not (
        isinstance(encoded, dict)
        and isinstance(encoded.get("state"), dict)
        and isinstance(encoded.get("param_groups"), list)
    ):
        raise CheckpointError(f"{path}: malformed header: 'optimizer' lacks state/param_groups")
    state = {int(k) if k.isdigit() else k: decode(v) for k, v in encoded["state"].items()}
    return {"state": state, "param_groups": decode(encoded["param_groups"])}


def _few(items: list[str], n: int = 5) -> str:
    if not items:
        return "none"
    more = f" and {len(items) - n} more" if len(items) > n else ""
    return ", ".join(items[:n]) + more

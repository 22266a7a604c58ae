"""The checkpoint file itself: a strict reading of the safetensors framing.

:mod:`ecnf.checkpoint` reads through it and writes through :func:`ecnf._io.atomic_write`.
Reading checks the header length, its JSON, every tensor's offsets against the file size
and the ECNF format entries before any tensor is touched, so a corrupt, truncated, foreign
or pickled file is refused with a message naming the path and the reason, and nothing is
ever unpickled.
"""

from __future__ import annotations

import json
import os
import struct
from pathlib import Path
from typing import Any

__all__ = ["FORMAT", "FORMAT_VERSION", "CheckpointError", "read_header"]

FORMAT = "ecnf-checkpoint"
FORMAT_VERSION = 1

_GROUPS = ("model", "ema", "optim", "extra")
_JSON_KEYS = ("model_config", "train_state", "metadata", "optimizer", "ema_updates")
_MAX_HEADER = 100_000_000  # the limit safetensors itself enforces


class CheckpointError(ValueError):
    r"""A file that is not a readable ECNF checkpoint; the message names the path and why."""


def read_header(path: Path) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    r"""Checks the file's framing and returns its parsed metadata and tensor entries."""

    if not path.exists():
        raise CheckpointError(f"{path}: checkpoint does not exist")
    if path.is_dir():
        raise CheckpointError(f"{path}: is a directory, not a checkpoint file")
    try:
        with path.open("rb") as f:
            size = os.fstat(f.fileno()).st_size
            prefix = f.read(8)
            n = struct.unpack("<Q", prefix)[0] if len(prefix) == 8 else 0
            raw = f.read(n) if 2 <= n <= min(_MAX_HEADER, size - 8) else b""
    except OSError as error:
        raise CheckpointError(f"{path}: cannot read the checkpoint: {error}") from error
    if size == 0:
        raise CheckpointError(f"{path}: checkpoint file is empty (0 bytes)")
    if not 2 <= n <= _MAX_HEADER:
        raise _not_safetensors(path, prefix, f"invalid header length {n}")
    if n > size - 8:
        raise CheckpointError(
            f"{path}: truncated or not a safetensors file (header of {n} bytes, "
            f"file of {size} bytes)"
        )

    try:
        entries = json.loads(raw.decode("utf-8"))
        if not isinstance(entries, dict):
            raise ValueError("the header is not a JSON object")
    except ValueError as error:  # JSONDecodeError and UnicodeDecodeError included
        raise _not_safetensors(path, prefix, f"bad header: {error}") from None

    meta = entries.pop("__metadata__", None)
    if not isinstance(meta, dict) or "format" not in meta:
        raise CheckpointError(
            f"{path}: not an ECNF checkpoint (a safetensors file without a 'format' entry; "
            "was it written by another tool?)"
        )
    if meta["format"] != FORMAT:
        raise CheckpointError(
            f"{path}: not an ECNF checkpoint (format {meta['format']!r}, expected {FORMAT!r})"
        )
    try:
        file_version = int(meta.get("format_version", ""))
    except (TypeError, ValueError):
        raise CheckpointError(
            f"{path}: malformed header: format_version={meta.get('format_version')!r}"
        ) from None
    if file_version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path}: written in checkpoint format version {file_version} by a newer ecnf "
            f"({meta.get('ecnf_version', 'unknown')}); this ecnf reads versions up to "
            f"{FORMAT_VERSION}, so upgrade ecnf to load it"
        )
    if file_version < 1:
        raise CheckpointError(f"{path}: malformed header: format_version={file_version}")

    end = 0
    for name, entry in entries.items():
        if name.split(".", 1)[0] not in _GROUPS or "." not in name:
            raise CheckpointError(
                f"{path}: unexpected tensor {name!r} (names start with one of "
                f"{', '.join(g + '.' for g in _GROUPS)})"
            )
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if not (
            isinstance(offsets, list)
            and isinstance(entry.get("dtype"), str)
            and isinstance(entry.get("shape"), list)
            and all(isinstance(n, int) and n >= 0 for n in entry["shape"])
            and len(offsets) == 2
            and all(isinstance(n, int) for n in offsets)
            and 0 <= offsets[0] <= offsets[1]
        ):
            raise CheckpointError(f"{path}: corrupt header entry for tensor {name!r}: {entry!r}")
        end = max(end, offsets[1])
    data = size - 8 - n
    if data < end:
        raise CheckpointError(
            f"{path}: truncated: the header declares {end} bytes of tensor data, "
            f"but only {data} follow"
        )
    if data > end:
        raise CheckpointError(f"{path}: corrupt: {data - end} unexpected bytes after the tensors")

    header: dict[str, Any] = dict(meta)
    for key in _JSON_KEYS:
        try:
            header[key] = json.loads(meta[key])
        except KeyError:
            raise CheckpointError(f"{path}: malformed header: no {key!r} entry") from None
        except (TypeError, ValueError) as error:
            raise CheckpointError(
                f"{path}: malformed header: {key!r} is not JSON: {error}"
            ) from None
    for key in ("model_config", "train_state", "metadata"):
        if not isinstance(header[key], dict):
            raise CheckpointError(f"{path}: malformed header: {key!r} is not a JSON object")
    if header["ema_updates"] is not None and not isinstance(header["ema_updates"], int):
        raise CheckpointError(f"{path}: malformed header: ema_updates={header['ema_updates']!r}")
    return header, entries


def _not_safetensors(path: Path, prefix: bytes, reason: str) -> CheckpointError:
    # zip archives (torch.save since 1.6) and raw pickles (protocol 2 to 5)
    pickle = len(prefix) >= 2 and prefix[0] == 0x80 and 2 <= prefix[1] <= 5
    if pickle or prefix.startswith(b"PK\x03\x04"):
        return CheckpointError(
            f"{path}: not a safetensors file; it looks like a PyTorch pickle (torch.save), "
            "which ECNF refuses to unpickle because unpickling can run arbitrary code"
        )
    return CheckpointError(f"{path}: not a safetensors file ({reason})")

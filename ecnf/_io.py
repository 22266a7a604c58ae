"""Atomic file writes: the one way ECNF replaces a file on disk.

A checkpoint, a classifier or a staged data file is written to a temporary file beside its
target, flushed to disk and renamed over the target, so a reader sees the old file or the
new one and never a half-written one, even when the process is killed mid-write.
"""

from __future__ import annotations

import contextlib
import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO

__all__ = ["atomic_file", "atomic_write"]


def _fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (POSIX only; a no-op elsewhere)."""
    if os.name != "posix":
        return
    dir_fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    except OSError:
        pass
    finally:
        os.close(dir_fd)


@contextlib.contextmanager
def atomic_file(path: str | os.PathLike[str]) -> Iterator[BinaryIO]:
    """Open a temporary file for binary writing that replaces ``path`` when the block ends.

    The temporary file sits in the target's folder (so the rename stays on one file
    system), is created exclusively with the user's umask, fsynced, then renamed over
    ``path``. If the block raises, the temporary file is removed and ``path`` is untouched.

    Example:
        >>> import tempfile
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     target = Path(tmp) / "a.bin"
        ...     with atomic_file(target) as f:
        ...         _ = f.write(b"abc")
        ...     target.read_bytes(), sorted(p.name for p in Path(tmp).iterdir())
        (b'abc', ['a.bin'])
    """
    path = Path(path)
    if path.is_dir():
        raise ValueError(f"path {path} is a directory; give a file path inside it")
    path.parent.mkdir(parents=True, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    while True:
        tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
        try:
            fd = os.open(tmp, flags, 0o666)  # the umask applies, as for any new file
            break
        except FileExistsError:
            continue
    try:
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def atomic_write(path: str | os.PathLike[str], data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_file`)."""
    with atomic_file(path) as f:
        f.write(data)

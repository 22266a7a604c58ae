"""Where data sets live on disk, and the error raised when one is missing."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["DATA_ENV_VAR", "DatasetNotFoundError", "default_root"]

#: Environment variable that overrides the default data folder.
DATA_ENV_VAR = "ECNF_DATA"


class DatasetNotFoundError(FileNotFoundError):
    """A data set is not on disk; the message says how to obtain it."""


def default_root() -> Path:
    """The folder data sets are read from and downloaded to when no ``root`` is given.

    It is ``$ECNF_DATA`` when that variable is set, else ``~/.cache/ecnf/data``.

    Example:
        >>> isinstance(default_root(), Path)
        True
    """
    override = os.environ.get(DATA_ENV_VAR)
    if override:
        return Path(override).expanduser()
    return Path.home() / ".cache" / "ecnf" / "data"


def resolve_root(root: str | os.PathLike[str] | None) -> Path:
    """``root`` as a path, or :func:`default_root` when it is ``None``."""
    return default_root() if root is None else Path(root).expanduser()

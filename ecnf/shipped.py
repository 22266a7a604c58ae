"""Where the shipped checkpoints live, for the studio, the demo and the scripts alike.

The folder is ``$ECNF_CHECKPOINTS_DIR`` when set (tests point it at tiny models), else the
repository's ``checkpoints/``, holding ``2d/``, ``images/`` and ``ablations/``.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["CHECKPOINTS_ENV", "SHIPPED_DIR", "checkpoints_dir", "list_checkpoints"]

#: The environment variable that moves the checkpoint folder.
CHECKPOINTS_ENV = "ECNF_CHECKPOINTS_DIR"
#: The repository's own checkpoint folder.
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "checkpoints"


def checkpoints_dir() -> Path:
    """The checkpoint root: ``$ECNF_CHECKPOINTS_DIR`` or the repository's ``checkpoints/``."""
    return Path(os.environ.get(CHECKPOINTS_ENV) or SHIPPED_DIR)


def list_checkpoints(kind: str) -> dict[str, str]:
    """``{name: path}`` of the ``*.safetensors`` files under ``checkpoints_dir()/kind``, by
    name."""
    folder = checkpoints_dir() / kind
    return {p.stem: str(p) for p in sorted(folder.glob("*.safetensors"))}

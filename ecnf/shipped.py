"""Where the shipped checkpoints live, for the studio, the demo and the scripts alike.

The folder is ``$ECNF_CHECKPOINTS_DIR`` when set (tests point it at tiny models), else the
repository's ``checkpoints/``, holding ``2d/``, ``images/`` and ``ablations/``. Checkpoints
imported from other libraries (``python -m ecnf import``) go to ``imported/`` inside it, or
to ``$ECNF_IMPORTED_DIR``; they are not part of the repository.
"""

from __future__ import annotations

import os
from pathlib import Path

__all__ = [
    "CHECKPOINTS_ENV",
    "IMPORTED_ENV",
    "SHIPPED_DIR",
    "checkpoints_dir",
    "image_checkpoints",
    "imported_dir",
    "list_checkpoints",
    "list_imported",
    "preferred_image_checkpoint",
    "rank_image_checkpoints",
]

#: The environment variable that moves the checkpoint folder.
CHECKPOINTS_ENV = "ECNF_CHECKPOINTS_DIR"
#: The environment variable that moves the folder of imported checkpoints.
IMPORTED_ENV = "ECNF_IMPORTED_DIR"
#: The repository's own checkpoint folder.
SHIPPED_DIR = Path(__file__).resolve().parents[1] / "checkpoints"


def checkpoints_dir() -> Path:
    """The checkpoint root: ``$ECNF_CHECKPOINTS_DIR`` or the repository's ``checkpoints/``."""
    return Path(os.environ.get(CHECKPOINTS_ENV) or SHIPPED_DIR)


def list_checkpoints(kind: str, root: str | Path | None = None) -> dict[str, str]:
    """``{name: path}`` of the ``*.safetensors`` files under ``root/kind`` (``root``:
    :func:`checkpoints_dir` by default), by name."""
    folder = (Path(root) if root is not None else checkpoints_dir()) / kind
    return {p.stem: str(p) for p in sorted(folder.glob("*.safetensors"))}


def imported_dir() -> Path:
    """Where imported checkpoints live: ``$ECNF_IMPORTED_DIR`` or ``checkpoints_dir()/imported``."""
    return Path(os.environ.get(IMPORTED_ENV) or checkpoints_dir() / "imported")


def image_checkpoints() -> dict[str, str]:
    """``{label: path}`` of every image model on this machine, as the studio and the demo list
    them: the shipped ones as ``images/NAME``, then the imported ones as ``imported/NAME``."""
    shipped = {f"images/{k}": v for k, v in list_checkpoints("images").items()}
    return shipped | {f"imported/{k}": v for k, v in list_imported().items()}


def list_imported() -> dict[str, str]:
    """``{name: path}`` of the checkpoints in :func:`imported_dir`, by name."""
    return {p.stem: str(p) for p in sorted(imported_dir().glob("*.safetensors"))}


def preferred_image_checkpoint(paths: dict[str, str]) -> str | None:
    """The name among ``paths`` (name -> checkpoint file) whose samples show the most, the
    first of :func:`rank_image_checkpoints`; ``None`` when ``paths`` is empty."""
    ranked = rank_image_checkpoints(paths)
    return ranked[0] if ranked else None


def rank_image_checkpoints(paths: dict[str, str]) -> list[str]:
    """The names of ``paths`` (name -> checkpoint file), those whose samples show most first.

    Ranked by image size (pixels per channel times channels, so Fashion-MNIST before 8x8
    digits), then by the Fréchet distance of its card's adaptive row (``NAME.json`` beside
    the file, lower first); a checkpoint without a card comes after those of its size, and
    one that cannot be read comes last (the page then says what is wrong with it when it is
    chosen).
    """
    import json
    import math

    from .checkpoint import checkpoint_info

    def rank(item: tuple[str, str]) -> tuple[float, float, str]:
        name, path = item
        try:
            shape = checkpoint_info(path)["model_config"].get("data_shape", [])
        except (OSError, ValueError):  # CheckpointError is a ValueError
            return (1.0, math.inf, name)
        card_path = Path(path).with_suffix(".json")
        distance = math.inf
        if card_path.exists():
            card = json.loads(card_path.read_text())
            key = card.get("metrics", {}).get("fd")
            rows = [r for r in card.get("rows", []) if r.get("steps") is None and key in r]
            if rows:
                distance = rows[0][key]
        return (-math.prod(shape), distance, name)

    return [name for name, _ in sorted(paths.items(), key=rank)]

"""Where checkpoints are, and thin cached loaders for them.

A checkpoint is identified by its path and its modification time (``file_stamp``), so a
model retrained into the same file is loaded afresh while unchanged files stay cached.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

import streamlit as st

import ecnf
from ecnf.shipped import checkpoints_dir, image_checkpoints, list_checkpoints

if TYPE_CHECKING:  # torch is imported by the first page that loads a model
    import torch
    from torch import nn

__all__ = [
    "checkpoint_meta",
    "checkpoints_dir",
    "file_stamp",
    "image_checkpoints",
    "list_checkpoints",
    "load_model",
    "model_device",
    "session_workdir",
]


def file_stamp(path: str) -> int:
    """The file's modification time in nanoseconds (part of every cache key)."""
    return Path(path).stat().st_mtime_ns


@st.cache_resource(max_entries=16, show_spinner=False)
def load_model(path: str, stamp: int) -> nn.Module:
    """The EMA network of a checkpoint, on CUDA when present; shared and never mutated."""
    del stamp  # only part of the cache key
    return ecnf.load(path)


@st.cache_data(max_entries=64, show_spinner=False)
def checkpoint_meta(path: str, stamp: int) -> dict:
    """The checkpoint's JSON metadata (dataset, source, loss, steps...), its model config and
    its training config (``train_config``, empty when the file has none), header only."""
    from ecnf.checkpoint import checkpoint_info

    del stamp
    info = checkpoint_info(path)
    train_config = (info.get("train_state") or {}).get("config") or {}
    return {**info["metadata"], "model_config": info["model_config"], "train_config": train_config}


def model_device(model: nn.Module) -> torch.device:
    """The device holding the model's parameters."""
    return next(model.parameters()).device


@st.cache_resource(scope="session", on_release=lambda d: d.cleanup(), show_spinner=False)
def _session_tempdir() -> tempfile.TemporaryDirectory:
    return tempfile.TemporaryDirectory(prefix="ecnf-studio-")


def session_workdir() -> Path:
    """A temporary folder owned by this browser session, removed when the session ends."""
    return Path(_session_tempdir().name)

"""UI-side helpers of the Streamlit studio: cached loaders, per-session state, display glue.

Nothing here computes: every number the studio shows comes from :mod:`ecnf`. Read-only
models are shared by all sessions through ``st.cache_resource`` and never mutated; what
belongs to one user (a model trained in the studio, the active checkpoint) lives in
``st.session_state`` or a session-scoped cache.
"""

from __future__ import annotations

from .models import (
    checkpoint_meta,
    checkpoints_dir,
    file_stamp,
    image_checkpoints,
    list_checkpoints,
    load_model,
    model_device,
    session_workdir,
)
from .ui import (
    PAGES,
    TOLERANCES,
    active_checkpoint,
    class_controls,
    confirm_cpu_run,
    device_label,
    enlarged,
    offer_import,
    set_active_checkpoint,
    show_error,
    solver_controls,
    warm_up,
)

__all__ = [
    "PAGES",
    "TOLERANCES",
    "active_checkpoint",
    "checkpoint_meta",
    "checkpoints_dir",
    "class_controls",
    "confirm_cpu_run",
    "device_label",
    "enlarged",
    "file_stamp",
    "image_checkpoints",
    "list_checkpoints",
    "load_model",
    "model_device",
    "offer_import",
    "session_workdir",
    "set_active_checkpoint",
    "show_error",
    "solver_controls",
    "warm_up",
]

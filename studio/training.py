"""Background training runs owned by one browser session.

A :class:`TrainingRun` runs :func:`ecnf.fit` in a ``threading.Thread``; a :class:`Recorder`
callback copies its log records and previews into lists guarded by a lock, and a
``threading.Event`` asks it to stop at the next step boundary (fit then saves its state,
so the run can be resumed). The thread never touches Streamlit: the page reads the
recorder's snapshot on each rerun. Runs and the checkpoints they leave live in
``st.session_state``, so browser sessions never see each other's runs.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field

import streamlit as st
from torch import Tensor

from ecnf import Callback, StopOnEvent, TrainConfig, TrainingDiverged, fit
from ecnf.checkpoint import CheckpointError, checkpoint_info
from ecnf.data import DatasetNotFoundError

__all__ = [
    "Recorder",
    "TrainingRun",
    "add_session_checkpoint",
    "current_run",
    "session_checkpoints",
    "session_checkpoints_of",
    "start_run",
]

_RUN = "train_run"
TRAJECTORY_ROWS = 4  # preview samples whose trajectories the Train page shows
_CHECKPOINTS = "session_checkpoints"


class Recorder(Callback):
    """Thread-safe copy of what :func:`ecnf.fit` reports: log records, the latest preview."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.records: list[dict] = []
        self.preview: tuple[int, Tensor] | None = None
        self.trajectory: tuple[int, Tensor, Tensor] | None = None
        self.start_step = 0

    def on_start(self, step: int, total_steps: int) -> None:
        with self.lock:
            self.start_step = step

    def on_log(self, record: dict) -> None:
        with self.lock:
            self.records.append(dict(record))

    def on_preview(self, step: int, samples: Tensor) -> None:
        with self.lock:
            self.preview = (step, samples.clone())

    def on_preview_trajectory(self, step: int, times: Tensor, states: Tensor) -> None:
        with self.lock:
            self.trajectory = (step, times.clone(), states[:, :TRAJECTORY_ROWS].clone())

    def snapshot(self) -> tuple[list[dict], tuple[int, Tensor] | None]:
        with self.lock:
            return list(self.records), self.preview

    def latest_trajectory(self) -> tuple[int, Tensor, Tensor] | None:
        """``(step, times, states)`` of the latest preview, for its first few samples."""
        with self.lock:
            return self.trajectory


#: What to tell the user for each error fit may raise.
FIXES = {
    DatasetNotFoundError: "get the data set as the message says, or pick another one.",
    TrainingDiverged: "lower the learning rate or pick a smaller network, then start again.",
    CheckpointError: "start a fresh run instead of resuming.",
    FileNotFoundError: "start a fresh run instead of resuming.",
    ValueError: "change the options above.",
}


@dataclass
class TrainingRun:
    """One training run of this session: its config, thread, stop event and records."""

    config: TrainConfig
    label: str
    recorder: Recorder = field(default_factory=Recorder)
    stop_event: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    reason: str | None = None  # completed / stopped / interrupted once fit returned
    error: tuple[Exception, str] | None = None
    checkpoint: str | None = None
    registered: bool = False

    @property
    def running(self) -> bool:
        return self.thread is not None and self.thread.is_alive()

    @property
    def resumable(self) -> bool:
        return not self.running and self.reason in ("stopped", "interrupted")

    def start(self, resume: bool = False) -> None:
        """Launch fit in a daemon thread (``resume`` continues the saved state)."""
        if self.running:
            raise RuntimeError("this run is still going; stop it first")
        self.stop_event.clear()
        self.reason, self.error = None, None
        self.thread = threading.Thread(
            target=self._work, args=(resume,), name=f"ecnf-train-{self.label}", daemon=True
        )
        self.thread.start()

    def _work(self, resume: bool) -> None:
        callbacks = [self.recorder, StopOnEvent(self.stop_event)]
        try:
            result = fit(
                self.config,
                callbacks,
                resume=resume,
                overwrite=not resume,
                command="studio: Train page",
            )
        except Exception as error:  # shown to the user by the page, never re-raised
            fix = next((f for kind, f in FIXES.items() if isinstance(error, kind)), None)
            self.error = (error, fix or "change the options above or report the problem.")
            return
        self.checkpoint = str(result.checkpoint) if result.checkpoint else None
        self.reason = result.reason

    def stop(self) -> None:
        self.stop_event.set()


def current_run() -> TrainingRun | None:
    """This session's training run, if one was started."""
    return st.session_state.get(_RUN)


def start_run(config: TrainConfig, label: str) -> TrainingRun:
    """Start a fresh run as this session's run (refused while another one goes on)."""
    run = current_run()
    if run is not None and run.running:
        raise RuntimeError("a run is already going in this session; stop it first")
    run = TrainingRun(config=config, label=label)
    st.session_state[_RUN] = run
    run.start()
    return run


def session_checkpoints() -> dict[str, str]:
    """``{label: path}`` of the checkpoints trained in this browser session."""
    return dict(st.session_state.get(_CHECKPOINTS, {}))


def add_session_checkpoint(label: str, path: str) -> None:
    checkpoints = st.session_state.setdefault(_CHECKPOINTS, {})
    checkpoints[label] = path


def session_checkpoints_of(kind: str) -> dict[str, str]:
    """This session's checkpoints of one kind: ``"2d"`` (vector data) or ``"images"``."""
    out = {}
    for label, path in session_checkpoints().items():
        try:
            shape = checkpoint_info(path)["model_config"]["data_shape"]
        except (ValueError, OSError, KeyError):
            continue
        if (len(shape) == 1) == (kind == "2d"):
            out[label] = path
    return out

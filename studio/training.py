"""Background training runs owned by one browser session.

A :class:`TrainingRun` runs :func:`ecnf.fit` in a process of its own
(:func:`ecnf.background.train_in_process`), watched by a ``threading.Thread`` of the
server that copies its reports into a :class:`Recorder` (log records and previews, in
lists guarded by a lock); an event asks it to stop at the next step boundary (fit then
saves its state, so the run can be resumed). The thread never touches Streamlit: the page
reads the recorder's snapshot on each rerun. Runs and the checkpoints they leave live in
``st.session_state``, so browser sessions never see each other's runs.

All sessions' runs share the server's one :class:`~studio.scheduler.Scheduler`: a run
waits for a place, and the admitted runs divide the cores. When a session ends (its tab
closed), its runs are asked to stop: those training stop at their next step (and are
terminated if they do not within ``STOP_GRACE_S``), those queued leave the queue.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import Any

import streamlit as st
import torch
from torch import Tensor

from ecnf import Callback, TrainConfig, TrainingDiverged
from ecnf.background import context, memory_mb, train_in_process, warm
from ecnf.checkpoint import CheckpointError, checkpoint_info
from ecnf.data import DatasetNotFoundError

from .scheduler import Scheduler, ServerBusy, Ticket, config_from_env

__all__ = [
    "Recorder",
    "ServerBusy",
    "TrainingRun",
    "add_session_checkpoint",
    "current_run",
    "server_scheduler",
    "session_checkpoints",
    "session_checkpoints_of",
    "start_run",
]

_RUN = "train_run"
TRAJECTORY_ROWS = 4  # preview samples whose trajectories the Train page shows
_CHECKPOINTS = "session_checkpoints"
#: CPU priority of training processes (``nice``): below the server's, so that pages stay
#: quick for visitors while the cores train; training loses nothing while pages are idle.
TRAIN_NICE = 10
MEMORY_EVERY_S = 2.0  # how often the page's Memory metric is read from /proc


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

    def take(self, event: tuple) -> None:
        """One report of the training process (see :mod:`ecnf.background`)."""
        kind = event[0]
        if kind == "start":
            self.on_start(event[1], 0)
        elif kind == "log":
            self.on_log(event[1])
        elif kind == "preview":
            self.on_preview(event[1], torch.from_numpy(event[2]))
        elif kind == "trajectory":
            self.on_preview_trajectory(
                event[1], torch.from_numpy(event[2]), torch.from_numpy(event[3])
            )

    def eta(self) -> float | None:
        """Seconds the run has left, from its latest record (``None`` before the first)."""
        with self.lock:
            return self.records[-1]["eta_s"] if self.records else None


@st.cache_resource(show_spinner=False)
def server_scheduler() -> Scheduler:
    """The one scheduler of this server process, with its limits from the environment; the
    fork server that training processes come from starts in the background with it."""
    threading.Thread(target=warm, name="ecnf-fork-server", daemon=True).start()
    return Scheduler(config_from_env())


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
    stop_event: Any = field(default_factory=lambda: context().Event())  # crosses processes
    thread: threading.Thread | None = None
    memory_mb: float | None = None  # resident memory of its process, latest reading
    reason: str | None = None  # completed / stopped / interrupted once fit returned
    error: tuple[Exception, str] | None = None
    checkpoint: str | None = None
    registered: bool = False
    scheduler: Scheduler | None = None
    ticket: Ticket | None = None

    @property
    def running(self) -> bool:
        """Its thread is alive: queued for a place, or training."""
        return self.thread is not None and self.thread.is_alive()

    @property
    def queued(self) -> bool:
        return self.running and self.ticket is not None and self.ticket.state == "queued"

    @property
    def resumable(self) -> bool:
        return not self.running and self.reason in ("stopped", "interrupted")

    @property
    def preempted(self) -> bool:
        """Stopped at the server's time limit because another visitor was waiting."""
        return self.ticket is not None and self.ticket.preempted and not self.running

    def start(self, resume: bool = False) -> None:
        """Take a place on the server (or in its queue), then launch fit in a daemon thread
        (``resume`` continues the saved state). :class:`ServerBusy` when the queue is full."""
        if self.running:
            raise RuntimeError("this run is still going; stop it first")
        self.stop_event.clear()
        self.scheduler = self.scheduler or Scheduler()
        ticket = Ticket(self.label, self.stop_event, eta=self.recorder.eta)
        self.scheduler.enter(ticket)  # ServerBusy leaves the run as it was
        self.ticket = ticket
        self.reason, self.error = None, None
        self.thread = threading.Thread(
            target=self._work, args=(resume,), name=f"ecnf-train-{self.label}", daemon=True
        )
        self.thread.start()

    def _work(self, resume: bool) -> None:
        ticket = self.ticket
        try:
            if not self.scheduler.wait_admitted(ticket):
                self.reason = "left the queue"
                return
            threads = context().Value("i", max(ticket.threads, 1))
            ticket.on_share = lambda n: setattr(threads, "value", n)
            ticket.on_share(max(ticket.threads, 1))  # a share given before this line

            last_read = [0.0]

            def poll(pid: int) -> None:
                if time.monotonic() - last_read[0] >= MEMORY_EVERY_S:  # /proc costs a little
                    self.memory_mb, last_read[0] = (
                        memory_mb(pid) or self.memory_mb,
                        time.monotonic(),
                    )
                self.scheduler.overdue(ticket)

            train_in_process(
                self.config,
                resume=resume,
                command="studio: Train page",
                stop=self.stop_event,
                threads=threads,
                on_event=self._take,
                on_poll=poll,
                nice=TRAIN_NICE,
            )
        except Exception as error:  # shown to the user by the page, never re-raised
            self._fail(error)
        finally:
            self.scheduler.leave(ticket)

    def _take(self, event: tuple) -> None:
        if event[0] == "done":
            self.reason, self.checkpoint = event[1], event[2]
        elif event[0] == "error":
            self._fail(event[1])
        else:
            self.recorder.take(event)

    def _fail(self, error: BaseException) -> None:
        fix = next((f for kind, f in FIXES.items() if isinstance(error, kind)), None)
        self.error = (error, fix or "change the options above or report the problem.")

    def stop(self) -> None:
        self.stop_event.set()


def current_run() -> TrainingRun | None:
    """This session's training run, if one was started."""
    return st.session_state.get(_RUN)


def _stop_all(runs: list[TrainingRun]) -> None:
    for run in runs:
        run.stop()


@st.cache_resource(scope="session", on_release=_stop_all, show_spinner=False)
def _session_runs() -> list[TrainingRun]:
    """This session's runs; released, hence stopped, when the session disconnects."""
    return []


def start_run(config: TrainConfig, label: str) -> TrainingRun:
    """Start a fresh run as this session's run (refused while another one goes on, and
    :class:`ServerBusy` when the server's queue is full)."""
    run = current_run()
    if run is not None and run.running:
        raise RuntimeError("a run is already going in this session; stop it first")
    run = TrainingRun(config=config, label=label, scheduler=server_scheduler())
    run.start()
    st.session_state[_RUN] = run
    _session_runs().append(run)
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

"""One server's training runs: how many train at once, a queue behind them, core shares.

Each visitor's run trains in a process of its own (:mod:`studio.worker`): threads of the
server process would share its interpreter lock with every page being drawn, and a training
step of many small torch calls then waits for the lock at each call (a step of the 2D
default became forty times slower beside one busy Python thread). Separate processes also
free all of a run's memory when it ends.

At most ``max_active`` runs are admitted at a time (by default one per core the pages do not
keep: one on two cores, see :func:`default_places`), and the machine's cores but ``reserve``
(left to the server's pages) are divided evenly among them: each admitted run's torch
threads are set to ``(cores - reserve) // n`` (at least one) and change as runs come and
go, so ``n`` visitors each get their share. Later runs wait in a queue of at most
``max_queued`` and are told their place and when the soonest admitted run should end; past
that, :class:`ServerBusy` says so. A run that has trained ``max_run_s`` seconds is stopped (its
state saved, so Resume continues it) when someone is waiting for its place. Stopping a run,
also while it waits, frees its place at once. Nothing here imports torch or Streamlit.
"""

from __future__ import annotations

import math
import os
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

__all__ = [
    "Scheduler",
    "SchedulerConfig",
    "ServerBusy",
    "Ticket",
    "config_from_env",
    "default_places",
]


@dataclass(frozen=True)
class SchedulerConfig:
    """The server's limits (environment: ``ECNF_STUDIO_MAX_RUNS``, ``ECNF_STUDIO_MAX_QUEUED``,
    ``ECNF_STUDIO_MAX_RUN_S``; ``cores`` is the number this process may use)."""

    #: ``None``: one place per core left after ``reserve`` (at most :data:`MAX_PLACES`), so
    #: that each admitted run has a core of its own. Runs beyond the cores only share them:
    #: on two cores, two default 2D runs side by side trained at 0.59x the samples per
    #: second of one alone (``benchmarks/load.py``), so there they wait in the queue.
    max_active: int | None = None
    max_queued: int = 6
    max_run_s: float | None = 600.0  # None: no limit
    cores: int = field(default_factory=lambda: len(os.sched_getaffinity(0)))
    #: Cores left to the server itself (its pages, and the browsers on a one-machine test).
    #: torch's threads wait for each other at every operation, so a run whose thread count
    #: equals the cores slows many times over as soon as anything else needs a core: the
    #: 2D default trained at a quarter of its speed beside one busy page on two cores.
    reserve: int = 1

    def __post_init__(self) -> None:
        if self.max_active is None and self.cores >= 1:
            object.__setattr__(self, "max_active", default_places(self.cores, self.reserve))
        if self.max_active < 1 or self.max_queued < 0 or self.cores < 1 or self.reserve < 0:
            raise ValueError(
                f"max_active and cores must be >= 1 and max_queued >= 0, got "
                f"{self.max_active}, {self.cores} and {self.max_queued}"
            )
        if self.max_run_s is not None and not self.max_run_s > 0:
            raise ValueError(f"max_run_s must be > 0 or None, got {self.max_run_s}")


#: The most places :func:`default_places` gives, however many cores there are: beyond a few
#: runs, visitors are served sooner one after another than all at once.
MAX_PLACES = 4


def default_places(cores: int, reserve: int = 1) -> int:
    """Training places for ``cores`` cores of which ``reserve`` are kept for the pages: one
    per remaining core, at least one and at most :data:`MAX_PLACES`.

    Example:
        >>> [default_places(n) for n in (1, 2, 3, 8, 64)]
        [1, 1, 2, 4, 4]
    """
    return max(1, min(MAX_PLACES, cores - reserve))


def config_from_env(environ: dict[str, str] | None = None) -> SchedulerConfig:
    """The limits from the environment, each defaulting to :class:`SchedulerConfig`'s."""
    env = os.environ if environ is None else environ
    default = SchedulerConfig()

    def read(name: str, kind, fallback):
        text = env.get(name, "").strip()
        if not text:
            return fallback
        try:
            return kind(text)
        except ValueError:
            raise ValueError(f"{name}={text!r} is not a valid {kind.__name__}") from None

    max_run_s = read("ECNF_STUDIO_MAX_RUN_S", float, default.max_run_s)
    return SchedulerConfig(
        max_active=read("ECNF_STUDIO_MAX_RUNS", int, default.max_active),
        max_queued=read("ECNF_STUDIO_MAX_QUEUED", int, default.max_queued),
        max_run_s=None if max_run_s is not None and max_run_s <= 0 else max_run_s,
    )


@dataclass(eq=False)
class Ticket:
    """One run's place: ``queued``, then ``active``, then ``done``."""

    label: str
    stop_event: threading.Event = field(default_factory=threading.Event)
    eta: Callable[[], float | None] = lambda: None  # seconds the run has left, if known
    state: str = "new"
    admitted_at: float | None = None  # time.monotonic() of admission
    threads: int = 0  # its share of the cores while admitted
    preempted: bool = False  # stopped at max_run_s because someone was waiting
    on_share: Callable[[int], None] = lambda n: None  # told each new share

    def trained_s(self, now: float | None = None) -> float:
        """Seconds since it was admitted (0 before)."""
        if self.admitted_at is None:
            return 0.0
        return (time.monotonic() if now is None else now) - self.admitted_at


class ServerBusy(RuntimeError):
    """Raised by :meth:`Scheduler.enter` when every place and the queue are taken."""


class Scheduler:
    """Admission, queue and core shares for the training runs of one server (thread-safe)."""

    def __init__(self, config: SchedulerConfig | None = None) -> None:
        self.config = config or SchedulerConfig()
        self._cond = threading.Condition()
        self._active: list[Ticket] = []
        self._queue: deque[Ticket] = deque()

    # ---- admission ---------------------------------------------------------------------

    def enter(self, ticket: Ticket) -> None:
        """Admit ``ticket`` now if there is room, else queue it; :class:`ServerBusy` when the
        queue is full too (nothing changes then)."""
        with self._cond:
            if ticket.state in ("queued", "active"):
                raise RuntimeError(f"{ticket.label} is already {ticket.state}")
            if len(self._active) < self.config.max_active and not self._queue:
                self._admit(ticket)
            elif len(self._queue) < self.config.max_queued:
                ticket.state = "queued"
                self._queue.append(ticket)
            else:
                raise ServerBusy(self._busy_message())
            ticket.preempted = False
            self._share()

    def wait_admitted(self, ticket: Ticket, poll_s: float = 0.1) -> bool:
        """Block until ``ticket`` is admitted (True) or stopped while queued (False: it has
        left the queue)."""
        with self._cond:
            while ticket.state == "queued":
                if ticket.stop_event.is_set():
                    self._queue.remove(ticket)
                    ticket.state = "done"
                    self._cond.notify_all()
                    return False
                self._cond.wait(poll_s)
            return ticket.state == "active"

    def leave(self, ticket: Ticket) -> None:
        """The run has ended (or was never admitted): free its place, admit the next."""
        with self._cond:
            if ticket in self._queue:
                self._queue.remove(ticket)
            if ticket in self._active:
                self._active.remove(ticket)
            ticket.state = "done"
            while self._queue and len(self._active) < self.config.max_active:
                self._admit(self._queue.popleft())
            self._share()
            self._cond.notify_all()

    def _admit(self, ticket: Ticket) -> None:
        ticket.state, ticket.admitted_at = "active", time.monotonic()
        self._active.append(ticket)

    def _share(self) -> None:
        """Divide the cores evenly among the admitted runs and tell each its share."""
        if not self._active:
            return
        free = max(1, self.config.cores - self.config.reserve)
        share = max(1, free // len(self._active))
        for t in self._active:
            if t.threads != share:
                t.threads = share
                t.on_share(share)

    def overdue(self, ticket: Ticket) -> bool:
        """Whether ``ticket`` should give its place up now: it has trained ``max_run_s``
        seconds and another run is queued. If so it is marked preempted and asked to stop."""
        limit = self.config.max_run_s
        with self._cond:
            due = (
                limit is not None
                and ticket.state == "active"
                and bool(self._queue)
                and ticket.trained_s() >= limit
            )
            if due:
                ticket.preempted = True
                ticket.stop_event.set()
            return due

    # ---- what the page shows -------------------------------------------------------------

    def status(self) -> dict:
        """Places in use, the queue, and the seconds until the soonest admitted run ends."""
        with self._cond:
            active, queued = list(self._active), list(self._queue)
        etas = [e for e in (t.eta() for t in active) if e is not None and math.isfinite(e)]
        return {
            "active": len(active),
            "queued": len(queued),
            "max_active": self.config.max_active,
            "max_queued": self.config.max_queued,
            "soonest_end_s": min(etas) if etas else None,
            "labels": [t.label for t in active],
            "threads": [t.threads for t in active],
        }

    def position(self, ticket: Ticket) -> int | None:
        """1 for the first in the queue, ``None`` when ``ticket`` is not queued."""
        with self._cond:
            return self._queue.index(ticket) + 1 if ticket in self._queue else None

    def _busy_message(self) -> str:
        # called with the lock held: ETAs are read without taking it again
        etas = [e for e in (t.eta() for t in self._active) if e is not None and math.isfinite(e)]
        when = (
            f"the soonest of them should end in about {min(etas):.0f} s, with "
            f"{len(self._queue)} runs queued before yours"
            if etas
            else "try again in a few minutes"
        )
        return (
            f"The server is busy: {len(self._active)} runs are training (at most "
            f"{self.config.max_active} at a time) and the queue is full "
            f"({self.config.max_queued} waiting); {when}."
        )

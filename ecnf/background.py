"""Training in a process of its own, with what it reports handed back to the caller.

:func:`train_in_process` runs :func:`ecnf.fit` in a child process and hands each of its
reports (start, log records, previews, the end) to ``on_event`` in the calling thread. The
child comes from a fork server that imported torch and the library once, so a run starts
in a fraction of a second after the first; it shares nothing with the caller's interpreter
(a step of many small torch calls never waits for a lock that a busy thread of the caller
holds, as threads of a web server would) and all its memory is returned when it ends. The
studio's Train page runs every visitor's run this way.

The parent steers it through shared objects: an event that asks it to stop at the next
step (``fit`` then saves its state), and a number it reads after every step, its share of
the cores, which it applies with ``torch.set_num_threads``.
"""

from __future__ import annotations

import multiprocessing as mp
import pickle
import queue
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

__all__ = ["STOP_GRACE_S", "context", "memory_mb", "train_in_process", "warm"]

#: Seconds a child may take to stop after being asked before it is terminated.
STOP_GRACE_S = 30.0
_PRELOAD = ["torch", "ecnf.train", "ecnf.checkpoint", "ecnf.background"]
_context = None


def context():
    """The fork-server context every run's process comes from (started on first use)."""
    global _context
    if _context is None:
        _context = mp.get_context("forkserver")
        _context.set_forkserver_preload(_PRELOAD)
    return _context


def warm() -> None:
    """Start the fork server now (it imports torch: seconds), so that a first run does not
    wait for it. Safe to call from any thread, any number of times."""
    from multiprocessing import forkserver

    context()
    forkserver.ensure_running()


def memory_mb(pid: int) -> float | None:
    """The memory process ``pid`` costs, in MiB: its proportional set size (pages shared with
    the fork server and the other runs counted in part), or its resident size where the
    kernel gives no PSS; ``None`` once it has gone."""
    for name, key in (("smaps_rollup", "Pss:"), ("status", "VmRSS:")):
        try:
            for line in Path(f"/proc/{pid}/{name}").read_text().splitlines():
                if line.startswith(key):
                    return int(line.split()[1]) / 1024
        except OSError:
            continue
    return None


def _portable(error: BaseException) -> BaseException:
    """The error itself when it survives pickling, else a RuntimeError that names it."""
    try:
        pickle.loads(pickle.dumps(error))
    except Exception:
        return RuntimeError(f"{type(error).__name__}: {error}")
    return error


def _child(config, resume: bool, command: str, events, stop, threads, nice: int) -> None:
    """The child's work: fit with a callback that reports through ``events``."""
    import os

    import torch

    if nice:
        os.nice(nice)

    from .callbacks import Callback
    from .train import fit

    class Report(Callback):
        def __init__(self) -> None:
            self.threads = threads.value
            torch.set_num_threads(self.threads)

        def on_start(self, step, total_steps):
            events.put(("start", step))

        def on_log(self, record):
            events.put(("log", dict(record)))

        def on_preview(self, step, samples):
            events.put(("preview", step, samples.numpy()))

        def on_preview_trajectory(self, step, times, states):
            events.put(("trajectory", step, times.numpy(), states.numpy()))

        def on_step(self, step):
            share = threads.value
            if share != self.threads:
                self.threads = share
                torch.set_num_threads(share)

        def should_stop(self):
            return stop.is_set()

    try:
        result = fit(config, [Report()], resume=resume, overwrite=not resume, command=command)
    except BaseException as error:  # reported to the page, which says what to change
        events.put(("error", _portable(error)))
        return
    checkpoint = str(result.checkpoint) if result.checkpoint else None
    events.put(("done", result.reason, checkpoint))


def train_in_process(
    config,
    *,
    resume: bool,
    command: str,
    stop,
    threads,
    on_event: Callable[[tuple], Any],
    poll_s: float = 0.2,
    on_poll: Callable[[int], Any] = lambda pid: None,
    nice: int = 0,
) -> None:
    """Run ``fit(config)`` in a child process until it ends; every report goes to
    ``on_event``, and ``on_poll(pid)`` is called between reports. ``stop`` and ``threads``
    must come from :func:`context` (``ctx.Event()``, ``ctx.Value("i", n)``). A child that
    has not ended ``STOP_GRACE_S`` after ``stop`` is set is terminated, and one that dies
    without a word is reported as an error. ``nice`` lowers the child's CPU priority (a web
    server passes 10 or so, so that its pages stay quick while the cores train)."""
    ctx = context()
    events = ctx.Queue()
    process = ctx.Process(
        target=_child, args=(config, resume, command, events, stop, threads, nice), daemon=True
    )
    process.start()
    stopped_at, ended = None, False
    try:
        while True:
            try:
                event = events.get(timeout=poll_s)
            except queue.Empty:
                if not process.is_alive():
                    break
                if stop.is_set():
                    stopped_at = stopped_at or time.monotonic()
                    if time.monotonic() - stopped_at > STOP_GRACE_S:
                        process.terminate()
                on_poll(process.pid)
                continue
            ended = ended or event[0] in ("done", "error")
            on_event(event)
        while not events.empty():  # what it said just before it ended
            event = events.get_nowait()
            ended = ended or event[0] in ("done", "error")
            on_event(event)
    finally:
        process.join(timeout=STOP_GRACE_S)
        if process.is_alive():
            process.kill()
            process.join()
        events.close()
    if not ended:
        on_event(("error", RuntimeError(
            f"the training process ended without a result (exit code {process.exitcode}"
            f"{', terminated after a stop request' if stopped_at else ''})"
        )))  # fmt: skip

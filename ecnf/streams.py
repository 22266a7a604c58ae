"""Sampling and training as generators, for front ends that show progress as it happens.

:func:`integrate_stream` runs a fixed-step solve in chunks of the same grid
:func:`ecnf.integrate` would use and yields the state after each chunk, so a caller can
draw frames while the solver advances; the result is the same as one call to
:func:`~ecnf.integrate`. :func:`fit_stream` runs :func:`ecnf.fit` in a background thread
and yields its log records and previews as they arrive; closing the generator stops the
run at the end of the current step. The Gradio demo and notebooks use both; nothing here
imports a user-interface package.
"""

from __future__ import annotations

import math
import queue
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import torch
from torch import Tensor

from ._checks import check_choice, check_positive_int
from .callbacks import Callback, StopOnEvent
from .config import TrainConfig
from .solvers import FIXED_METHODS, MEAN_FLOW_METHODS, integrate, uniform_grid
from .train import FitResult, fit

__all__ = ["SolverProgress", "TrainEvent", "fit_stream", "integrate_stream"]

Velocity = Callable[[Tensor, Tensor], Tensor]


@dataclass
class SolverProgress:
    """One update of :func:`integrate_stream`.

    Attributes:
        step: solver steps done so far (0 for the initial state).
        t: the time reached.
        x: the state at ``t``, shape ``(B, *dims)``.
        nfe: velocity evaluations spent so far.
        seconds: wall time spent in the solver so far (CUDA work synchronised).
    """

    step: int
    t: float
    x: Tensor
    nfe: int
    seconds: float


def _sync(x: Tensor) -> None:
    if x.is_cuda:
        torch.cuda.synchronize(x.device)


def integrate_stream(
    velocity: Velocity,
    x0: Tensor,
    *,
    method: str = "rk4",
    steps: int = 10,
    updates: int | None = None,
) -> Iterator[SolverProgress]:
    r"""Integrate :math:`dx/dt = v(x, t)` from :math:`t = 0` to 1, yielding the state as it goes.

    The uniform grid of ``steps`` steps is cut into at most ``updates`` consecutive pieces
    (every piece when ``None``), each solved by :func:`ecnf.integrate` from where the last
    one ended; as fixed-step methods only ever look at the current state, the final state
    and the NFE equal those of one ``integrate(velocity, x0, method=method, steps=steps)``.

    Arguments:
        velocity: callable ``(x, t) -> v`` with ``x`` of shape ``(B, *dims)``, ``t`` of
            shape ``(B,)``.
        x0: initial state (noise), shape ``(B, *dims)``.
        method: a fixed-step method (``euler``, ``midpoint``, ``heun``, ``rk4``).
        steps: solver steps.
        updates: most updates yielded after the initial state.

    Yields:
        :class:`SolverProgress` for the initial state, then after each piece; the last one
        has ``t == 1`` and ``step == steps``.

    Example:
        >>> x0 = torch.ones(3, 2)
        >>> updates = list(integrate_stream(lambda x, t: -x, x0, method="rk4", steps=8, updates=3))
        >>> [u.step for u in updates], updates[-1].nfe
        ([0, 3, 6, 8], 32)
        >>> torch.equal(updates[-1].x, integrate(lambda x, t: -x, x0, method="rk4", steps=8).x)
        True
    """
    check_choice("method", method, (*FIXED_METHODS, *MEAN_FLOW_METHODS))
    check_positive_int("steps", steps)
    if updates is not None:
        check_positive_int("updates", updates)
    stride = math.ceil(steps / updates) if updates else 1
    grid = uniform_grid(steps)  # the times integrate(..., steps=steps) steps along
    x, nfe, seconds = x0, 0, 0.0
    yield SolverProgress(0, grid[0], x, nfe, seconds)
    for start in range(0, steps, stride):
        stop = min(start + stride, steps)
        _sync(x)
        began = time.perf_counter()
        sol = integrate(velocity, x, method=method, times=grid[start : stop + 1])
        _sync(sol.x)
        seconds += time.perf_counter() - began
        x, nfe = sol.x, nfe + sol.nfe
        yield SolverProgress(stop, grid[stop], x, nfe, seconds)


@dataclass
class TrainEvent:
    """One event of :func:`fit_stream`.

    Attributes:
        kind: ``"log"`` (a log record), ``"preview"`` (EMA samples) or ``"done"``.
        step: the optimisation step it refers to.
        record: the log record (``"log"``), as :meth:`ecnf.Callback.on_log` receives it.
        samples: preview samples on the CPU (``"preview"``).
        result: what :func:`ecnf.fit` returned (``"done"``).
    """

    kind: str
    step: int
    record: dict | None = None
    samples: Tensor | None = None
    result: FitResult | None = None


class _Relay(Callback):
    def __init__(self, events: queue.Queue) -> None:
        self.events = events

    def on_log(self, record: dict) -> None:
        self.events.put(TrainEvent("log", record["step"], record=dict(record)))

    def on_preview(self, step: int, samples: Tensor) -> None:
        self.events.put(TrainEvent("preview", step, samples=samples.clone()))


def fit_stream(config: TrainConfig, *, command: str | None = None) -> Iterator[TrainEvent]:
    """Train with :func:`ecnf.fit` in a background thread, yielding what it reports.

    Log records come every ``config.log_every`` steps and previews every
    ``config.sample_every`` steps; the last event is ``"done"`` with the
    :class:`~ecnf.train.FitResult`. An error of ``fit`` (a bad configuration, a diverged
    loss) is raised here. Closing the generator early (``close()``, or dropping it) asks
    the run to stop at the end of its current step and waits for it, so no training
    thread outlives its consumer. The run writes to ``config.out_dir`` as ``fit`` does
    (an existing checkpoint there is replaced).

    Example:
        >>> import tempfile
        >>> from ecnf.nets import MLPConfig
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     config = TrainConfig(data="moons", model=MLPConfig(width=16, depth=1),
        ...                          iterations=4, batch_size=32, log_every=2, out_dir=tmp)
        ...     events = list(fit_stream(config))
        >>> [(e.kind, e.step) for e in events]
        [('log', 2), ('log', 4), ('done', 4)]
    """
    events: queue.Queue = queue.Queue()
    stop = threading.Event()
    failure: list[BaseException] = []

    def work() -> None:
        try:
            result = fit(
                config, [_Relay(events), StopOnEvent(stop)], overwrite=True, command=command
            )
        except Exception as error:  # handed to the consumer's thread below
            failure.append(error)
            events.put(TrainEvent("error", 0))
            return
        events.put(TrainEvent("done", result.step, result=result))

    thread = threading.Thread(target=work, name="ecnf-fit-stream", daemon=True)
    thread.start()
    try:
        while True:
            event = events.get()
            if event.kind == "error":
                raise failure[0]
            yield event
            if event.kind == "done":
                return
    finally:
        stop.set()
        thread.join()

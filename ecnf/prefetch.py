"""Training pairs whose minibatch OT coupling is solved ahead of the step that uses them.

An OT coupling of a batch is a linear assignment solved on the CPU (see
:mod:`ecnf.couplings`). Its cost grows faster than the batch, while a small network's training
step grows linearly: at batch 512 on 2D data one assignment costs about as much as the whole
step of a 256-wide MLP. Every solver releases the GIL, so :class:`CoupledBatches` draws the next
batches on the calling thread (keeping the random streams in their order) and solves their
assignments in background threads while the current step runs. With ``workers`` solvers
in flight, an assignment that costs ``A`` seconds no longer delays a step that costs ``S``
seconds once ``A <= workers * S`` and the machine has a free core per worker.

The pairs are exactly those of solving each batch in turn: the same draws, the same
permutation. :meth:`CoupledBatches.state_dict` is the data state *before* the oldest batch
not yet handed out, so a run resumed from a checkpoint draws that batch again.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

from torch import Tensor

from ._checks import check_choice, check_positive_int
from .couplings import OT_SOLVERS, ot_coupling

__all__ = ["CoupledBatches"]

#: ``(x0, x1)``, or ``(x0, x1, labels)`` for labelled data (coupled within each class)
PairDraw = Callable[[], tuple[Tensor, ...]]
StateSnapshot = Callable[[], Any]


class CoupledBatches:
    """Noise-data batches paired by minibatch OT, solved ``workers`` batches ahead.

    Arguments:
        draw: returns the next ``(x0, x1)`` batch, or ``(x0, x1, labels)`` with the classes of
            ``x1``; always called on the constructing thread.
        state: returns a snapshot of everything ``draw`` consumes (streams, generators), taken
            just before each draw; :meth:`state_dict` hands back the right one.
        workers: background solvers, each holding one batch ahead (``0``: solve in
            :meth:`next`, on the calling thread, nothing drawn ahead).
        solver: assignment solver (see :func:`ecnf.couplings.ot_assignment`).

    Example:
        >>> import torch
        >>> gen = torch.Generator().manual_seed(0)
        >>> draw = lambda: (torch.randn(8, 2, generator=gen), torch.randn(8, 2, generator=gen))
        >>> with CoupledBatches(draw, gen.get_state, workers=1) as pairs:
        ...     x0, x1 = pairs.next()
        >>> x0.shape, x1.shape
        (torch.Size([8, 2]), torch.Size([8, 2]))
    """

    def __init__(
        self, draw: PairDraw, state: StateSnapshot, *, workers: int = 1, solver: str = "auto"
    ):
        check_positive_int("workers", workers, minimum=0)
        check_choice("solver", solver, OT_SOLVERS)
        self._draw, self._state, self._solver = draw, state, solver
        self._workers = workers
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="ecnf-ot") if workers else None
        self._ahead: deque[tuple[Any, Future]] = deque()
        self._dropped: Any = None
        self._closed = False
        #: Seconds :meth:`next` spent waiting for an assignment (solving it, when
        #: ``workers == 0``), summed over the calls.
        self.wait_s = 0.0

    def _fill(self) -> None:
        while len(self._ahead) < self._workers:
            snapshot = self._state()
            future = self._pool.submit(_solve, self._draw(), self._solver)
            self._ahead.append((snapshot, future))

    def next(self) -> tuple[Tensor, ...]:
        """The next batch as ``(x0, x1[perm])``, with ``perm`` its OT assignment (and the
        labels, which a coupling within each class leaves in place)."""
        if self._closed:
            raise RuntimeError("CoupledBatches.next() called after close()")
        if self._pool is None:
            drawn = self._draw()
            start = time.perf_counter()
            pairs = _solve(drawn, self._solver)
            self.wait_s += time.perf_counter() - start
            return pairs
        if not self._ahead:
            self._fill()
        _, future = self._ahead.popleft()
        self._fill()  # the next solves start before this batch's step runs
        start = time.perf_counter()
        pairs = future.result()
        self.wait_s += time.perf_counter() - start
        return pairs

    def state_dict(self) -> Any:
        """The state to save: the snapshot before the oldest batch still ahead, if any.

        After :meth:`close` it is still the state before the batches that were dropped.
        """
        if self._ahead:
            return self._ahead[0][0]
        return self._state() if self._dropped is None else self._dropped

    def close(self) -> None:
        """Stop the background solvers (waiting for the ones running) and drop the batches
        drawn ahead; :meth:`state_dict` goes on returning the state before them."""
        if self._pool is not None:
            for _, future in self._ahead:
                future.cancel()
            self._pool.shutdown(wait=True)
            self._pool = None
        if self._ahead:
            self._dropped = self._ahead[0][0]
        self._ahead.clear()
        self._closed = True

    def __enter__(self) -> CoupledBatches:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _solve(drawn: tuple[Tensor, ...], solver: str) -> tuple[Tensor, ...]:
    if len(drawn) == 3:
        x0, x1, labels = drawn
        return (*ot_coupling(x0, x1, solver=solver, labels=labels), labels)
    x0, x1 = drawn
    return ot_coupling(x0, x1, solver=solver)

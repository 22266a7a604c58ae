"""Training callbacks: hooks that watch :func:`ecnf.train.fit` and may ask it to stop.

A callback sees plain records (dicts of numbers) and CPU tensors, never the training loop's
internals, so the CLI, the studio, notebooks and the demo can all watch a run the same way.
"""

from __future__ import annotations

import threading
from pathlib import Path

from torch import Tensor

__all__ = ["Callback", "ProgressBar", "StopOnEvent"]


class Callback:
    """Base class: override what you need. Every hook runs on the main (rank 0) process.

    ``on_log`` receives a record with ``step``, ``loss`` (mean since the last record), the
    loss's parts, ``lr``, ``grad_norm``, ``samples_per_s``, ``elapsed_s`` and ``eta_s``.
    """

    def on_start(self, step: int, total_steps: int) -> None:
        """Called once before the first step (``step`` > 0 when resuming)."""

    def on_log(self, record: dict) -> None:
        """Called every ``log_every`` steps."""

    def on_preview(self, step: int, samples: Tensor) -> None:
        """Called every ``sample_every`` steps with EMA samples on the CPU."""

    def on_preview_trajectory(self, step: int, times: Tensor, states: Tensor) -> None:
        """Called right after :meth:`on_preview` with the same solve's states at a few grid
        ``times`` (shape ``(T,)``), ``states`` of shape ``(T, B, *dims)`` on the CPU, from
        noise at ``times[0] = 0`` to the samples at ``times[-1] = 1``."""

    def on_checkpoint(self, step: int, path: Path) -> None:
        """Called after a checkpoint is written."""

    def on_step(self, step: int) -> None:
        """Called after every optimisation step (and its log, preview and checkpoint), before
        :meth:`should_stop`: the place for per-step work between steps, such as applying a
        new share of the cores (:mod:`ecnf.background`)."""

    def on_end(self, step: int, reason: str) -> None:
        """Called once at the end; ``reason`` is ``completed``, ``stopped`` or ``interrupted``."""

    def should_stop(self) -> bool:
        """Return ``True`` to stop the run (its state is saved first)."""
        return False


class StopOnEvent(Callback):
    """Stops the run when ``event`` is set (e.g. a Stop button in another thread)."""

    def __init__(self, event: threading.Event) -> None:
        self.event = event

    def should_stop(self) -> bool:
        return self.event.is_set()


class ProgressBar(Callback):
    """A tqdm progress bar showing loss, learning rate and throughput."""

    def __init__(self, **tqdm_kwargs) -> None:
        self.kwargs = {"dynamic_ncols": True, "unit": "step", **tqdm_kwargs}
        self.bar = None
        self.last = 0

    def on_start(self, step: int, total_steps: int) -> None:
        from tqdm.auto import tqdm

        self.bar = tqdm(total=total_steps, initial=step, **self.kwargs)
        self.last = step

    def on_log(self, record: dict) -> None:
        if self.bar is None:
            return
        self.bar.update(record["step"] - self.last)
        self.last = record["step"]
        self.bar.set_postfix(
            loss=f"{record['loss']:.4f}",
            lr=f"{record['lr']:.2e}",
            it_s=f"{record['steps_per_s']:.1f}",
        )

    def on_checkpoint(self, step: int, path: Path) -> None:
        if self.bar is not None:
            self.bar.update(step - self.last)
            self.last = step

    def on_end(self, step: int, reason: str) -> None:
        if self.bar is not None:
            self.bar.update(step - self.last)
            self.bar.close()
            self.bar = None

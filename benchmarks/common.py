"""Timing and machine description shared by the benchmark sections.

Timings on shared machines drift, so each comparison runs its candidates in interleaved
rounds (the order rotates every round) and reports medians; a ratio is the median of the
per-round ratios, so that a slow spell hits both sides of it.
"""

from __future__ import annotations

import gc
import math
import os
import platform
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version

import torch

__all__ = [
    "PEERS",
    "Stats",
    "first_timing",
    "interleaved",
    "interleaved_retimed",
    "lost",
    "machine",
    "ratio",
    "stats",
    "sync",
    "timed",
]

#: Packages compared against or timed (POT, SciPy and Numba solve the OT couplings), with the
#: names they are installed under.
PEERS = ("torchcfm", "flow_matching", "torchdiffeq", "POT", "scipy", "numba")


@dataclass
class Stats:
    """Median, quartiles and inter-quartile range of repeated measurements."""

    median: float
    q1: float
    q3: float
    n: int

    @property
    def iqr(self) -> float:
        return self.q3 - self.q1

    def as_dict(self) -> dict:
        return {"median": self.median, "q1": self.q1, "q3": self.q3, "iqr": self.iqr, "n": self.n}


def stats(values: list[float]) -> Stats:
    if len(values) < 2:
        return Stats(values[0], values[0], values[0], len(values))
    q = statistics.quantiles(values, n=4, method="inclusive")
    return Stats(statistics.median(values), q[0], q[2], len(values))


def sync(device: torch.device | str = "cpu") -> None:
    """Wait for the device's queued work (a no-op on the CPU)."""
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device | str = "cpu") -> float:
    """Seconds one call of ``fn`` takes, device work included (garbage collection paused)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        sync(device)
        start = time.perf_counter()
        fn()
        sync(device)
        return time.perf_counter() - start
    finally:
        if enabled:
            gc.enable()


def interleaved(
    fns: dict[str, Callable[[], object]],
    *,
    repeats: int | None = None,
    target_s: float = 1.0,
    min_repeats: int = 5,
    max_repeats: int = 50,
    warmup: int = 1,
    device: torch.device | str = "cpu",
) -> dict[str, list[float]]:
    """Time each function in ``fns`` in rounds, one call each per round, rotating the order.

    Without ``repeats``, the number of rounds is chosen from the warm-up so that the whole
    comparison takes about ``target_s`` seconds (between ``min_repeats`` and ``max_repeats``).
    """
    names = list(fns)
    spent = 0.0
    for _ in range(max(warmup, 1)):
        spent = sum(timed(fns[n], device) for n in names)
    if repeats is None:
        repeats = min(max(math.ceil(target_s / max(spent, 1e-9)), min_repeats), max_repeats)
    times: dict[str, list[float]] = {n: [] for n in names}
    for r in range(repeats):
        k = r % len(names)
        for n in names[k:] + names[:k]:
            times[n].append(timed(fns[n], device))
    return times


def lost(times: dict[str, list[float]], ours: str, theirs: str, mark: float = 1.0) -> bool:
    """Whether ``ours`` took over ``mark`` times ``theirs`` in at least three rounds of four
    (the lower quartile of the per-round time ratio is above ``mark``)."""
    return ratio(times[ours], times[theirs]).q1 > mark


def interleaved_retimed(
    fns: dict[str, Callable[[], object]],
    slower: Callable[[dict[str, list[float]]], bool],
    **kwargs,
) -> tuple[dict[str, list[float]], dict[str, list[float]] | None]:
    """:func:`interleaved`, timed a second time when ``slower`` reads the first timing as a loss.

    Returns ``(times, first)``: the timing to judge by and, when it was retimed, the first one
    (else ``None``). A comparison counts as lost only when both timings read as lost. With
    independent rounds of normal noise (simulated), a true tie reads as lost by the
    three-rounds-of-four rule in about 5% of single timings at 11 rounds and 1.3% at 21, so
    among dozens of ties a false loss is likely in every other run; twice in a row, in about
    0.3% and 0.02% of comparisons. A real slowdown reads as lost both times.
    """
    first = interleaved(fns, **kwargs)
    if not slower(first):
        return first, None
    return interleaved(fns, **kwargs), first


def first_timing(first: dict[str, list[float]] | None, others: tuple[str, ...]) -> dict | None:
    """ECNF's ratios (``ecnf_over_<name>``) in a timing that read as a loss and was repeated
    by :func:`interleaved_retimed`; ``None`` when it was not repeated."""
    if first is None:
        return None
    return {f"ecnf_over_{n}": ratio(first["ecnf"], first[n]).as_dict() for n in others}


def ratio(numerator: list[float], denominator: list[float]) -> Stats:
    """Median (and IQR) of the per-round ratios of two interleaved series."""
    return stats([a / b for a, b in zip(numerator, denominator, strict=True)])


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(name: str) -> str | None:
    try:
        return version(name)
    except PackageNotFoundError:
        return None


def machine() -> dict:
    """What the numbers were measured on, read from the machine (nothing typed)."""
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    return {
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        "platform": f"{platform.system()} {platform.machine()}",
        "python": platform.python_version(),
        "torch": torch.__version__,
        "gpu": gpu,
        "versions": {name: _version(name) for name in PEERS},
    }

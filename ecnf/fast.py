r"""One fast sampling path for CUDA: bf16 autocast, ``torch.compile`` and a CUDA graph.

A fixed-step solve of an image UNet is a fixed sequence of kernels: the same shapes at
every step, and no data-dependent control flow. On a GPU most of its eager time is Python
and kernel-launch overhead, which three things remove:

* **bf16 autocast** runs the convolutions and matmuls in bfloat16 (the solver's state and
  updates stay in float32);
* **torch.compile** (inductor) fuses the network's pointwise work;
* **a CUDA graph** captures the whole solve once and replays it with one launch.

:func:`sample` is what the CLI, the evaluation and the studio call. It takes the fast path
where it applies (a CUDA model and a fixed-step method) and plain eager fp32
:func:`ecnf.integrate` everywhere else (the CPU, adaptive methods), so its result has one
meaning on every machine: the ODE solution, within :data:`FAST_TOLERANCE` of eager fp32
(:func:`difference`).
Each :class:`FastSolver` is built (and compiled, and captured) once per model, batch shape,
method and number of steps, and kept in a small cache; :func:`is_cached` tells a page
whether the next call will compile. Where compilation or capture fails, :func:`sample` warns
once for that solve and samples eagerly in fp32 from then on.
"""

from __future__ import annotations

import warnings
import weakref
from collections import OrderedDict
from contextlib import nullcontext

import torch
from torch import Tensor, nn

from ._checks import check_choice
from .solvers import FIXED_METHODS, ODESolution, integrate

__all__ = [
    "FAST_TOLERANCE",
    "FastSolver",
    "difference",
    "fast_path_applies",
    "is_cached",
    "sample",
]

#: Largest :func:`difference` from eager fp32 allowed for the fast path's samples: the mean
#: absolute difference per value in the data range [-1, 1] (1e-2 is 1.3 grey levels of 255).
#: bf16 keeps 8 mantissa bits, so single pixels of a 20-step solve can move by a tenth
#: (a few chaotic trajectories), while the mean stays near 2e-3 for the shipped
#: Fashion-MNIST UNet. The fp32 variants (compile, graph) only reorder float arithmetic.
#: Tested on the CPU for bf16 autocast, and measured on a GPU by ``benchmarks/gpu.py``.
FAST_TOLERANCE = {"bf16": 1e-2, "fp32": 1e-4}

PRECISIONS = ("auto", "fp32", "bf16")
_CACHE_SIZE = 4


def difference(samples: Tensor, reference: Tensor) -> float:
    """Mean absolute difference between two batches of samples (see :data:`FAST_TOLERANCE`)."""
    return (samples.float() - reference.float()).abs().mean().item()


def fast_path_applies(model: nn.Module, method: str, device: torch.device | None = None) -> bool:
    """Whether :func:`sample` takes the fast path for this model and method."""
    if device is None:
        device = next(model.parameters()).device
    return torch.device(device).type == "cuda" and method in FIXED_METHODS


def _autocast(device: torch.device, precision: str):
    if precision == "bf16":
        # no weight-cast cache: cached casts would live outside a captured graph's memory pool
        return torch.autocast(device.type, dtype=torch.bfloat16, cache_enabled=False)
    return nullcontext()


class FastSolver:
    """A fixed-step solve of one model for one batch shape, built once and called many times.

    Arguments:
        model: The velocity network (in evaluation mode; it is not modified).
        shape: The batch shape ``(B, *dims)`` of the noise it will be given.
        method, steps: A fixed-step method of :data:`ecnf.solvers.FIXED_METHODS` and its
            number of steps.
        precision: ``bf16`` (autocast) or ``fp32``.
        compile: Compile the network with ``torch.compile``.
        cuda_graph: Capture the whole solve in a CUDA graph (CUDA only).
        trajectory: Also return every state on the grid.

    Calling it with noise of ``shape`` returns an :class:`~ecnf.solvers.ODESolution` whose
    tensors are fresh copies (the captured graph's buffers are reused by the next call).
    """

    def __init__(
        self,
        model: nn.Module,
        shape: tuple[int, ...],
        method: str,
        steps: int,
        *,
        precision: str = "bf16",
        compile: bool = True,
        cuda_graph: bool = True,
        trajectory: bool = False,
    ) -> None:
        check_choice("method", method, tuple(FIXED_METHODS))
        check_choice("precision", precision, ("fp32", "bf16"))
        self.device = next(model.parameters()).device
        if cuda_graph and self.device.type != "cuda":
            raise ValueError("cuda_graph=True needs a model on a CUDA device")
        self.shape, self.method, self.steps = tuple(shape), method, steps
        self.precision, self.trajectory = precision, trajectory
        self.net = torch.compile(model) if compile else model
        self._graph: torch.cuda.CUDAGraph | None = None
        self._x0 = torch.zeros(self.shape, device=self.device)
        if cuda_graph:
            self._capture()

    def _solve(self) -> ODESolution:
        with _autocast(self.device, self.precision), torch.no_grad():
            return integrate(
                self.net,
                self._x0,
                method=self.method,
                steps=self.steps,
                return_trajectory=self.trajectory,
            )

    def _capture(self) -> None:
        stream = torch.cuda.Stream(self.device)
        stream.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(stream):
            for _ in range(2):  # warm-up: compilation and cuDNN autotuning happen here
                self._solve()
        torch.cuda.current_stream(self.device).wait_stream(stream)
        self._graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self._graph):
            self._out = self._solve()

    def __call__(self, x0: Tensor) -> ODESolution:
        if tuple(x0.shape) != self.shape:
            raise ValueError(f"x0 must have shape {self.shape}, got {tuple(x0.shape)}")
        self._x0.copy_(x0)
        if self._graph is None:
            return self._solve()
        self._graph.replay()
        out = self._out
        trajectory = None if out.trajectory is None else out.trajectory.clone()
        return ODESolution(out.x.clone(), out.nfe, out.times, trajectory)


_solvers: OrderedDict[tuple, FastSolver] = OrderedDict()
_failed: set[tuple] = set()  # solves whose compilation or capture failed: eager from then on


def _key(model: nn.Module, shape, method, steps, precision, trajectory) -> tuple:
    return (id(model), tuple(shape), method, steps, precision, trajectory)


def is_cached(
    model: nn.Module,
    shape: tuple[int, ...],
    method: str,
    steps: int,
    precision: str = "auto",
    trajectory: bool = False,
) -> bool:
    """Whether :func:`sample` has already built (compiled and captured) this solve."""
    key = _key(model, shape, method, steps, _resolve(precision), trajectory)
    return key in _solvers


def _resolve(precision: str) -> str:
    check_choice("precision", precision, PRECISIONS)
    return "bf16" if precision == "auto" else precision


def sample(
    model: nn.Module,
    x0: Tensor,
    *,
    method: str = "rk4",
    steps: int | None = None,
    precision: str = "auto",
    fast: bool | None = None,
    return_trajectory: bool = False,
    **solver_kwargs,
) -> ODESolution:
    r"""Integrate noise ``x0`` to samples, on the fast path where it applies.

    On a CUDA model with a fixed-step method (and ``fast`` not ``False``), the solve runs
    through a cached :class:`FastSolver` (bf16 autocast when ``precision`` is ``auto`` or
    ``bf16``, ``torch.compile``, one CUDA graph); its samples are within
    :data:`FAST_TOLERANCE` of eager fp32. Everywhere else (the CPU, adaptive methods,
    ``fast=False``) it is :func:`ecnf.integrate` in the model's own precision, exactly.

    Arguments:
        model: The velocity network.
        x0: Noise of shape ``(B, *dims)`` on the model's device.
        method, steps: The solver; further ``solver_kwargs`` (``rtol``, ``atol``,
            ``times``...) go to :func:`ecnf.integrate` on the eager path.
        precision: ``auto`` (bf16 on the fast path), ``bf16`` or ``fp32``.
        fast: ``None`` takes the fast path where it applies; ``False`` never does;
            ``True`` requires it (a ``ValueError`` where it cannot apply).
        return_trajectory: Also return every state on the grid.
    """
    applies = fast_path_applies(model, method, x0.device) and not solver_kwargs
    if fast and not applies:
        raise ValueError(
            "the fast path needs a CUDA model and a fixed-step method with no extra solver "
            f"options; got {x0.device.type} and {method!r}"
        )
    if fast is False or not applies:
        return integrate(
            model,
            x0,
            method=method,
            steps=steps,
            return_trajectory=return_trajectory,
            **solver_kwargs,
        )
    steps = 10 if steps is None else steps
    precision = _resolve(precision)
    key = _key(model, x0.shape, method, steps, precision, return_trajectory)
    if key in _failed:
        return integrate(model, x0, method=method, steps=steps, return_trajectory=return_trajectory)
    solver = _solvers.get(key)
    if solver is None:
        try:
            solver = FastSolver(
                model,
                tuple(x0.shape),
                method,
                steps,
                precision=precision,
                trajectory=return_trajectory,
            )
        except Exception as error:  # compile or capture failed: the eager path still works
            if fast:
                raise
            _failed.add(key)
            warnings.warn(
                f"the CUDA fast path failed ({type(error).__name__}: {error}); sampling this "
                "model eagerly in fp32 instead",
                UserWarning,
                stacklevel=2,
            )
            return integrate(
                model, x0, method=method, steps=steps, return_trajectory=return_trajectory
            )
        _solvers[key] = solver
        weakref.finalize(model, _solvers.pop, key, None)  # a freed model frees its solvers
        while len(_solvers) > _CACHE_SIZE:
            _solvers.popitem(last=False)
    _solvers.move_to_end(key)
    return solver(x0)

"""What a page may ask of the machine: default image counts and solve-time estimates.

A 35.75 M-parameter CIFAR-10 UNet (TorchCFM's released flows) takes a fraction of a second
per velocity evaluation of a few images on a CPU core, so a 20-step RK4 solve of sixteen
images takes minutes there, and seconds on a GPU. The pages and the demo use these two
functions to start small on a CPU and to say how long a request will take before it runs.
"""

from __future__ import annotations

import time

import torch
from torch import nn

__all__ = ["LARGE_MODEL_PARAMETERS", "default_image_count", "evaluation_seconds", "is_large"]

#: Above this many parameters a model counts as large on a CPU.
LARGE_MODEL_PARAMETERS = 10_000_000


def _device(model: nn.Module) -> torch.device:
    return next(model.parameters()).device


def is_large(model: nn.Module) -> bool:
    """Whether ``model`` is slow enough on its device for the pages to start small."""
    params = sum(p.numel() for p in model.parameters())
    return _device(model).type == "cpu" and params > LARGE_MODEL_PARAMETERS


def default_image_count(model: nn.Module, usual: int = 16) -> int:
    """How many images a page samples by default: ``usual``, or 4 for a large model on a CPU."""
    return 4 if is_large(model) else usual


@torch.no_grad()
def evaluation_seconds(model: nn.Module, count: int) -> float:
    """Wall time of one velocity evaluation of ``count`` samples on the model's device, timed
    once after a warm-up call on one sample (an estimate: multiply by the NFE)."""
    device = _device(model)
    shape = tuple(model.config.data_shape)
    t = torch.full((1,), 0.5, device=device)
    model(torch.zeros((1, *shape), device=device), t)  # warm-up: allocations, kernels
    x = torch.zeros((count, *shape), device=device)
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    start = time.perf_counter()
    model(x, t.expand(count))
    if device.type == "cuda":
        torch.cuda.synchronize(device)
    return time.perf_counter() - start

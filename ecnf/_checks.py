"""Argument checks shared by the library: one place that words the error messages."""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
from torch import Tensor

__all__ = ["check_choice", "check_finite", "check_positive_int", "check_same_shape"]


def check_choice(name: str, value: str, allowed: Iterable[str]) -> str:
    """Return ``value`` if it is one of ``allowed``, else raise a ``ValueError`` naming both."""
    allowed = tuple(allowed)
    if value not in allowed:
        raise ValueError(f"{name}={value!r} is not supported; choose one of {', '.join(allowed)}")
    return value


def check_positive_int(name: str, value: int, minimum: int = 1) -> int:
    """Return ``value`` if it is an integer ``>= minimum``, else raise a ``ValueError``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return value


def check_finite(name: str, x: Tensor) -> Tensor:
    """Raise a ``ValueError`` if ``x`` holds NaN or infinite values."""
    if not torch.is_tensor(x):
        raise ValueError(f"{name} must be a torch.Tensor, got {type(x).__name__}")
    if x.is_floating_point() and not _all_finite(x):
        bad = int((~torch.isfinite(x)).sum())
        raise ValueError(f"{name} contains {bad} NaN or infinite value(s); clean the input first")
    return x


def _all_finite(x: Tensor) -> bool:
    if x.is_cpu:
        # One reduction instead of an element-wise test: a finite sum proves every element
        # finite. Only a sum that overflows (or a tensor that is not finite) pays for the
        # element-wise check, which decides.
        total = (x.detach() if x.requires_grad else x).sum().item()
        return math.isfinite(total) or bool(torch.isfinite(x).all())
    return bool(torch.isfinite(x).all())


def check_same_shape(name_a: str, a: Tensor, name_b: str, b: Tensor) -> None:
    """Raise a ``ValueError`` if the two tensors differ in shape."""
    if a.shape != b.shape:
        raise ValueError(
            f"{name_a} and {name_b} must have the same shape, "
            f"got {tuple(a.shape)} and {tuple(b.shape)}"
        )

r"""Classifier-free guidance: sampling a class-conditional flow towards its labels.

A network built with ``num_classes > 0`` and trained with label dropout (``cond_drop``)
learns both the conditional velocity :math:`v(x, t \mid y)` and, under the null label, the
unconditional one :math:`v(x, t)`. Guidance with scale :math:`w` follows

.. math:: \tilde v(x, t \mid y) = v(x, t) + w \, \bigl(v(x, t \mid y) - v(x, t)\bigr),

so :math:`w = 0` is the unconditional flow, :math:`w = 1` the conditional one, and
:math:`w > 1` pushes samples further towards their class (Ho and Salimans 2022,
"Classifier-Free Diffusion Guidance", arXiv:2207.12598; for flow matching, Zheng et al.
2023, "Guided Flows for Generative Modeling and Decision Making", arXiv:2311.13443).

:class:`Guided` evaluates both velocities in one batched forward of ``2B`` states. It
counts as two network evaluations per call (:attr:`Guided.nfe_per_call`), which
:func:`ecnf.integrate` multiplies into the NFE it reports; at :math:`w = 0` and
:math:`w = 1` only one velocity is needed, and only one is computed.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .nets.embeddings import prepare_labels

__all__ = [
    "MAX_GUIDANCE",
    "Guided",
    "Labelled",
    "drop_labels",
    "evaluations_at",
    "guided",
    "labels_in_turn",
]

#: The largest guidance scale the studio and the demo offer.
MAX_GUIDANCE = 5.0


def evaluations_at(scale: float) -> int:
    """Network evaluations per velocity of a guided flow at ``scale``: one at 0 (the
    unconditional velocity) and at 1 (the conditional one), both otherwise."""
    return 1 if scale in (0.0, 1.0) else 2


def labels_in_turn(classes, n: int) -> Tensor:
    """``n`` labels taking ``classes`` (a sequence of ints) in turn: ``0, 1, 2, 0, 1, ...``.

    Example:
        >>> labels_in_turn((3, 5), 5).tolist()
        [3, 5, 3, 5, 3]
    """
    classes = torch.as_tensor(list(classes), dtype=torch.long)
    if classes.numel() == 0:
        raise ValueError("choose at least one class")
    return classes.repeat(n // classes.numel() + 1)[:n]


class Guided(nn.Module):
    """The guided velocity of a class-conditional ``model`` for ``labels`` at ``scale``.

    Arguments:
        model: a network with ``config.num_classes > 0``.
        labels: class labels, shape ``()`` or ``(B,)`` (``0 .. num_classes - 1``).
        scale: the guidance scale :math:`w \\ge 0`.

    Example:
        >>> from ecnf.nets import MLPConfig, VelocityMLP
        >>> net = VelocityMLP(MLPConfig(num_classes=3))
        >>> x, t = torch.randn(4, 2), torch.rand(4)
        >>> torch.equal(Guided(net, 2, 0.0)(x, t), net(x, t))
        True
        >>> Guided(net, 2, 3.0).nfe_per_call
        2
    """

    def __init__(self, model: nn.Module, labels: Tensor | int, scale: float) -> None:
        super().__init__()
        num_classes = getattr(getattr(model, "config", None), "num_classes", 0)
        if not num_classes:
            raise ValueError(
                "guidance needs a class-conditional network (built with num_classes > 0 and "
                "trained with label dropout); this one is unconditional"
            )
        scale = float(scale)
        if not scale >= 0 or scale != scale or scale == float("inf"):
            raise ValueError(f"the guidance scale must be a finite number >= 0, got {scale!r}")
        labels = torch.as_tensor(labels)
        if labels.numel() and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
            raise ValueError(
                f"labels must lie in 0..{num_classes - 1} for this network, got values in "
                f"{int(labels.min())}..{int(labels.max())}"
            )
        self.model, self.labels, self.scale = model, labels, scale
        self.config = model.config
        #: network evaluations per call: both velocities, unless one of them suffices
        self.nfe_per_call = evaluations_at(scale)

    def forward(self, x: Tensor, t: Tensor, r: Tensor | None = None) -> Tensor:
        num_classes = self.config.num_classes
        y = prepare_labels(x, self.labels, num_classes)  # (B,)
        if self.scale == 0.0:
            return self.model(x, t, r, y=None)
        if self.scale == 1.0:
            return self.model(x, t, r, y=y)
        t = torch.as_tensor(t, device=x.device, dtype=x.dtype).expand(x.shape[0])
        both_r = None if r is None else torch.as_tensor(r, device=x.device).expand(x.shape[0])
        v = self.model(
            torch.cat((x, x)),
            torch.cat((t, t)),
            None if both_r is None else torch.cat((both_r, both_r)),
            y=torch.cat((y, torch.full_like(y, num_classes))),
        )
        conditional, unconditional = v.chunk(2)
        return unconditional + self.scale * (conditional - unconditional)


def guided(model: nn.Module, labels: Tensor | int | None, scale: float = 1.0) -> nn.Module:
    """``model`` itself when ``labels`` is None (unconditional, or the null label), else
    :class:`Guided`. The one place the CLI, the studio and the demo build a guided flow."""
    if labels is None:
        return model
    return Guided(model, labels, scale)


class Labelled(nn.Module):
    """``model`` with its labels bound: a velocity ``(x, t[, r]) -> model(x, t, r, y=labels)``
    that the losses and solvers call like any unconditional one."""

    def __init__(self, model: nn.Module, labels: Tensor) -> None:
        super().__init__()
        self.model, self.labels = model, labels
        self.config = getattr(model, "config", None)

    def forward(self, x: Tensor, t: Tensor, r: Tensor | None = None) -> Tensor:
        return self.model(x, t, r, y=self.labels)


def drop_labels(
    labels: Tensor, num_classes: int, share: float, *, generator: torch.Generator | None = None
) -> Tensor:
    """``labels`` with a random ``share`` of them replaced by the null label ``num_classes``:
    the label dropout that teaches one network both its conditional and its unconditional
    velocity (classifier-free guidance needs both).

    Example:
        >>> y = torch.zeros(10_000, dtype=torch.long)
        >>> dropped = drop_labels(y, 10, 0.2, generator=torch.Generator().manual_seed(0))
        >>> round(float((dropped == 10).float().mean()), 2)
        0.2
    """
    if not 0.0 <= share < 1.0:
        raise ValueError(f"the label dropout share must lie in [0, 1), got {share!r}")
    if share == 0.0:
        return labels
    drop = torch.rand(labels.shape, device=labels.device, generator=generator) < share
    return torch.where(drop, torch.full_like(labels, num_classes), labels)

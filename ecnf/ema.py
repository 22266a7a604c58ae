r"""Exponential moving average of parameters (seed paper eq. 10).

.. math:: \theta_{\mathrm{EMA}} \leftarrow \beta\, \theta_{\mathrm{EMA}} + (1 - \beta)\, \theta,
    \qquad \beta = 0.999 .
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

__all__ = ["EMA", "ema_update"]


@torch.no_grad()
def ema_update(model: nn.Module, ema_model: nn.Module, decay: float) -> None:
    """Move ``ema_model``'s parameters toward ``model``'s by ``1 - decay``; copy buffers.

    Example:
        >>> a, b = nn.Linear(2, 2), nn.Linear(2, 2)
        >>> ema_update(a, b, decay=0.0)
        >>> torch.equal(a.weight, b.weight)
        True
    """
    if not 0.0 <= decay <= 1.0:
        raise ValueError(f"decay must be in [0, 1], got {decay!r}")
    ema_params = list(ema_model.parameters())
    params = list(model.parameters())
    if len(ema_params) != len(params):
        raise ValueError("model and ema_model must have the same parameters")
    if params:
        torch._foreach_lerp_(ema_params, [p.detach() for p in params], 1.0 - decay)
    for b_ema, b in zip(ema_model.buffers(), model.buffers(), strict=True):
        b_ema.copy_(b)


class EMA(nn.Module):
    """A frozen copy of ``model`` tracking its parameters' exponential moving average.

    Arguments:
        model: the network being trained.
        decay: :math:`\\beta` (0.999 in the seed paper).
        warmup: use ``min(decay, (1 + n) / (10 + n))`` after ``n`` updates, so early
            averages are not dominated by the random initialisation.

    Example:
        >>> net = nn.Linear(2, 2)
        >>> ema = EMA(net, decay=0.9)
        >>> ema.update(net)
        >>> ema.num_updates
        1
    """

    def __init__(self, model: nn.Module, decay: float = 0.999, warmup: bool = False) -> None:
        super().__init__()
        if not 0.0 <= decay <= 1.0:
            raise ValueError(f"decay must be in [0, 1], got {decay!r}")
        self.decay = decay
        self.warmup = warmup
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self.register_buffer("_num_updates", torch.zeros((), dtype=torch.long))

    @property
    def num_updates(self) -> int:
        return int(self._num_updates)

    def current_decay(self) -> float:
        if not self.warmup:
            return self.decay
        n = self.num_updates
        return min(self.decay, (1 + n) / (10 + n))

    def update(self, model: nn.Module) -> None:
        """One EMA step toward ``model``'s current parameters."""
        ema_update(model, self.model, self.current_decay())
        self._num_updates += 1

    def train(self, mode: bool = True) -> EMA:  # the average is never in training mode
        super().train(mode)
        self.model.eval()
        return self

    @property
    def config(self):
        """The averaged network's configuration (so the EMA samples like the network)."""
        return getattr(self.model, "config", None)

    def forward(
        self, x: Tensor, t: Tensor, r: Tensor | None = None, y: Tensor | None = None
    ) -> Tensor:
        if y is not None:
            return self.model(x, t, r, y=y)
        return self.model(x, t) if r is None else self.model(x, t, r)

"""2D metrics against independent computations."""

import numpy as np
import ot
import pytest
import torch

from ecnf.metrics import mmd2, wasserstein2


def test_w2_of_a_shift_is_the_shift_length():
    x = torch.randn(300, 2, generator=torch.Generator().manual_seed(0))
    assert wasserstein2(x, x + torch.tensor([0.3, -0.4])) == pytest.approx(0.5, abs=1e-6)


def test_w2_matches_pot():
    g = torch.Generator().manual_seed(1)
    x, y = torch.randn(200, 2, generator=g), torch.rand(200, 2, generator=g) * 3
    m = torch.cdist(x.double(), y.double()).pow(2).numpy()
    w = np.full(200, 1 / 200)
    assert wasserstein2(x, y) == pytest.approx(ot.emd2(w, w, m) ** 0.5, rel=1e-9)


def test_mmd_separates_distributions():
    g = torch.Generator().manual_seed(2)
    a, b = torch.randn(500, 2, generator=g), torch.randn(500, 2, generator=g)
    same = mmd2(a, b)
    shifted = mmd2(a, b + 1.0)
    assert abs(same) < 0.01 < shifted
    with pytest.raises(ValueError, match="x"):
        mmd2(torch.full((3, 2), float("nan")), b)
    with pytest.raises(ValueError, match="same shape"):
        wasserstein2(a, b[:10])

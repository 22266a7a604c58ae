"""CoupledBatches: the same pairs as solving each batch in turn, solved off the calling thread."""

import threading

import pytest
import torch

from ecnf.couplings import ot_coupling
from ecnf.prefetch import CoupledBatches


def source(seed=0, batch=64):
    gen = torch.Generator().manual_seed(seed)
    draws = []

    def draw():
        draws.append(threading.current_thread().name)
        return torch.randn(batch, 2, generator=gen), torch.rand(batch, 2, generator=gen) * 4

    return gen, draw, draws


@pytest.mark.parametrize("workers", [0, 1, 3])
def test_pairs_equal_solving_each_batch_in_turn(workers):
    _, draw_ref, _ = source()
    expected = [ot_coupling(*draw_ref()) for _ in range(6)]
    gen, draw, draws = source()
    with CoupledBatches(draw, gen.get_state, workers=workers) as pairs:
        got = [pairs.next() for _ in range(6)]
    for (a0, a1), (b0, b1) in zip(expected, got, strict=True):
        assert torch.equal(a0, b0) and torch.equal(a1, b1)
    # every draw happens on the calling thread, so random streams keep their order
    assert set(draws) == {threading.current_thread().name}
    # workers batches are drawn ahead of the ones handed out
    assert len(draws) == 6 + workers


def test_assignments_are_solved_in_background_threads(monkeypatch):
    seen = []

    def recording(x0, x1, **kw):
        seen.append(threading.current_thread().name)
        return ot_coupling(x0, x1, **kw)

    monkeypatch.setattr("ecnf.prefetch.ot_coupling", recording)
    gen, draw, _ = source()
    with CoupledBatches(draw, gen.get_state, workers=2) as pairs:
        for _ in range(4):
            pairs.next()
    assert seen and all(name.startswith("ecnf-ot") for name in seen)


def test_state_is_the_one_before_the_batches_drawn_ahead():
    gen, draw, draws = source()
    pairs = CoupledBatches(draw, gen.get_state, workers=2)
    assert torch.equal(pairs.state_dict(), gen.get_state())  # nothing drawn yet
    pairs.next()
    assert len(draws) == 3  # one handed out, two ahead
    # the saved state is the one after the first draw: a resumed run draws batch 2 again
    ref_gen, ref_draw, _ = source()
    ref_draw()
    assert torch.equal(pairs.state_dict(), ref_gen.get_state())
    pairs.close()
    assert torch.equal(pairs.state_dict(), ref_gen.get_state())
    with pytest.raises(RuntimeError, match="after close"):
        pairs.next()


@pytest.mark.parametrize("kw, word", [({"workers": -1}, "workers"), ({"solver": "lp"}, "solver")])
def test_bad_arguments_are_named(kw, word):
    gen, draw, _ = source()
    with pytest.raises(ValueError, match=word):
        CoupledBatches(draw, gen.get_state, **kw)

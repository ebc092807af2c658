"""Fused one-sided write kernel vs its numpy twin (bit-exact), incl. edge sizes."""

import numpy as np
import pytest

from hw_models.kernels.program import one_sided_write

from naive import naive_one_sided_write


@pytest.mark.jitfree
@pytest.mark.parametrize("shape", [(1, 1), (3, 257), (64, 100), (0, 5)])
def test_one_sided_write_matches_twin_bit_exactly(shape):
    rng = np.random.default_rng(0)
    w = (rng.standard_normal(shape) * 0.1).astype(np.float32)
    w_max = (np.abs(w).max(axis=1) * 0.8 + 1e-3).astype(np.float32) if shape[0] else np.ones(0, np.float32)
    outs = [np.empty(shape, np.float32) for _ in range(4)]
    one_sided_write(w, w_max, 25.0, *outs)
    for got, want in zip(outs, naive_one_sided_write(w, w_max, 25.0)):
        assert np.array_equal(got, want)
    if w.size:
        assert np.all(np.abs(outs[3]) <= w_max[:, None])  # clipped at the column range


def test_one_sided_write_rejects_bad_arrays():
    w = np.zeros((2, 3), np.float32)
    with pytest.raises(ValueError):
        one_sided_write(w, np.ones(2, np.float32), 25.0, w.copy(), w.copy(), w.copy(), np.zeros((2, 3)))

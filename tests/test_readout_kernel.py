"""Frozen read-noise kernel (hw_models/kernels/readout.py) against its twin in tests/naive.py,
bit-exact, incl. edge sizes, negative results clamped at 0 and bad input."""

import numpy as np
import pytest

from hw_models.kernels.readout import add_noise_clamped

from naive import naive_add_noise_clamped


@pytest.mark.jitfree
@pytest.mark.parametrize("shape", [(0,), (1,), (7,), (3, 5), (300, 400)])
def test_add_noise_clamped_matches_twin(shape):
    rng = np.random.default_rng(3)
    g = rng.uniform(0, 25, shape).astype(np.float32)
    sigma = rng.uniform(0, 10, shape).astype(np.float32)
    xi = rng.standard_normal(shape).astype(np.float32)
    want = naive_add_noise_clamped(g, sigma, xi)
    got = add_noise_clamped(g, sigma, xi.copy())
    assert got.shape == shape and got.dtype == np.float32
    np.testing.assert_array_equal(got, want)
    if g.size > 100:
        assert np.any(g + sigma * xi < 0) and got.min() == 0


@pytest.mark.jitfree
def test_add_noise_clamped_rejects_bad_input():
    a = np.ones(4, np.float32)
    with pytest.raises(ValueError, match="float32"):
        add_noise_clamped(a, a.astype(np.float64), a.copy())
    with pytest.raises(ValueError, match="one shape"):
        add_noise_clamped(a, np.ones(3, np.float32), a.copy())
    with pytest.raises(ValueError, match="C-contiguous"):
        add_noise_clamped(np.ones((4, 4), np.float32).T, np.ones((4, 4), np.float32),
                          np.ones((4, 4), np.float32).T)

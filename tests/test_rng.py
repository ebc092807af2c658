"""Parallel normal draws: standard-normal moments, same seed => same numbers, any pool size."""

import numpy as np
import pytest

import hw_models.rng as rng_mod
from hw_models.rng import NormalSource


@pytest.mark.jitfree
@pytest.mark.parametrize("shape", [(7,), (300, 1000), (0, 5)])
def test_deterministic_and_standard_normal(shape, monkeypatch):
    a = NormalSource(np.random.default_rng(3)).standard_normal(shape)
    monkeypatch.setattr(rng_mod, "_POOL", None)
    monkeypatch.setattr(rng_mod.os, "cpu_count", lambda: 1)  # a one-thread pool: same numbers
    b = NormalSource(np.random.default_rng(3)).standard_normal(shape)
    monkeypatch.setattr(rng_mod, "_POOL", None)
    c = NormalSource(np.random.default_rng(4)).standard_normal(shape)
    assert a.shape == shape and a.dtype == np.float32 and np.array_equal(a, b)
    if a.size > 1000:
        n = a.size
        assert not np.array_equal(a, c)
        assert abs(a.mean()) < 3 / np.sqrt(n) and abs(a.std() - 1) < 3 / np.sqrt(2 * n)
        chunks = np.array_split(a.reshape(-1), rng_mod.STREAMS)  # streams are not copies
        assert not np.array_equal(chunks[0][:100], chunks[1][:100])

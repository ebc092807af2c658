"""Fused kernel of frozen read noise: the perturbed conductance max(g + sigma * xi, 0) of every
device, in one parallel pass, written over the pre-drawn standard normals xi (float32, no FMA
contraction: bit-exact with tests/naive.py naive_add_noise_clamped)."""

from __future__ import annotations

import numpy as np

from hw_models.kernels._jit import njit_fixed_parallel, prange


@njit_fixed_parallel
def _add_noise_clamped_kernel(g, sigma, xi):
    zero = np.float32(0)
    for i in prange(g.shape[0]):
        xi[i] = max(g[i] + sigma[i] * xi[i], zero)


def add_noise_clamped(g_uS: np.ndarray, sigma_uS: np.ndarray, xi: np.ndarray) -> np.ndarray:
    """max(g + sigma * xi, 0) elementwise for float32 arrays of one shape, computed in place into
    xi (which is returned): g + (sigma * xi) rounded per operation as numpy would."""
    arrays = (g_uS, sigma_uS, xi)
    if any(not isinstance(a, np.ndarray) or a.dtype != np.float32 or a.shape != xi.shape for a in arrays):
        raise ValueError("add_noise_clamped needs float32 arrays of one shape")
    if not xi.flags.c_contiguous:
        raise ValueError("add_noise_clamped writes into xi, which must be C-contiguous")
    _add_noise_clamped_kernel(np.ascontiguousarray(g_uS).reshape(-1), np.ascontiguousarray(sigma_uS).reshape(-1),
                              xi.reshape(-1))
    return xi

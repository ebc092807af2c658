"""Kernels of the read-out of an array: frozen read noise, the perturbed conductance
max(g + sigma * xi, 0) of every device in one parallel pass, written over the pre-drawn standard
normals xi (float32, no FMA contraction: bit-exact with tests/naive.py naive_add_noise_clamped);
and the parallel scatter with which a write stores the devices it re-programmed (twin: np.put)."""

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


@njit_fixed_parallel
def _put_kernel(flat, idx, values):
    for j in prange(idx.shape[0]):
        flat[idx[j]] = values[j]


def put_at(a: np.ndarray, idx: np.ndarray, values: np.ndarray) -> None:
    """a.flat[idx] = values (np.put for distinct, in-range int64 flat indices of a C-contiguous
    array; values of a's dtype and idx's length), on all cores."""
    if not a.flags.c_contiguous or idx.dtype != np.int64 or values.shape != idx.shape or values.dtype != a.dtype:
        raise ValueError("put_at needs a C-contiguous array, int64 indices and as many values of its dtype")
    if idx.size and (idx[0] < 0 or idx[-1] >= a.size):  # sorted (np.flatnonzero): the ends bound all
        raise IndexError(f"flat indices out of range for an array of {a.size} elements")
    _put_kernel(a.reshape(-1), idx, values)

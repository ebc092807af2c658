"""Numba kernels of the elementwise arithmetic around a differential pair's write and read-out: the
per-device requests of a symmetric (pulsed) pair write, and the effective weight of every pair.
Each replaces several numpy passes over the array (with a temporary per pass) by one parallel pass
with the same float32 operations in the same order, so the results are bit-identical to the numpy
expressions (twins: tests/naive.py naive_half_requests, naive_pair_difference; no fastmath, so no
FMA contraction), NaN and signed zeros included; only which payload a NaN carries when two operands
are NaN may differ (LLVM may commute a product).  Division by a zero w_max gives inf / NaN as in
numpy (parallel kernels use numpy's error model)."""

from __future__ import annotations

import numpy as np

from hw_models.kernels._jit import njit_fixed_parallel, prange

F32 = np.float32


@njit_fixed_parallel
def _half_requests_kernel(w, g_eff, from_target, w_max, half_scale, plus, minus):
    for r in prange(w.shape[0]):
        wm = w_max[r]
        for k in range(w.shape[1]):
            delta = w[r, k] - g_eff[r, k] * wm if from_target else w[r, k]
            h = (delta / wm) * half_scale
            plus[r, k] = h
            minus[r, k] = -h if h == h else h  # float32(-1) * NaN keeps the NaN's sign on x86


@njit_fixed_parallel
def _difference_kernel(a, b, scale, out):
    for i in prange(out.shape[0]):
        out[i] = (a[i] - b[i]) * scale


def half_requests(w: np.ndarray, w_max: np.ndarray, half_scale, g_eff: np.ndarray | None = None,
                  shape: tuple[int, int] | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(h, -h), float32 (M, K), the conductance change asked of G+ and of G- of each symmetric pair:
    h = ((w - g_eff w_max) / w_max) half_scale for a target w (g_eff given: the pairs' normalized
    effective weights), h = (w / w_max) half_scale for a change w (g_eff None); w_max: one value
    per output (row m of the (M, K) array; (M,) or (M, 1)), half_scale = gmax / 2 as float32;
    float32 operations in this order, as numpy computes them with w_max as an (M, 1) column.  w of
    another shape is broadcast to `shape` (the array's (M, K)) first, as numpy would broadcast it;
    w of another dtype first becomes the float32 change as numpy would compute it (in numpy's result
    type, then rounded)."""
    w_max = np.ascontiguousarray(w_max, dtype=F32).reshape(-1)
    if shape is not None and np.shape(w) != tuple(shape):
        w = np.broadcast_to(np.asarray(w), shape)
    if np.ndim(w) != 2 or np.shape(w)[0] != w_max.shape[0]:
        raise ValueError(f"need w (M, K) and w_max (M,), got {np.shape(w)} and {w_max.shape}")
    if g_eff is not None and (g_eff.shape != np.shape(w) or g_eff.dtype != F32):
        raise ValueError(f"g_eff must be float32 of w's shape {np.shape(w)}, got {g_eff.dtype} {g_eff.shape}")
    if g_eff is not None and np.asarray(w).dtype != F32:  # the change in numpy's result type
        w, g_eff = np.asarray(w) - g_eff * w_max[:, None], None
    w = np.ascontiguousarray(w, dtype=F32)
    plus, minus = np.empty_like(w), np.empty_like(w)
    from_target = g_eff is not None
    _half_requests_kernel(w, np.ascontiguousarray(g_eff) if from_target else w, from_target, w_max,
                          F32(half_scale), plus, minus)
    return plus, minus


def pair_difference(a: np.ndarray, b: np.ndarray, scale) -> np.ndarray:
    """(a - b) * scale for float32 arrays of one shape and a float32 scale, in one parallel pass
    (other dtypes: numpy, cast to float32 as .astype(float32) would)."""
    scale = F32(scale)
    if a.dtype != F32 or b.dtype != F32 or a.shape != b.shape:
        return ((a - b) * scale).astype(F32, copy=False)
    out = np.empty(a.shape, F32)
    _difference_kernel(np.ascontiguousarray(a).reshape(-1), np.ascontiguousarray(b).reshape(-1), scale,
                       out.reshape(-1))
    return out

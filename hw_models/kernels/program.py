"""Fused write of target weights into one-sided differential pairs of ideal devices (one pass:
normalize, split into G+ / G-, effective normalized weight, read-back weight)."""

from __future__ import annotations

import numpy as np

from hw_models.kernels._jit import njit_float, prange


@njit_float
def one_sided_write_kernel(w_target, w_max, gmax, g_plus, g_minus, g_eff, w_out):
    inv_gmax = np.float32(1.0) / gmax
    for m in prange(w_target.shape[0]):
        wm = w_max[m]
        for k in range(w_target.shape[1]):
            wn = w_target[m, k] / wm
            wn = min(max(wn, np.float32(-1.0)), np.float32(1.0))
            gp = max(wn, np.float32(0.0)) * gmax
            gn = max(-wn, np.float32(0.0)) * gmax
            ge = (gp - gn) * inv_gmax
            g_plus[m, k] = gp
            g_minus[m, k] = gn
            g_eff[m, k] = ge
            w_out[m, k] = ge * wm


def one_sided_write(w_target: np.ndarray, w_max: np.ndarray, gmax_uS: float, g_plus: np.ndarray,
                    g_minus: np.ndarray, g_eff: np.ndarray, w_out: np.ndarray) -> None:
    """Write w_target (M, K) float32 into the given (M, K) float32 arrays in place; w_max (M,)."""
    arrays = (w_target, g_plus, g_minus, g_eff, w_out)
    if any(a.dtype != np.float32 or a.shape != w_target.shape or not a.flags.c_contiguous for a in arrays):
        raise ValueError("one_sided_write needs C-contiguous float32 arrays of one shape")
    if w_max.shape != (w_target.shape[0],) or w_max.dtype != np.float32:
        raise ValueError(f"w_max must be float32 of shape ({w_target.shape[0]},)")
    one_sided_write_kernel(w_target, w_max, np.float32(gmax_uS), g_plus, g_minus, g_eff, w_out)

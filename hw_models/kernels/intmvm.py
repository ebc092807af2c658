"""Integer matrix products of fixed-point codes: int8/int16 a (N, K) @ b (K, M) -> exact int64,
whole or as per-row-tile partial sums (crossbars digitizing each tile), plus the exact running-sum
accumulator-overflow check.

Two paths, both exact:
  "blas"  float32 BLAS on the codes, used only when provably exact: every partial sum of any
          subset of products, in any order BLAS may use (blocking, FMA), is an integer of
          magnitude <= K * max|a| * max|b|; if that bound is <= 2**24 every such integer is a
          float32, so no addition rounds.  The actual maxima of the operands are used.
  "int64" a numba kernel, parallel over rows, loop order n -> k -> m (row of b and row of the
          output contiguous in the inner loop), codes widened to int64 before multiplying.
"auto" takes "blas" when exact and "int64" otherwise.
"""

from __future__ import annotations

import numpy as np

from hw_models.blas import matmul

from hw_models.kernels._jit import njit_fixed_parallel, prange

BLAS_EXACT_LIMIT = 2 ** 24  # float32 has a 24-bit significand: all integers up to 2**24 are exact
INT64_LIMIT = 2 ** 63 - 1
CODE_DTYPES = (np.dtype(np.int8), np.dtype(np.int16))
PATHS = ("auto", "blas", "int64")


# ---- public level ---------------------------------------------------------------------------
def max_abs_code(c: np.ndarray) -> int:
    """max |c| as a Python int (no int8 overflow at -128); 0 for an empty array."""
    if c.size == 0:
        return 0
    return max(int(c.max()), -int(c.min()))


def product_bound(a: np.ndarray, b: np.ndarray, k: int | None = None) -> int:
    """Bound on |any partial sum| of a @ b over k (default: all K) terms: k * max|a| * max|b|."""
    k = a.shape[1] if k is None else k
    return k * max_abs_code(a) * max_abs_code(b)


def blas_is_exact(a: np.ndarray, b: np.ndarray, k: int | None = None) -> bool:
    """True when float32 BLAS provably gives the exact integer product (see module docstring)."""
    return product_bound(a, b, k) <= BLAS_EXACT_LIMIT


def _check_codes(a, b) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    for name, c in (("a", a), ("b", b)):
        if c.dtype not in CODE_DTYPES:
            raise TypeError(f"{name} must hold int8 or int16 codes, got dtype {c.dtype}")
        if c.ndim != 2:
            raise ValueError(f"{name} must be 2-D, got shape {c.shape}")
    if a.shape[1] != b.shape[0]:
        raise ValueError(f"inner dimensions differ: a {a.shape} @ b {b.shape}")
    if product_bound(a, b) > INT64_LIMIT:
        raise OverflowError(f"a @ b may exceed int64 (K={a.shape[1]})")
    return a, b


def _choose_path(path: str, exact: bool) -> str:
    if path not in PATHS:
        raise ValueError(f"path must be one of {PATHS}, got {path!r}")
    if path == "blas" and not exact:
        raise ValueError("path='blas' is not exact here: K * max|a| * max|b| > 2**24; use 'int64' or 'auto'")
    if path == "auto":
        return "blas" if exact else "int64"
    return path


def _blas(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return matmul(a.astype(np.float32), b.astype(np.float32)).astype(np.int64)


def _as_int16(c: np.ndarray) -> np.ndarray:
    # one kernel specialization for int8 and int16 codes (the widening copy is O(NK + KM))
    return np.ascontiguousarray(c, dtype=np.int16)


def int_matmul(a, b, path: str = "auto") -> np.ndarray:
    """Exact a (N, K) @ b (K, M) of int8/int16 codes -> int64 (N, M)."""
    a, b = _check_codes(a, b)
    if _choose_path(path, blas_is_exact(a, b)) == "blas":
        return _blas(a, b)
    n, k = a.shape
    out = np.zeros((1, n, b.shape[1]), dtype=np.int64)
    tiled_matmul_kernel(_as_int16(a), _as_int16(b), max(k, 1), out)
    return out[0]


def tiled_int_matmul(a, b, tile_rows: int, path: str = "auto") -> np.ndarray:
    """Partial sums per tile of `tile_rows` inputs: out[t] = a[:, t*r:(t+1)*r] @ b[t*r:(t+1)*r],
    shape (ceil(K / r), N, M) int64; the last tile is shorter when r does not divide K (K = 0 gives
    0 tiles).  Sum over axis 0 equals int_matmul(a, b)."""
    a, b = _check_codes(a, b)
    if isinstance(tile_rows, bool) or not isinstance(tile_rows, (int, np.integer)) or tile_rows < 1:
        raise ValueError(f"tile_rows must be an int >= 1, got {tile_rows!r}")
    tile_rows = int(tile_rows)
    n, k = a.shape
    m = b.shape[1]
    n_tiles = -(-k // tile_rows)
    if _choose_path(path, blas_is_exact(a, b, min(k, tile_rows))) == "blas":
        out = np.empty((n_tiles, n, m), dtype=np.int64)
        a32, b32 = a.astype(np.float32), b.astype(np.float32)
        for t in range(n_tiles):
            sl = slice(t * tile_rows, min((t + 1) * tile_rows, k))
            out[t] = a32[:, sl] @ b32[sl]
        return out
    out = np.zeros((n_tiles, n, m), dtype=np.int64)
    tiled_matmul_kernel(_as_int16(a), _as_int16(b), tile_rows, out)
    return out


def checked_int_matmul(a, b, acc_bits: int) -> tuple[np.ndarray, int]:
    """Exact a @ b (int64) and the number of outputs whose RUNNING partial sum, accumulated in
    k = 0, 1, ..., K-1 order as a sequential MAC does, ever left [-2**(acc_bits-1),
    2**(acc_bits-1) - 1].  Always runs the exact kernel; callers check the analytic bound first."""
    a, b = _check_codes(a, b)
    if isinstance(acc_bits, bool) or not isinstance(acc_bits, (int, np.integer)) or not 2 <= acc_bits <= 63:
        raise ValueError(f"acc_bits must be an int in 2..63, got {acc_bits!r}")
    out = np.zeros((a.shape[0], b.shape[1]), dtype=np.int64)
    lo, hi = -(2 ** (int(acc_bits) - 1)), 2 ** (int(acc_bits) - 1) - 1
    n_overflow = checked_matmul_kernel(_as_int16(a), _as_int16(b), np.int64(lo), np.int64(hi), out)
    return out, int(n_overflow)


# ---- kernels --------------------------------------------------------------------------------
@njit_fixed_parallel
def tiled_matmul_kernel(a, b, tile_rows, out):
    """out[t, n, m] += sum over k in tile t of a[n, k] * b[k, m], in int64 (out zeroed by caller)."""
    n_rows, k_total = a.shape
    m_cols = b.shape[1]
    n_tiles = out.shape[0]
    for n in prange(n_rows):
        for t in range(n_tiles):
            k_end = min((t + 1) * tile_rows, k_total)
            for k in range(t * tile_rows, k_end):
                av = np.int64(a[n, k])
                if av == 0:
                    continue
                for m in range(m_cols):
                    out[t, n, m] += av * np.int64(b[k, m])


@njit_fixed_parallel
def checked_matmul_kernel(a, b, lo, hi, out):
    """out = a @ b in int64 (out zeroed by caller), accumulating k in order; returns how many
    outputs had a running partial sum outside [lo, hi]."""
    n_rows, k_total = a.shape
    m_cols = b.shape[1]
    n_overflow = 0
    for n in prange(n_rows):
        left = np.zeros(m_cols, dtype=np.bool_)
        for k in range(k_total):
            av = np.int64(a[n, k])
            for m in range(m_cols):
                acc = out[n, m] + av * np.int64(b[k, m])
                out[n, m] = acc
                if acc < lo or acc > hi:
                    left[m] = True
        row_count = 0
        for m in range(m_cols):
            if left[m]:
                row_count += 1
        n_overflow += row_count
    return n_overflow

"""The one place that sets numba options.

`njit_fixed` for integer / fixed-point paths (no fastmath: results must be bit-exact with the
numpy twins), `njit_float` for float paths that may reassociate, `njit_inline` for tiny scalar
helpers.  All kernels are cached on disk.  With NUMBA_DISABLE_JIT=1 they run as plain Python.
"""

from __future__ import annotations

import numba

prange = numba.prange

njit_fixed = numba.njit(cache=True, fastmath=False, parallel=False, nogil=True)
njit_fixed_parallel = numba.njit(cache=True, fastmath=False, parallel=True, nogil=True)
njit_float = numba.njit(cache=True, fastmath=False, parallel=True, nogil=True)
njit_inline = numba.njit(inline="always", cache=True, fastmath=False, nogil=True)

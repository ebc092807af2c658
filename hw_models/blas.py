"""float32 matrix products of numpy arrays through torch's BLAS.

One thread pool for the whole process: alternating numpy's OpenBLAS pool with torch's on this
2-core machine made a pair of (256x1000)@(1000x1000) products take 8.0 ms instead of 5.3 ms
(measured), and the simulator alternates with torch at every layer.  Zero-copy both ways.
"""

from __future__ import annotations

import contextlib

import numpy as np
import torch


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """a @ b for float32 arrays (transposed views are fine: no copy is made for them)."""
    return torch.matmul(torch.from_numpy(a), torch.from_numpy(b)).numpy()


def set_threads(n: int) -> None:
    """Use n threads in torch's pool and in numba's parallel kernels (at most NUMBA_NUM_THREADS).
    Both pools must be limited: numba's OpenMP threads spin after each parallel kernel, and runs
    sharing the cores with idle-spinning pools ran 1.7x slower (DF step on sim, 3 processes on 2
    cores: 14.8 s vs 8.9 s for the same 3000-sample epoch, measured)."""
    import numba
    torch.set_num_threads(n)
    numba.set_num_threads(max(1, min(n, numba.config.NUMBA_NUM_THREADS)))


@contextlib.contextmanager
def threads(n: int):
    """set_threads(n) for the duration of a with-block (n = 0: leave the pools as they are); the
    caller's thread counts come back afterwards, also after an exception."""
    if not n:
        yield
        return
    import numba
    before = torch.get_num_threads(), numba.get_num_threads()
    set_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before[0])
        numba.set_num_threads(before[1])

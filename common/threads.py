"""The thread environment of every onchip-ff process: idle OpenMP threads (torch's and numba's
libgomp) wait passively instead of spinning.

Spinning idle threads steal the cores of whatever shares the machine: two 1-thread FF runs side by
side on a 2-core machine took 21.3 / 22.1 s each, 8.6 / 8.6 s with OMP_WAIT_POLICY=PASSIVE; one
epoch on sim/pcm beside two busy loops took 3.6x its time alone, 1.65x with it (measured).
libgomp reads the variable when it loads, so it is set (unless the user exported a value) when
hw_models or onchip_ff is imported and by the CLI before torch or numba start.
"""

from __future__ import annotations

import os

PASSIVE_ENV = {"OMP_WAIT_POLICY": "PASSIVE"}


def passive_threads() -> None:
    """Set PASSIVE_ENV in this process's environment (a value already set wins); it reaches the
    OpenMP runtimes loaded afterwards and every child process."""
    for name, value in PASSIVE_ENV.items():
        os.environ.setdefault(name, value)

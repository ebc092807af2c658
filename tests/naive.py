"""Slow, obviously-correct numpy/python twins of every numba kernel (compared in tests).

Each twin is named after its kernel with a `naive_` prefix and says which tolerance the
comparison uses (bit-exact for integer / fixed-point paths).
"""

from __future__ import annotations

import numpy as np  # noqa: F401

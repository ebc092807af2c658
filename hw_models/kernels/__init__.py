"""Numba kernels only; every kernel has a slow numpy twin in tests/naive.py."""

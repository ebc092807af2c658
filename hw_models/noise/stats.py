"""Closed-form moments of rectified Gaussians, used by the noise models' documented `moments()`.

With Y ~ N(mu, sd^2), a = mu / sd, Phi/phi the standard normal cdf/pdf:
  X = max(Y, 0):         E[X] = mu Phi(a) + sd phi(a),  E[X^2] = (mu^2 + sd^2) Phi(a) + mu sd phi(a)
  E[exp(-c max(Y, 0))] = Phi(-a) + exp(-c mu + c^2 sd^2 / 2) Phi(a - c sd)     (c >= 0)
(the second by completing the square in the integral over y > 0).  sd = 0 is the point mass.
"""

from __future__ import annotations

import numpy as np
from scipy.special import log_ndtr, ndtr

_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


def rectified_normal(mu, sd) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) of max(Y, 0), Y ~ N(mu, sd^2), elementwise in float64; sd >= 0."""
    mu, sd = np.broadcast_arrays(np.asarray(mu, np.float64), np.asarray(sd, np.float64))
    noisy = sd > 0
    s = np.where(noisy, sd, 1.0)
    a = mu / s
    pa, fa = ndtr(a), np.exp(-0.5 * a * a) * _INV_SQRT_2PI
    m1 = mu * pa + s * fa
    m2 = (mu * mu + s * s) * pa + mu * s * fa
    std = np.sqrt(np.maximum(m2 - m1 * m1, 0.0))
    return np.where(noisy, m1, np.maximum(mu, 0.0)), np.where(noisy, std, 0.0)


def rectified_normal_exp(c, mu, sd) -> np.ndarray:
    """E[exp(-c max(Y, 0))], Y ~ N(mu, sd^2), elementwise in float64; c >= 0, sd >= 0."""
    c, mu, sd = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (c, mu, sd)))
    noisy = sd > 0
    s = np.where(noisy, sd, 1.0)
    a = mu / s
    tail = np.exp(-c * mu + 0.5 * (c * s) ** 2 + log_ndtr(a - c * s))
    return np.where(noisy, ndtr(-a) + tail, np.exp(-c * np.maximum(mu, 0.0)))

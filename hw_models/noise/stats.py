"""Closed-form moments of rectified Gaussians, used by the noise models' documented `moments()`.

With Y ~ N(mu, sd^2), a = mu / sd, Phi/phi the standard normal cdf/pdf:
  X = max(Y, 0):         E[X] = mu Phi(a) + sd phi(a),  E[X^2] = (mu^2 + sd^2) Phi(a) + mu sd phi(a)
  E[exp(-c max(Y, 0))] = Phi(-a) + exp(-c mu + c^2 sd^2 / 2) Phi(a - c sd)     (c >= 0)
  E[exp(-c |Y|)]        = exp(-c mu + c^2 sd^2 / 2) Phi(a - c sd) + exp(c mu + c^2 sd^2 / 2) Phi(-a - c sd)
(the last two by completing the square in the integrals over y > 0 and, with y -> -y, over y < 0).
sd = 0 is the point mass.
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


def folded_normal_exp(c, mu, sd) -> np.ndarray:
    """E[exp(-c |Y|)], Y ~ N(mu, sd^2), elementwise in float64; c >= 0, sd >= 0."""
    c, mu, sd = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (c, mu, sd)))
    noisy = sd > 0
    s = np.where(noisy, sd, 1.0)
    a = mu / s
    half_var = 0.5 * (c * s) ** 2
    pos = np.exp(-c * mu + half_var + log_ndtr(a - c * s))
    neg = np.exp(c * mu + half_var + log_ndtr(-a - c * s))
    return np.where(noisy, pos + neg, np.exp(-c * np.abs(mu)))


_GL_NODES, _GL_WEIGHTS = np.polynomial.legendre.leggauss(64)
_Z_SPAN = 8.5  # integrate Y over mu +- 8.5 sd (the tails beyond hold < 2e-17 of the mass)


def rectified_normal_expect(f, mu: float, sd: float, kinks=()) -> float:
    """E[f(max(Y, 0))], Y ~ N(mu, sd^2) (scalars; f vectorized over float64 arrays): f(0) P(Y <= 0)
    plus 64-node Gauss-Legendre panels of f(y) pdf(y) over (0, mu + 8.5 sd], split at `kinks`
    (where f is not smooth), accurate to ~1e-12 relative for f smooth between kinks."""
    mu, sd = float(mu), float(sd)
    if sd == 0:
        return float(f(np.array([max(mu, 0.0)]))[0])
    lo, hi = max(0.0, mu - _Z_SPAN * sd), mu + _Z_SPAN * sd
    total = float(ndtr(-mu / sd)) * float(f(np.zeros(1))[0])
    if hi <= 0:
        return total
    edges = sorted({lo, hi, *(float(k) for k in kinks if lo < k < hi)})
    for a, b in zip(edges[:-1], edges[1:]):
        y = 0.5 * (b - a) * _GL_NODES + 0.5 * (a + b)
        z = (y - mu) / sd
        pdf = np.exp(-0.5 * z * z) * (_INV_SQRT_2PI / sd)
        total += 0.5 * (b - a) * float(np.sum(_GL_WEIGHTS * f(y) * pdf))
    return total

"""Noise model "pcm": phase-change memory as in aihwkit's PCMLikeNoiseModel, i.e. programming noise
(`program`), power-law conductance drift (`drift`) and accumulated 1/f read noise (`read`).

Source: IBM/aihwkit src/aihwkit/inference/noise/pcm.py, read at commit 4545f11b (lines cited below),
the statistical PCM model of Nandakumar et al. (ICECS 2019; "Mixed-precision deep learning based on
computational memory", Front. Neurosci. 2020) used by Joshi et al., "Accurate deep neural network
inference using computational phase-change memory", Nature Comm. 11, 2473 (2020).  Times t are
seconds since programming; g = G / gmax is the normalized conductance, gmax the crossbar's.

program (pcm.py:100-118):
  sigma_prog = prog_noise_scale * max(c0 + c1 g + c2 g^2, 0) * gmax / prog_coeff_gmax_ref_uS   [uS]
  (c0, c1, c2) = prog_coeff_uS = (0.26348, 1.9650, -1.1731) uS fitted at gmax = 25 uS (pcm.py:89-90)
  G_prog = max(G_target + sigma_prog * xi, 0)                     (clamp at 0 as pcm.py:116)
  moments: rectified Gaussian, s = sigma_prog, a = G_target / s: mean G_target Phi(a) + s phi(a),
  E[G_prog^2] = (G_target^2 + s^2) Phi(a) + G_target s phi(a) (stats.py); for G_target >> s simply
  mean G_target, std s.  prog_noise_scale = 0: G_prog = G_target.
  Also drawn here: nu = max(drift_nu_mean + drift_nu_std * xi, 0) per device -> state["nu"], and the
  1/f amplitude of the target, q (below) -> state["pcm.read_q"].
drift (pcm.py:138-144):
  G(t) = G_prog * (t / t0)^(-nu)  for t > t0,   G(t) = G_prog for t <= t0
  moments over the nu law, with L = ln(t / t0): mean G E[e^(-L nu)], std |G| sqrt(E[e^(-2L nu)] -
  E[e^(-L nu)]^2), E[e^(-c nu)] = Phi(-m/s) + exp(-c m + c^2 s^2 / 2) Phi(m/s - c s) (stats.py).
read (pcm.py:146-153):
  q = min(read_1f_coeff / max(g_target^read_1f_exponent, 1e-3), read_1f_max)   g_target = G_target/gmax
  read_sigma = read_noise_scale * |G(t)| * q * sqrt(max(ln((t + t_read) / (2 t_read)), 0))
  with read_1f_coeff = 0.0088, read_1f_exponent = 0.65, read_1f_max = 0.2, t_read = 250 ns; the
  crossbar adds N(0, read_sigma^2) per device to its reads.  moments: mean G, std read_sigma, for a
  device programmed to target G (q of the target) and read at conductance G.

The program stage runs as one fused numba pass (hw_models/kernels/pcm.py, pre-drawn float32 normals:
nu's first, then the programming noise's); its float32 arithmetic is the formulas above op for op,
with q's power from libm's powf (<= 0.51 ulp; q can differ by an ulp from numpy's float32 power).

Where this differs from aihwkit (deliberately, per the project's formulas):
  * nu: aihwkit draws nu = |mu(g) + sigma(g) xi| with a g-dependent mu(g) = clip(-0.0155 ln g + 0.0244,
    0.049, 0.1), sigma(g) = clip(-0.0125 ln g - 0.0059, 0.008, 0.045) (pcm.py:120-130); here mu, sigma
    are constants (drift_nu_mean, drift_nu_std, defaults ~ that fit at g = 0.2) and negative draws
    are clipped to 0, not reflected.
  * time origin: aihwkit's t_inference counts from t0 (t = t_inference + t0, pcm.py:138); here t is
    since programming, so aihwkit's t_inference = 0 is t = t0 = 20 s (the pcm preset's read time).
  * q: aihwkit evaluates q at the programmed G_prog (with programming noise, pcm.py:148); here at the
    target, stored at program() time, so that moments() is a function of (G, gmax, t).
  * read noise: aihwkit adds the accumulated 1/f noise once, when drift is applied, as a fixed
    perturbation of the weights (then clamps at 0, pcm.py:152-158); here it is a fresh draw at every
    read (same variance per read, no correlation between reads, no clamp).
  * max(poly, 0): aihwkit does not clip sigma_prog (the default polynomial is > 0 for 0 <= g < 1.80).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hw_models.kernels.pcm import pcm_program
from hw_models.noise.base import NoiseModel, check
from hw_models.noise.registry import register
from hw_models.noise.stats import rectified_normal, rectified_normal_exp

F32 = np.float32
NU_KEY = "nu"
Q_KEY = "pcm.read_q"
G_POW_FLOOR = 1e-3  # floor of g^exponent in q, avoids 1/0 at g = 0 (pcm.py:148)


@register
@dataclass(frozen=True)
class PCM(NoiseModel):
    """PCM device (programming noise, drift, 1/f read noise); defaults are aihwkit's PCMLikeNoiseModel
    with the drift exponent law constant (see module docstring)."""

    name: ClassVar[str] = "pcm"
    citation: ClassVar[str] = ("aihwkit PCMLikeNoiseModel, src/aihwkit/inference/noise/pcm.py:27-158 "
                               "(Nandakumar et al., ICECS 2019 and Front. Neurosci. 2020; Joshi et al., "
                               "Nature Comm. 11, 2473, 2020)")
    stages: ClassVar[frozenset[str]] = frozenset({"program", "drift", "read"})

    prog_coeff_uS: tuple[float, ...] = (0.26348, 1.9650, -1.1731)  # sigma_prog polynomial in g, uS
    prog_coeff_gmax_ref_uS: float = 25.0  # gmax at which prog_coeff_uS were fitted
    prog_noise_scale: float = 1.0  # scale of the programming noise (0 = exact programming)
    drift_nu_mean: float = 0.05  # mean drift exponent
    drift_nu_std: float = 0.015  # device-to-device std of the drift exponent
    t0_s: float = 20.0  # drift reference time (first read after programming)
    t_read_s: float = 250e-9  # 1/f noise parameter (read duration)
    read_1f_coeff: float = 0.0088  # 1/f amplitude q = min(coeff / g^exponent, max)
    read_1f_exponent: float = 0.65
    read_1f_max: float = 0.2
    read_noise_scale: float = 1.0  # scale of the 1/f read noise (0 = none)

    def __post_init__(self) -> None:
        p = f"hardware.{self.name}."
        c = self.prog_coeff_uS
        check(isinstance(c, tuple) and len(c) >= 1 and all(math.isfinite(x) for x in c),
              p + "prog_coeff_uS", "a non-empty list of finite numbers", c)
        check(0 < self.prog_coeff_gmax_ref_uS < math.inf, p + "prog_coeff_gmax_ref_uS", "> 0",
              self.prog_coeff_gmax_ref_uS)
        for f in ("prog_noise_scale", "drift_nu_mean", "drift_nu_std", "read_1f_coeff",
                  "read_1f_exponent", "read_1f_max", "read_noise_scale"):
            check(0 <= getattr(self, f) < math.inf, p + f, ">= 0 and finite", getattr(self, f))
        for f in ("t0_s", "t_read_s"):
            check(0 < getattr(self, f) < math.inf, p + f, "> 0 and finite", getattr(self, f))

    # ---- the formulas (float64 for moments, float32 in the stages) ------------------------------
    def _sigma_prog_uS(self, g_uS, gmax_uS, dtype=F32) -> np.ndarray:
        gmax = np.asarray(gmax_uS, dtype)
        x = np.asarray(g_uS, dtype) / gmax
        poly = np.zeros_like(x) + dtype(self.prog_coeff_uS[-1])
        for coeff in self.prog_coeff_uS[-2::-1]:  # Horner
            poly = poly * x + dtype(coeff)
        scale = dtype(self.prog_noise_scale) * gmax / dtype(self.prog_coeff_gmax_ref_uS)
        return (np.maximum(poly, dtype(0)) * scale).astype(dtype)

    def _q(self, g_uS, gmax_uS, dtype=F32) -> np.ndarray:
        g = np.abs(np.asarray(g_uS, dtype)) / np.asarray(gmax_uS, dtype)
        den = np.maximum(g ** dtype(self.read_1f_exponent), dtype(G_POW_FLOOR))
        return np.minimum(dtype(self.read_1f_coeff) / den, dtype(self.read_1f_max)).astype(dtype)

    def _time_factor(self, t_s: float) -> float:
        """read_noise_scale * sqrt(max(ln((t + t_read) / (2 t_read)), 0))."""
        lg = math.log((t_s + self.t_read_s) / (2.0 * self.t_read_s))
        return self.read_noise_scale * math.sqrt(max(lg, 0.0))

    @property
    def _drifts(self) -> bool:
        return self.drift_nu_mean > 0 or self.drift_nu_std > 0

    # ---- stages ---------------------------------------------------------------------------------
    def program(self, g_target_uS, gmax_uS, rng, state=None):
        """One fused pass (hw_models/kernels/pcm.py) of the formulas above; draws nu's normals, then
        the programming noise's, float32, one per device each."""
        g, nu, q = pcm_program(
            g_target_uS, gmax_uS, rng, prog_coeff_uS=self.prog_coeff_uS,
            prog_noise_scale=self.prog_noise_scale, prog_coeff_gmax_ref_uS=self.prog_coeff_gmax_ref_uS,
            drift_nu_mean=self.drift_nu_mean, drift_nu_std=self.drift_nu_std,
            read_1f_coeff=self.read_1f_coeff, read_1f_exponent=self.read_1f_exponent,
            read_1f_max=self.read_1f_max, q_floor=G_POW_FLOOR, draw_nu=self._drifts,
            draw_q=self.read_noise_scale > 0)
        state: dict[str, np.ndarray] = {}
        if q is not None:
            state[Q_KEY] = q
        if nu is not None:
            state[NU_KEY] = nu
        return g, state

    def drift(self, g_prog_uS, state, t_s):
        if t_s <= self.t0_s or NU_KEY not in state:
            return g_prog_uS
        log_ratio = F32(math.log(t_s / self.t0_s))
        return (np.asarray(g_prog_uS, F32) * np.exp(-state[NU_KEY] * log_ratio)).astype(F32)

    def read_sigma_uS(self, g_uS, state, t_s):
        factor = self._time_factor(t_s)
        if factor == 0:
            return None
        sigma = np.abs(np.asarray(g_uS, F32))  # (factor |G|) q, as written above, in place
        sigma *= F32(factor)
        sigma *= state[Q_KEY]
        return sigma

    # ---- documented statistics ------------------------------------------------------------------
    def moments(self, stage, g_uS, gmax_uS, t_s=0.0, dg_uS=None):
        """program: rectified Gaussian of mean G, std sigma_prog(G); drift: mean G E[e^(-L nu)], std
        |G| sqrt(E[e^(-2L nu)] - E[e^(-L nu)]^2), L = ln(t/t0) (identity for t <= t0); read: mean G,
        std read_sigma (formulas in the module docstring).  update: the ideal device's."""
        g = np.asarray(g_uS, np.float64)
        if stage == "program":
            if self.prog_noise_scale == 0:
                return g, np.zeros_like(g)
            return rectified_normal(g, self._sigma_prog_uS(g, gmax_uS, np.float64))
        if stage == "drift":
            if t_s <= self.t0_s or not self._drifts:
                return g, np.zeros_like(g)
            c = math.log(t_s / self.t0_s)
            m1 = rectified_normal_exp(c, self.drift_nu_mean, self.drift_nu_std)
            m2 = rectified_normal_exp(2 * c, self.drift_nu_mean, self.drift_nu_std)
            return g * m1, np.abs(g) * np.sqrt(np.maximum(m2 - m1 * m1, 0.0))
        if stage == "read":
            std = self._time_factor(t_s) * np.abs(g) * self._q(g, gmax_uS, np.float64)
            return g, std
        return super().moments(stage, g_uS, gmax_uS, t_s, dg_uS)

    @classmethod
    def zero(cls) -> "PCM":
        return cls(prog_noise_scale=0.0, drift_nu_mean=0.0, drift_nu_std=0.0, read_noise_scale=0.0)

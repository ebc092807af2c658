"""Noise model "pcm": phase-change memory as aihwkit's PCMLikeNoiseModel — programming noise
(`program`), power-law drift with a conductance-dependent exponent (`drift`) and accumulated 1/f
read noise (`read`), frozen per inference time by default.

Source: IBM/aihwkit src/aihwkit/inference/noise/pcm.py, read at commit 4545f11b (identical in the
1.2.0 wheel; lines cited below), written here from its formulas, and the statistical PCM model it
implements: Nandakumar et al., "A phase-change memory model for neuromorphic computing", J. Appl.
Phys. 124, 152135 (2018) and ICECS 2019; Joshi et al., "Accurate deep neural network inference
using computational phase-change memory", Nature Comm. 11, 2473 (2020).  Conductances in uS;
g = G / gmax the normalized conductance; t_s the time since programming ended (aihwkit's
t_inference), t = t_s + t0 the time the drift law counts (pcm.py:138).

program (pcm.py:101-118, 121-131; kernel hw_models/kernels/pcm.py):
  sigma_prog = prog_noise_scale * (c0 + c1 g + c2 g^2) * gmax / prog_coeff_gmax_ref_uS    [uS]
  (c0, c1, c2) = (0.26348, 1.9650, -1.1731) uS fitted at gmax = 25 uS (pcm.py:89-90)
  G_prog = max(G_target + sigma_prog * xi, 0)
  nu, drawn once per programming, law "aihwkit" (default):
    nu = drift_scale * |mu(g) + sigma(g) xi|,  g = max(|G_target| / gmax, 1e-7)
    mu(g) = clip(-0.0155 ln g + 0.0244, 0.049, 0.1),  sigma(g) = clip(-0.0125 ln g - 0.0059, 0.008, 0.045)
  law "constant" (this project's earlier law): nu = drift_scale * max(N(drift_nu_mean, drift_nu_std^2), 0)
  q = min(0.0088 / max(|G_prog / gmax|^0.65, 1e-3), 0.2)   1/f amplitude of the programmed G (pcm.py:148)
  state: "nu", "pcm.read_q".
drift (pcm.py:140-144):  G(t) = G_prog (t / t0)^(-nu) for t > t0, i.e. t_s > 0; G_prog at t_s <= 0.
read (pcm.py:147-158):
  read_sigma = read_noise_scale * |G(t)| * q * sqrt(ln((t + t_read) / (2 t_read)))
  read_noise = "frozen" (default; aihwkit): the crossbar draws one N(0, read_sigma^2) per device
  whenever it evaluates the devices at a time (set_time, programming, a write of those devices)
  and keeps G = max(G(t) + read_sigma xi, 0) until the next; "per_read": a fresh draw at every
  MVM (no clamp), for short-term read noise during on-chip training.
moments: program a rectified Gaussian; drift over nu's law with L = ln(t / t0): E[e^(-c nu)] for
  the folded (aihwkit) or rectified (constant) normal, stats.py; read: std = read_sigma with q
  averaged over G_prog, E[q(G_prog)^2]^(1/2); conductance_moments(): the conductance a deployed
  device holds at t_s, all stages together (derivation in its docstring).

Remaining differences from aihwkit (each measured by `onchip-ff crosscheck aihwkit`, README):
  * pairs: aihwkit programs both devices of a pair, then rebuilds one-sided conductances from the
    programmed weights (rescaled so that max |w| maps to gmax again, converter/conductance.py:
    54-64) before drift and read noise (base.py:117-121): the off device's programming error is
    merged into the on device, which drifts for both.  Here both devices are kept and drift with
    their own nu (the off device, target 0, has nu's law at g = 1e-7: mean 0.1); q is evaluated at
    each device's own programmed conductance, not at the rescaled one.
  * max(poly, 0): sigma_prog is clipped at 0 here (the default polynomial is > 0 for 0 <= g < 1.80).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar

import numpy as np

from hw_models.kernels.pcm import (G_REL_FLOOR, MU_MAX, MU_MIN, MU_OFFSET, MU_SLOPE, NU_AIHWKIT,
                                   NU_CONSTANT, NU_NONE, SD_MAX, SD_MIN, SD_OFFSET, SD_SLOPE,
                                   pcm_program)
from common.coerce import check, choice
from hw_models.noise.base import NoiseModel
from hw_models.noise.registry import register
from hw_models.noise.stats import (folded_normal_exp, rectified_normal, rectified_normal_exp,
                                   rectified_normal_expect)

F32 = np.float32
NU_KEY = "nu"
Q_KEY = "pcm.read_q"
G_POW_FLOOR = 1e-3  # floor of g^exponent in q, avoids 1/0 at g = 0 (pcm.py:148)
DRIFT_LAWS = ("aihwkit", "constant")
READ_NOISE = ("frozen", "per_read")
CONSTANT_NU = (0.05, 0.015)  # defaults of drift_nu_mean, drift_nu_std (law "constant" only)


@register
@dataclass(frozen=True)
class PCM(NoiseModel):
    """PCM device (programming noise, drift, 1/f read noise); defaults are aihwkit's
    PCMLikeNoiseModel with gmax 25 uS (formulas and remaining differences: module docstring)."""

    name: ClassVar[str] = "pcm"
    citation: ClassVar[str] = ("aihwkit PCMLikeNoiseModel, src/aihwkit/inference/noise/pcm.py:27-158 "
                               "(Nandakumar et al., J. Appl. Phys. 2018 and ICECS 2019; Joshi et al., "
                               "Nature Comm. 11, 2473, 2020)")
    stages: ClassVar[frozenset[str]] = frozenset({"program", "drift", "read"})

    prog_coeff_uS: tuple[float, ...] = (0.26348, 1.9650, -1.1731)  # sigma_prog polynomial in g, uS
    prog_coeff_gmax_ref_uS: float = 25.0  # gmax at which prog_coeff_uS were fitted
    prog_noise_scale: float = 1.0  # scale of the programming noise (0 = exact programming)
    drift_law: str = "aihwkit"  # "aihwkit": g-dependent |N(mu(g), sigma(g)^2)|; "constant": below
    drift_scale: float = 1.0  # nu is multiplied by this (aihwkit drift_scale; 0 = no drift)
    drift_nu_mean: float = CONSTANT_NU[0]  # drift_law "constant": mean drift exponent
    drift_nu_std: float = CONSTANT_NU[1]  # drift_law "constant": device-to-device std of nu
    t0_s: float = 20.0  # drift reference time: t = t_s + t0 (aihwkit t_0)
    t_read_s: float = 250e-9  # 1/f noise parameter (read duration)
    read_1f_coeff: float = 0.0088  # 1/f amplitude q = min(coeff / g^exponent, max)
    read_1f_exponent: float = 0.65
    read_1f_max: float = 0.2
    read_noise_scale: float = 1.0  # scale of the 1/f read noise (0 = none)
    read_noise: str = "frozen"  # "frozen": drawn once per evaluation time (aihwkit); "per_read"

    def __post_init__(self) -> None:
        p = f"hardware.{self.name}."
        c = self.prog_coeff_uS
        check(isinstance(c, tuple) and len(c) >= 1 and all(math.isfinite(x) for x in c),
              p + "prog_coeff_uS", "a non-empty list of finite numbers", c)
        check(0 < self.prog_coeff_gmax_ref_uS < math.inf, p + "prog_coeff_gmax_ref_uS", "> 0",
              self.prog_coeff_gmax_ref_uS)
        for f in ("prog_noise_scale", "drift_scale", "drift_nu_mean", "drift_nu_std", "read_1f_coeff",
                  "read_1f_exponent", "read_1f_max", "read_noise_scale"):
            check(0 <= getattr(self, f) < math.inf, p + f, ">= 0 and finite", getattr(self, f))
        for f in ("t0_s", "t_read_s"):
            check(0 < getattr(self, f) < math.inf, p + f, "> 0 and finite", getattr(self, f))
        choice(p + "drift_law", self.drift_law, DRIFT_LAWS)
        choice(p + "read_noise", self.read_noise, READ_NOISE)
        check(self.drift_law == "constant" or (self.drift_nu_mean, self.drift_nu_std) == CONSTANT_NU,
              p + "drift_nu_mean/drift_nu_std",
              "left at their defaults unless drift_law = 'constant' (the 'aihwkit' law takes nu from "
              "the conductance; scale it with drift_scale)", (self.drift_nu_mean, self.drift_nu_std))

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

    def _q_kinks_uS(self, gmax_uS: float) -> tuple[float, ...]:
        """Conductances where q(G) has a kink (the q_max cap and the power floor)."""
        e = self.read_1f_exponent
        if e == 0:
            return ()
        return tuple(gmax_uS * v ** (1.0 / e) for v in (self.read_1f_coeff / self.read_1f_max, G_POW_FLOOR)
                     if v > 0)

    def _log_ratio(self, t_s: float) -> float:
        """L = ln((t_s + t0) / t0), the drift's log time (0 at and before the end of programming)."""
        return math.log((t_s + self.t0_s) / self.t0_s) if t_s > 0 else 0.0

    def _time_factor(self, t_s: float) -> float:
        """read_noise_scale * sqrt(max(ln((t_s + t0 + t_read) / (2 t_read)), 0))."""
        lg = math.log((max(t_s, 0.0) + self.t0_s + self.t_read_s) / (2.0 * self.t_read_s))
        return self.read_noise_scale * math.sqrt(max(lg, 0.0))

    @property
    def _nu_law(self) -> int:
        if self.drift_scale == 0:
            return NU_NONE
        if self.drift_law == "aihwkit":
            return NU_AIHWKIT
        return NU_CONSTANT if (self.drift_nu_mean > 0 or self.drift_nu_std > 0) else NU_NONE

    def nu_mean_std(self, g_target_uS, gmax_uS) -> tuple[np.ndarray, np.ndarray]:
        """(mu, sigma) of the normal whose |.| (aihwkit) or max(., 0) (constant) times drift_scale is
        nu, per target conductance, float64."""
        g = np.asarray(g_target_uS, np.float64)
        if self.drift_law == "constant":
            return np.full_like(g, self.drift_nu_mean), np.full_like(g, self.drift_nu_std)
        log_g = np.log(np.maximum(np.abs(g) / np.float64(gmax_uS), G_REL_FLOOR))
        return (np.clip(MU_SLOPE * log_g + MU_OFFSET, MU_MIN, MU_MAX),
                np.clip(SD_SLOPE * log_g + SD_OFFSET, SD_MIN, SD_MAX))

    def _drift_factor_mean(self, c: float, g_target_uS, gmax_uS) -> np.ndarray:
        """E[exp(-c nu)] per target conductance."""
        g = np.asarray(g_target_uS, np.float64)
        if c == 0 or self._nu_law == NU_NONE:
            return np.ones_like(g)
        mu, sd = self.nu_mean_std(g, gmax_uS)
        law = folded_normal_exp if self.drift_law == "aihwkit" else rectified_normal_exp
        return law(c * self.drift_scale, mu, sd)

    def kernel_args(self) -> dict:
        """The model's parameters as the program kernels take them (kernels/pcm.py pcm_program,
        pcm_write_at)."""
        return dict(prog_coeff_uS=self.prog_coeff_uS, prog_noise_scale=self.prog_noise_scale,
                    prog_coeff_gmax_ref_uS=self.prog_coeff_gmax_ref_uS, nu_law=self._nu_law,
                    nu_scale=self.drift_scale, nu_mean=self.drift_nu_mean, nu_std=self.drift_nu_std,
                    read_1f_coeff=self.read_1f_coeff, read_1f_exponent=self.read_1f_exponent,
                    read_1f_max=self.read_1f_max, q_floor=G_POW_FLOOR, draw_q=self.read_noise_scale > 0)

    # ---- stages ---------------------------------------------------------------------------------
    @property
    def frozen_read(self) -> bool:
        return self.read_noise == "frozen"

    def program(self, g_target_uS, gmax_uS, rng, state=None):
        """One fused pass (hw_models/kernels/pcm.py) of the formulas above; draws nu's normals, then
        the programming noise's, float32, one per device each."""
        g, nu, q = pcm_program(g_target_uS, gmax_uS, rng, **self.kernel_args())
        state: dict[str, np.ndarray] = {}
        if q is not None:
            state[Q_KEY] = q
        if nu is not None:
            state[NU_KEY] = nu
        return g, state

    def drift(self, g_prog_uS, state, t_s):
        log_ratio = self._log_ratio(t_s)
        if log_ratio == 0 or NU_KEY not in state:
            return g_prog_uS
        factor = state[NU_KEY] * F32(-log_ratio)  # G_prog e^(-L nu), in place
        np.exp(factor, out=factor)
        factor *= np.asarray(g_prog_uS, F32)
        return factor

    def read_sigma_uS(self, g_uS, state, t_s):
        factor = self._time_factor(t_s)
        if factor == 0:
            return None
        sigma = np.abs(np.asarray(g_uS, F32))  # (factor |G|) q, as written above, in place
        sigma *= F32(factor)
        sigma *= state[Q_KEY]
        return sigma

    # ---- documented statistics ------------------------------------------------------------------
    def _expect_over_programming(self, f, g_uS: float, gmax_uS: float) -> float:
        """E[f(G_prog)] for one target g_uS (G_prog = max(g + sigma_prog xi, 0))."""
        sd = float(self._sigma_prog_uS(np.float64(g_uS), gmax_uS, np.float64))
        return rectified_normal_expect(f, g_uS, sd, self._q_kinks_uS(gmax_uS))

    def moments(self, stage, g_uS, gmax_uS, t_s=0.0, dg_uS=None):
        """program: rectified Gaussian of mean G, std sigma_prog(G); drift (of a device programmed to
        target G, applied to G): mean G E[e^(-L nu)], std |G| sqrt(E[e^(-2L nu)] - E[e^(-L nu)]^2),
        L = ln((t_s + t0) / t0); read (one draw at G, q of the device's programmed conductance):
        mean G, std read_sigma(G) with E[q(G_prog)^2]^(1/2) for q.  update: the ideal device's."""
        g = np.asarray(g_uS, np.float64)
        if stage == "program":
            if self.prog_noise_scale == 0:
                return g, np.zeros_like(g)
            return rectified_normal(g, self._sigma_prog_uS(g, gmax_uS, np.float64))
        if stage == "drift":
            c = self._log_ratio(t_s)
            m1 = self._drift_factor_mean(c, g, gmax_uS)
            m2 = self._drift_factor_mean(2 * c, g, gmax_uS)
            return g * m1, np.abs(g) * np.sqrt(np.maximum(m2 - m1 * m1, 0.0))
        if stage == "read":
            q_rms = np.array([math.sqrt(self._expect_over_programming(
                lambda x: self._q(x, gmax_uS, np.float64) ** 2, float(v), gmax_uS)) for v in g.ravel()])
            return g, self._time_factor(t_s) * np.abs(g) * q_rms.reshape(g.shape)
        return super().moments(stage, g_uS, gmax_uS, t_s, dg_uS)

    def conductance_moments(self, g_target_uS, gmax_uS: float, t_s: float) -> tuple[np.ndarray, np.ndarray]:
        """(mean, std), float64, of the conductance of a device programmed to g_target_uS as it is
        read t_s seconds after programming (program -> drift -> read noise), i.e. what aihwkit's
        program_weights + drift_weights(t_s) leave in a device.

        G = D max(1 + s xi, 0) ("frozen"; a "per_read" read is D (1 + s xi), unclamped), with
        D = G_prog e^(-L nu) >= 0 and s = T q(G_prog) (T = _time_factor(t_s)).  nu depends on the
        target alone, G_prog on the programming draw, xi on neither, so
          E[G]   = E[e^(-L nu)]  E_prog[G_prog   r1(s(G_prog))]
          E[G^2] = E[e^(-2L nu)] E_prog[G_prog^2 r2(s(G_prog))]
        with r1, r2 the first two moments of max(1 + s xi, 0) (stats.rectified_normal; 1 and 1 + s^2
        for a per-read draw) and E_prog over the rectified Gaussian G_prog (Gauss-Legendre panels
        split at q's kinks, stats.rectified_normal_expect)."""
        g = np.asarray(g_target_uS, np.float64)
        T = self._time_factor(t_s)
        frozen = self.frozen_read

        def r12(x):
            s = T * self._q(x, gmax_uS, np.float64)
            if not frozen:
                return np.ones_like(s), 1.0 + s * s
            m, sd = rectified_normal(np.ones_like(s), s)
            return m, sd * sd + m * m

        c = self._log_ratio(t_s)
        m_nu1, m_nu2 = self._drift_factor_mean(c, g, gmax_uS), self._drift_factor_mean(2 * c, g, gmax_uS)
        e1 = np.empty(g.size)
        e2 = np.empty(g.size)
        for i, v in enumerate(np.abs(g).ravel()):
            e1[i] = self._expect_over_programming(lambda x: x * r12(x)[0], float(v), gmax_uS)
            e2[i] = self._expect_over_programming(lambda x: x * x * r12(x)[1], float(v), gmax_uS)
        mean = m_nu1 * e1.reshape(g.shape)
        second = m_nu2 * e2.reshape(g.shape)
        return mean, np.sqrt(np.maximum(second - mean * mean, 0.0))

    @classmethod
    def zero(cls) -> "PCM":
        return cls(prog_noise_scale=0.0, drift_scale=0.0, read_noise_scale=0.0)

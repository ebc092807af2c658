"""Noise model "pulsed_constant": a constant-step pulsed device (aihwkit's ConstantStepDevice /
PulsedDevice) in the conductance domain, i.e. the `update` stage; plus the clipped-Gaussian moment
helpers that both pulsed models use to document their update statistics.

Sources (IBM/aihwkit, read at commit 4545f11b):
  src/aihwkit/simulator/configs/devices.py:166-185   dw_min, dw_min_dtod, dw_min_std
  src/aihwkit/simulator/configs/devices.py:216-243   up/down step d*dw_min*(1 + d*beta + s_dtod*xi),
                                                      beta = up_down + up_down_dtod*xi
  src/aihwkit/simulator/configs/devices.py:245-270   bounds w_min/w_max with relative d-t-d spread
  src/aihwkit/simulator/configs/devices.py:337-367   ConstantStepDevice: w -= dw^d (1 + s_ctoc xi), clip
  src/rpucuda/rpu_pulsed_device.cpp:594-649           populate(): the per-device draws, |step| and the
                                                      "turn off" of a device whose bounds cross
  src/rpucuda/rpu_constantstep_device.cpp:57-78       doDenseUpdate(): pulse by pulse, clip per pulse
  src/rpucuda/rpu_pulsed_device.h:461-472             dense loop over the coincidences of a device

Per device i of one polarity (state drawn at program time, nominal values when absent):
  gain_i = 1 + dw_min_dtod*xi1,  r_i = up_down_dtod*xi2
  step_up_i   = dw_min_uS * |gain_i + up_down + r_i|      (nominal: dw_min_uS * (1 + up_down))
  step_down_i = dw_min_uS * |gain_i - up_down - r_i|      (nominal: dw_min_uS * (1 - up_down))
  gmax_i = max(gmin_uS, gmax * (1 + gmax_dtod*xi3)),  gmax = gmax_uS or the crossbar's gmax
aihwkit's docstring splits the bias symmetrically as above; its C++ (rpu_pulsed_device.cpp:603-604)
instead shifts it so that the larger step is dw_min (up/down ratio 1/(1 - up_down) or
(1 + up_down)).  We follow the docstring: ratio (1 + up_down) / (1 - up_down), mean step dw_min.

update(g, dg): the periphery does not know a device's own step, so the pulse count uses the nominal
step, as aihwkit's update management does (parameters/training.py:36-40: A = B =
sqrt(lr / (dw_min * BL)), so E[coincidences] = |dw| / dw_min):
  n = floor(|dg| / dw_min_uS + u)     u ~ U[0, 1): stochastic rounding, E[n] = |dg| / dw_min_uS
                                      rounding = "nearest": u = 0.5 (round half up)
  g' = clip(g + sign(dg) * n * step_dir_i + step_dir_i * dw_min_std * sqrt(n) * xi, gmin_uS, gmax_i)
The sum of n independent per-pulse errors step*dw_min_std*xi_k is exactly N(0, n (step*dw_min_std)^2),
so one draw per device is exact in distribution.  aihwkit's stochastic pulse trains give a
coincidence count ~ Binomial(BL, p_x p_d) with the same mean and a larger variance (and at most
BL = desired_bl pulses, enums.py:177-202, training.py:25); stochastic rounding is the
minimum-variance unbiased count and has no BL cap.
Clipping: aihwkit clips after every pulse; we clip once, after the summed train.  The two agree
whenever the device starts within its bounds and every pulse moves in the requested direction
(1 + dw_min_std*xi_k > 0, all k): a monotone train that reaches a bound stays there under per-pulse
clipping, which is what the final clip gives.  They differ for a device starting outside its
bounds and, with probability about n * Phi(-1/dw_min_std), when a pulse moves backwards.
update_scheme = "pulse_train": aihwkit's stochastic pulse trains (Gokmen & Vlasov 2016; parameters
training.py:25-117, defaults desired_bl = 31, update_management = update_bl_management = True,
fixed_bl = True, pulse_type StochasticCompressed) for rank-N updates that come as (x, d):
AnalogTile.outer_update(x, d, lr) -> tiles/update.py Pulsed.outer_update -> pulse_train_update.
Each sample's x and d become BL-bit streams, each device pair gets one pulse per coincidence
(kernel and formulas: hw_models/kernels/pulse_train.py), pulse by pulse with this model's
per-device steps, cycle-to-cycle noise and per-pulse clipping (rpu_constantstep_device.cpp:27-55).
update(g, dg) (a requested change, no x and d to make streams from: AnalogTile.update / write)
keeps the pulse-count law above in either scheme.
Reproduced from aihwkit: BL / A / B per sample with both managements, StochasticCompressed streams
(fire iff |v| P > u, P >= 1 always fires), sample-by-sample application, coincidence sign
-sign(x d), ConstantStep per-pulse steps, noise and clipping.  Not reproduced: fixed_bl = False,
um_grad_scale != 1, probability resolution `res` / sto_round (aihwkit's default res = 0: none),
d_sparsity, the other pulse types (Stochastic, MeanCount, DeterministicImplicit and their
x_res_implicit / d_res_implicit), the CUDA bit-line maker, aihwkit's float32 management
arithmetic (ours float64) and its RNG.  aihwkit's SingleRPUConfig device is one weight-domain
device; here the pair (G+, G-) of the symmetric mapping takes one pulse each per coincidence in
opposite directions (update.py's "half the change to each"), so its granularity is 2 dw_min_uS /
gmax of w_max and both devices' noise adds.
zero() is `enabled = False`: pulse quantization means no step size reproduces the ideal update
np.clip(g + dg, 0, gmax) exactly, so "off" delegates every stage to the ideal device.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.special import ndtr

from hw_models.kernels.pulse_train import MAX_BL, pulse_train_update
from hw_models.kernels.normal import Stream
from hw_models.kernels.pulsed import NEAREST_U, constant_step_update
from hw_models.kernels.quantize import seed_key
from common.coerce import check, choice
from hw_models.noise.base import NoiseModel
from hw_models.noise.registry import register
from hw_models.rng import standard_normal

F32 = np.float32
ROUNDINGS = ("stochastic", "nearest")
UPDATE_SCHEMES = ("pulse_count", "pulse_train")
_INV_SQRT_2PI = 1.0 / np.sqrt(2.0 * np.pi)


# ---- moment helpers (shared with pulsed_nonlinear) --------------------------------------------
def clipped_normal_moments(mu, sd, lo, hi) -> tuple[np.ndarray, np.ndarray]:
    """(E[Y], E[Y^2]) of Y = clip(X, lo, hi), X ~ N(mu, sd^2), elementwise; sd = 0 allowed.
    With a = (lo-mu)/sd, b = (hi-mu)/sd, m = Phi(b) - Phi(a):
      E[Y]   = lo Phi(a) + hi (1-Phi(b)) + mu m + sd (phi(a) - phi(b))
      E[Y^2] = lo^2 Phi(a) + hi^2 (1-Phi(b)) + (mu^2+sd^2) m + 2 mu sd (phi(a)-phi(b))
               + sd^2 (a phi(a) - b phi(b))"""
    mu, sd, lo, hi = np.broadcast_arrays(*(np.asarray(v, np.float64) for v in (mu, sd, lo, hi)))
    noisy = sd > 0
    s = np.where(noisy, sd, 1.0)
    a, b = (lo - mu) / s, (hi - mu) / s
    fa, fb = np.exp(-0.5 * a * a) * _INV_SQRT_2PI, np.exp(-0.5 * b * b) * _INV_SQRT_2PI
    pa, pb = ndtr(a), ndtr(b)
    m = pb - pa
    m1 = lo * pa + hi * (1 - pb) + mu * m + s * (fa - fb)
    m2 = (lo * lo * pa + hi * hi * (1 - pb) + (mu * mu + s * s) * m + 2 * mu * s * (fa - fb)
          + s * s * (a * fa - b * fb))
    y = np.clip(mu, lo, hi)
    return np.where(noisy, m1, y), np.where(noisy, m2, y * y)


def pulse_count_law(x: np.ndarray, rounding: str) -> tuple[np.ndarray, np.ndarray]:
    """Law of n = floor(x + u): (n0, p) with n = n0 + 1 with probability p, else n0."""
    x = np.asarray(x, np.float64)
    if rounding == "nearest":
        return np.floor(x + NEAREST_U), np.zeros_like(x)
    n0 = np.floor(x)
    return n0, x - n0


def mixture_moments(laws) -> tuple[np.ndarray, np.ndarray]:
    """(mean, std) of a mixture given [(weight, mu, sd, lo, hi), ...] of clipped normals."""
    e1 = e2 = 0.0
    for w, mu, sd, lo, hi in laws:
        m1, m2 = clipped_normal_moments(mu, sd, lo, hi)
        e1, e2 = e1 + w * m1, e2 + w * m2
    return e1, np.sqrt(np.maximum(e2 - e1 * e1, 0.0))


def _per_device(a, shape) -> np.ndarray:
    a = np.asarray(a, F32)
    return a if a.size == 1 else np.broadcast_to(a, shape)


# ---- the model --------------------------------------------------------------------------------
@register
@dataclass(frozen=True)
class PulsedConstant(NoiseModel):
    """Constant-step pulsed device; defaults are aihwkit's PulsedDevice defaults (devices.py:166-270)
    with dw_min 1/500 of a 25 uS range.  `enabled = False` is the ideal device (zero())."""

    name: ClassVar[str] = "pulsed_constant"
    citation: ClassVar[str] = ("aihwkit ConstantStepDevice/PulsedDevice (Rasch et al., 'A flexible and "
                               "fast PyTorch toolkit for simulating training and inference on analog "
                               "crossbar arrays', AICAS 2021), src/aihwkit/simulator/configs/devices.py")
    stages: ClassVar[frozenset[str]] = frozenset({"update"})

    enabled: bool = True  # False: "off", every stage is the ideal device's
    dw_min_uS: float = 0.05  # nominal conductance step of one pulse
    dw_min_dtod: float = 0.3  # device-to-device relative std of the step (drawn at program time)
    dw_min_std: float = 0.3  # cycle-to-cycle relative std of one pulse's step
    up_down: float = 0.0  # asymmetry: up steps x (1 + up_down), down steps x (1 - up_down)
    up_down_dtod: float = 0.01  # device-to-device std of up_down (relative to dw_min)
    gmin_uS: float = 0.0  # lower conductance bound
    gmax_uS: float = 0.0  # upper conductance bound; 0 = the crossbar's gmax passed to the stages
    gmax_dtod: float = 0.3  # device-to-device relative std of the upper bound
    rounding: str = "stochastic"  # pulse count: "stochastic" (unbiased) or "nearest"
    # outer_update(x, d, lr): "pulse_count" (update(-lr d^T x), the law above) or "pulse_train"
    # (aihwkit's stochastic pulse trains; the fields below are aihwkit's UpdateParameters defaults)
    update_scheme: str = "pulse_count"
    desired_bl: int = 31  # pulse-train length; the maximum with update_bl_management (<= 64)
    update_management: bool = True  # balance the x and d probabilities per sample
    update_bl_management: bool = True  # BL = min(ceil(lr max|x| max|d| / dw), desired_bl); implies UM

    def __post_init__(self) -> None:
        p = f"hardware.{self.name}."
        check(isinstance(self.enabled, bool), p + "enabled", "true or false", self.enabled)
        check(self.dw_min_uS > 0, p + "dw_min_uS", "> 0", self.dw_min_uS)
        for f in ("dw_min_dtod", "dw_min_std", "up_down_dtod", "gmax_dtod"):
            check(getattr(self, f) >= 0, p + f, ">= 0", getattr(self, f))
        check(-1 < self.up_down < 1, p + "up_down", "in (-1, 1)", self.up_down)
        check(self.gmin_uS >= 0, p + "gmin_uS", ">= 0", self.gmin_uS)
        check(self.gmax_uS == 0 or self.gmax_uS > self.gmin_uS, p + "gmax_uS",
              f"0 (the crossbar's gmax) or > gmin_uS = {self.gmin_uS}", self.gmax_uS)
        check(self.rounding in ROUNDINGS, p + "rounding", "'stochastic' or 'nearest'", self.rounding)
        choice(p + "update_scheme", self.update_scheme, UPDATE_SCHEMES)
        check(isinstance(self.desired_bl, int) and not isinstance(self.desired_bl, bool)
              and 1 <= self.desired_bl <= MAX_BL, p + "desired_bl", f"an integer in 1..{MAX_BL}",
              self.desired_bl)
        for f in ("update_management", "update_bl_management"):
            check(isinstance(getattr(self, f), bool), p + f, "true or false", getattr(self, f))

    # ---- state keys (one namespace per model in the crossbar's shared state dict) -------------
    @property
    def _keys(self) -> tuple[str, str, str]:
        return tuple(f"{self.name}.{k}" for k in ("step_up_uS", "step_down_uS", "gmax_uS"))

    def _gmax(self, gmax_uS) -> np.ndarray | float:
        return self.gmax_uS if self.gmax_uS > 0 else gmax_uS

    def _nominal_steps(self) -> tuple[float, float]:
        return self.dw_min_uS * (1 + self.up_down), self.dw_min_uS * (1 - self.up_down)

    # ---- stages -------------------------------------------------------------------------------
    def program(self, g_target_uS, gmax_uS, rng, state=None):
        """Writes g as requested (programming error is another model's job) and draws the
        per-device steps and bound; only spreads > 0 are drawn and stored."""
        g = np.array(g_target_uS, dtype=F32, copy=True)
        if not self.enabled:
            return g, {}
        k_up, k_down, k_max = self._keys
        if state is not None and any(k in state for k in self._keys):  # a re-write: keep the device
            return g, {k: state[k] for k in self._keys if k in state}
        state = {}
        if self.dw_min_dtod > 0 or self.up_down_dtod > 0:
            gain = 1.0 + self.dw_min_dtod * standard_normal(rng, g.size).reshape(g.shape)
            r = self.up_down_dtod * standard_normal(rng, g.size).reshape(g.shape)
            state[k_up] = (self.dw_min_uS * np.abs(gain + self.up_down + r)).astype(F32)
            state[k_down] = (self.dw_min_uS * np.abs(gain - self.up_down - r)).astype(F32)
        if self.gmax_dtod > 0:
            hi = self._gmax(gmax_uS) * (1.0 + self.gmax_dtod * standard_normal(rng, g.size).reshape(g.shape))
            state[k_max] = np.maximum(hi, self.gmin_uS).astype(F32)  # crossed bounds: device stuck
        return g, state

    def update(self, g_uS, dg_uS, gmax_uS, state, rng):
        if not self.enabled:
            return super().update(g_uS, dg_uS, gmax_uS, state, rng)
        g = np.asarray(g_uS)
        k_up, k_down, k_max = self._keys
        up, down = self._nominal_steps()
        u = Stream(seed_key(rng)) if self.rounding == "stochastic" else np.full(1, NEAREST_U, F32)
        xi = Stream(seed_key(rng)) if self.dw_min_std > 0 else np.zeros(1, F32)
        return constant_step_update(
            g, dg_uS, self.dw_min_uS, state.get(k_up, up), state.get(k_down, down), self.gmin_uS,
            state[k_max] if k_max in state else _per_device(self._gmax(gmax_uS), g.shape),
            self.dw_min_std, u, xi)

    @property
    def pulse_train(self) -> bool:
        """True when outer_update(x, d, lr) takes aihwkit's stochastic pulse trains."""
        return self.enabled and self.update_scheme == "pulse_train"

    def pulse_train_update(self, g_pair_uS, states, x, d_uS, lr: float, gmax_uS,
                           rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, int]:
        """Stochastic pulse-train update of differential pairs: g_pair_uS = (G+, G-) (M, K) with
        their states, a batch x (N, K) and d_uS (N, M) such that the requested change of G+ is
        -lr d_uS^T x and of G- its negative (the caller maps weights to per-device conductance).
        One key from rng.  Returns (G+, G-, number of coincidences)."""
        k_up, k_down, k_max = self._keys
        up, down = self._nominal_steps()
        steps = [(s.get(k_up, up), s.get(k_down, down), s[k_max] if k_max in s else self._gmax(gmax_uS))
                 for s in states]
        return pulse_train_update(g_pair_uS[0], g_pair_uS[1], x, d_uS, lr, self.dw_min_uS, steps[0],
                                  steps[1], self.gmin_uS, self.dw_min_std, seed_key(rng), self.desired_bl,
                                  self.update_management, self.update_bl_management)

    def moments(self, stage, g_uS, gmax_uS, t_s=0.0, dg_uS=None):
        """update: for a nominal device (no d-t-d; example() has none), with x = |dg| / dw_min_uS
        and n = n0 + Bernoulli(p) (pulse_count_law), the mixture over n of
        clip(N(g + sign(dg) n step_dir, (step_dir dw_min_std)^2 n), gmin_uS, gmax);
        unclipped: mean g + sign(dg) x step_dir (= g + dg when up_down = 0),
        var step_dir^2 (p (1-p) + dw_min_std^2 x).  Other stages: the identity."""
        if not self.enabled or stage != "update":
            return super().moments(stage, g_uS, gmax_uS, t_s, dg_uS)
        g = np.asarray(g_uS, F32).astype(np.float64)
        dg = np.zeros_like(g) if dg_uS is None else np.asarray(dg_uS, F32).astype(np.float64)
        up, down = self._nominal_steps()
        sign = np.sign(dg)
        step = np.where(dg > 0, float(F32(up)), float(F32(down)))
        n0, p = pulse_count_law(np.abs(dg) / self.dw_min_uS, self.rounding)
        lo, hi = float(F32(self.gmin_uS)), np.asarray(self._gmax(gmax_uS), F32).astype(np.float64)
        return mixture_moments(
            [(1 - p, g + sign * n0 * step, step * self.dw_min_std * np.sqrt(n0), lo, hi),
             (p, g + sign * (n0 + 1) * step, step * self.dw_min_std * np.sqrt(n0 + 1), lo, hi)])

    @classmethod
    def example(cls) -> "PulsedConstant":
        """Cycle-to-cycle noise and up/down asymmetry, no device-to-device spread: moments() then
        describes every device (d-t-d spreads are per-device constants moments() cannot know)."""
        return cls(dw_min_uS=0.05, dw_min_dtod=0.0, dw_min_std=0.3, up_down=0.1, up_down_dtod=0.0,
                   gmax_dtod=0.0)

    @classmethod
    def zero(cls) -> "PulsedConstant":
        return cls(enabled=False)

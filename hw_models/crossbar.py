"""Analog crossbar holding one weight matrix: differential conductance pairs split into tiles of
rows x cols, forward and transposed MVM through DAC -> array (+ read noise) -> ADC per tile, an
update path through the devices' update model, and drift to a time after programming.

Arrays are kept in the layer's (out, in) orientation, G[m, k]: physical row k (input line) and
column m (output line); a tile covers tile_rows inputs x tile_cols outputs.  Weight
w[m, k] = (G+[m, k] - G-[m, k]) / gmax * w_max[m] (per-output-column scaling).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hw_models.blas import matmul
from hw_models.device import DeviceConfig
from hw_models.kernels.pcm import granular_targets
from hw_models.kernels.program import one_sided_write
from hw_models.kernels.readout import add_noise_clamped
from hw_models.rng import NormalSource
from hw_models.periphery import adc, compensation_factor, dac, drift_readout


def read_out(noise, g: np.ndarray, state: dict, t_s: float, normals: NormalSource):
    """Conductances (uS) of devices programmed to g (per-device `state`) as read t_s seconds after
    programming: every model's drift, then the hard faults, then the read noise — frozen noise
    (model.frozen_read) drawn now from `normals` and kept as max(g + sigma xi, 0) (aihwkit's clamp),
    per-read noise returned as its variance (uS^2, None if none) for each MVM to draw.
    Returns (g, var)."""
    for model in noise:
        g = model.drift(g, state, t_s)
    for model in noise:
        g = model.enforce(g, state)
    var = None
    for model in noise:
        sigma = model.read_sigma_uS(g, state, t_s)
        if sigma is None:
            continue
        if model.frozen_read:
            g = add_noise_clamped(g, sigma, normals.standard_normal(g.shape))
        else:
            var = sigma * sigma if var is None else var + sigma * sigma
    return g, var


def _gather(a: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """Devices of a (M, K) array selected by a boolean (M, K) mask or by flat C-order indices."""
    return a[sel] if sel.dtype == np.bool_ else np.take(a, sel)


def _scatter(a: np.ndarray, sel: np.ndarray, values: np.ndarray) -> None:
    if sel.dtype == np.bool_:  # a mask of most devices: faster than a put of as many indices
        a[sel] = values
    else:
        np.put(a, sel, values)


class _Subset(Mapping):
    """The per-device state arrays at the selected devices, gathered on first access (a model that
    keeps no properties across writes, like "pcm", never pays for the gather)."""

    def __init__(self, arrays: dict[str, np.ndarray], sel: np.ndarray) -> None:
        self._arrays, self._sel, self._taken = arrays, sel, {}

    def __getitem__(self, key: str) -> np.ndarray:
        if key not in self._taken:
            self._taken[key] = _gather(self._arrays[key], self._sel)
        return self._taken[key]

    def __contains__(self, key) -> bool:
        return key in self._arrays

    def __iter__(self):
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)


class AnalogTile:
    """One layer's weight matrix on analog crossbar tiles: programming, reads (forward and
    transposed MVM through the periphery), writes (re-programming or pulsed updates), and time
    after programming (drift, frozen read noise, global drift compensation)."""

    def __init__(self, weight: np.ndarray, device: DeviceConfig, rng: np.random.Generator) -> None:
        self.device = device
        self.rng = rng
        self.normals = NormalSource(rng)  # per-read noise, drawn on all cores
        self.out_features, self.in_features = weight.shape
        self.t_s = device.read_time_s
        self.program(weight)

    # ---- programming and time ------------------------------------------------------------
    def program(self, weight: np.ndarray) -> None:
        """Write W (out, in): per-column range w_max = headroom * max|W[m, :]|, then each device of
        both polarities through the program stage of every noise model in the chain."""
        d = self.device
        w = np.ascontiguousarray(weight, dtype=np.float32)  # (M, K)
        absmax = np.abs(w).max(axis=1) if w.size else np.ones(w.shape[0], np.float32)
        self.w_max = np.ascontiguousarray(
            (d.weight_headroom * np.where(absmax > 0, absmax, 1.0)).astype(np.float32)[:, None])
        w_norm = np.clip(w / self.w_max, -1.0, 1.0)
        self.g_prog, self.states = [], []
        for target in self._targets(w_norm):
            g, state = self._write_devices(target, None)
            self.g_prog.append(g)
            self.states.append(state)
        self._refresh()
        self._written()

    def _write_devices(self, target: np.ndarray, old: dict | None) -> tuple[np.ndarray, dict]:
        """Program stage of every model in the chain, then the hard faults; `old` is the state
        of an earlier write of the same devices (None for new ones)."""
        g, state = target, {}
        for model in self.device.noise:
            g, new = model.program(g, self.device.gmax_uS, self.rng, old)
            state.update(new)
        for model in self.device.noise:
            g = model.enforce(g, state)
        return np.ascontiguousarray(g, dtype=np.float32), state

    def _targets(self, w_norm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        gmax = np.float32(self.device.gmax_uS)
        if self.device.pair_mapping == "one_sided":  # aihwkit inference mapping: one device at 0
            return np.maximum(w_norm, 0) * gmax, np.maximum(-w_norm, 0) * gmax
        half = gmax / np.float32(2)  # symmetric: both devices around gmax/2, room to move both ways
        return half * (1 + w_norm), half * (1 - w_norm)

    def set_time(self, t_s: float) -> None:
        """Evaluate from now on at t_s seconds after programming: drift, read noise at t (frozen
        read noise drawn anew), and the drift-compensation factor against the programmed state."""
        self.t_s = float(t_s)
        self._refresh()
        if self.device.periphery.drift_compensation:
            if self._reference is None:  # readout of the state as programmed (aihwkit: program_weights)
                inv = np.float32(1.0 / self.device.gmax_uS)
                self._reference = self._readout((self.g_prog[0] - self.g_prog[1]) * inv, None)
            self.compensation = compensation_factor(self._reference, self._readout(self.g_eff, self.read_var))

    def _refresh(self) -> None:
        """Conductances, effective weights and read variances of every device at time t_s."""
        self.g_now, self.g_eff, self.read_var = self._read_out(zip(self.g_prog, self.states))

    def _refresh_at(self, sel: np.ndarray, written: list[tuple[np.ndarray, dict]]) -> None:
        """_refresh for the selected devices only (mask or flat indices; every stage acts per
        device, so this equals a full refresh bit for bit, except that frozen read noise is drawn
        anew for these devices alone: the others keep theirs); written: (g_prog, state) of each
        polarity there."""
        g_now, g_eff, read_var = self._read_out(written)
        for i, part in enumerate(g_now):
            if not (self.g_now[i] is self.g_prog[i] and part is written[i][0]):  # else written
                _scatter(self.g_now[i], sel, part)
        _scatter(self.g_eff, sel, g_eff)
        if read_var is not None:
            _scatter(self.read_var, sel, read_var)

    def _read_out(self, devices) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None]:
        """(conductances at t_s per polarity, normalized effective weights, normalized read
        variance or None) of (g_prog, state) pairs (read_out above for each)."""
        d = self.device
        gs, var = [], None
        for g, state in devices:
            g, v = read_out(d.noise, g, state, self.t_s, self.normals)
            if v is not None:
                var = v if var is None else var + v
            gs.append(g)
        inv = np.float32(1.0 / d.gmax_uS)
        g_eff = ((gs[0] - gs[1]) * inv).astype(np.float32, copy=False)
        return gs, g_eff, None if var is None else (var * inv * inv).astype(np.float32, copy=False)

    # ---- reads ----------------------------------------------------------------------------
    def weights(self) -> np.ndarray:
        """Effective weights (out, in) at the current time, without read noise."""
        return self.g_eff * self.w_max

    def forward(self, x: np.ndarray) -> np.ndarray:
        """y = W x for a batch x (N, in) -> (N, out)."""
        y = self._mvm(x, self.g_eff, self.read_var, self.device.tile_rows)
        y *= self.w_max.T
        if self.compensation != 1.0:
            y *= np.float32(self.compensation)
        return y

    def backward(self, d: np.ndarray) -> np.ndarray:
        """Transposed MVM W^T d for a batch d (N, out) -> (N, in), same periphery and noise."""
        g_t = self.g_eff.T  # a view: BLAS reads it transposed, no copy
        var_t = None if self.read_var is None else self.read_var.T
        return self._mvm(np.ascontiguousarray(d * self.w_max.T, dtype=np.float32), g_t, var_t,
                         self.device.tile_cols)

    def _mvm(self, x: np.ndarray, g: np.ndarray, var: np.ndarray | None, tile_rows: int) -> np.ndarray:
        """x (N, K) through g (M, K): y = x g^T, digitized per tile of tile_rows inputs."""
        p = self.device.periphery
        x = np.ascontiguousarray(x, dtype=np.float32)
        xn, scale = dac(x, p)
        ideal_tiles = var is None and p.out_noise == 0 and p.adc_bits == 0
        if ideal_tiles:  # per-tile digitization is the identity: one GEMM, same sum
            return matmul(xn, g.T) * scale
        out = np.zeros((x.shape[0], g.shape[0]), np.float32)
        for r0 in range(0, g.shape[1], tile_rows):
            out += self._tile_read(xn[:, r0:r0 + tile_rows], g[:, r0:r0 + tile_rows],
                                   None if var is None else var[:, r0:r0 + tile_rows])
        return out * scale

    def _tile_read(self, xn: np.ndarray, g: np.ndarray, var: np.ndarray | None) -> np.ndarray:
        """One tile: analog MVM, noise, ADC; with bound management a saturated input vector is
        halved and read again (<= 3 times).  Independent per-device Gaussian reads sum to
        N(0, sum_k x_k^2 sigma_k^2) at each output, and the additive output noise N(0, out_noise^2)
        is independent of them, so both are drawn as one normal per output of variance
        sum_k x_k^2 sigma_k^2 + out_noise^2 (their exact joint distribution)."""
        p = self.device.periphery
        factor, rows, result = None, None, None
        for attempt in range(4):
            xs = xn if rows is None else xn[rows] * factor[rows]
            y = matmul(xs, g.T)
            noise, sigma = self._output_noise(xs, var, y.shape)
            y, saturated = adc(y, p, noise, sigma)
            if rows is None:
                result = y
            else:
                result[rows] = y / factor[rows]
            if not (p.bound_management and p.adc_bits and saturated.any()) or attempt == 3:
                break
            if rows is None:
                factor = np.ones((xn.shape[0], 1), np.float32)
                rows = np.arange(xn.shape[0])
            rows = rows[saturated]
            factor[rows] *= np.float32(0.5)
        return result

    def _output_noise(self, xs: np.ndarray, var: np.ndarray | None,
                      shape: tuple[int, int]) -> tuple[np.ndarray | None, float]:
        """(noise, sigma) for the ADC, which adds sigma * noise: read + output noise of one tile
        read as one draw per output (see _tile_read), or the output noise alone."""
        out_noise = self.device.periphery.out_noise
        if var is None:
            return (self.normals.standard_normal(shape) if out_noise else None), out_noise
        sd = matmul(xs * xs, var.T)  # read variance per output, normalized units
        if out_noise:
            sd += np.float32(out_noise * out_noise)
        np.sqrt(sd, out=sd)
        sd *= self.normals.standard_normal(shape)
        return sd, 1.0

    # ---- writes ---------------------------------------------------------------------------
    def write(self, w_target: np.ndarray) -> np.ndarray:
        """Move the devices towards w_target (out, in) through the update path; returns the weights
        the devices now hold.  Ideal one-sided devices take a fused one-pass kernel."""
        d = self.device
        if (not d.noise and d.pair_mapping == "one_sided" and not d.periphery.drift_compensation
                and not d.write_granularity):
            w_target = np.ascontiguousarray(w_target, dtype=np.float32)
            out = np.empty_like(w_target)
            one_sided_write(w_target, self.w_max[:, 0], d.gmax_uS, self.g_prog[0], self.g_prog[1],
                            self.g_eff, out)
            return out
        if d.pair_mapping == "one_sided" and d.write_granularity:  # update(), fused with weights()
            idx, w_new, w_out = granular_targets(np.ascontiguousarray(w_target, dtype=np.float32),
                                                 self.w_max[:, 0], self.g_eff, d.write_granularity,
                                                 self.rng, from_target=True)
            self._reprogram_at(idx, w_new)
            rows = idx // self.in_features
            np.put(w_out, idx, np.take(self.g_eff, idx) * np.take(self.w_max[:, 0], rows))
            self._written()
            return w_out
        self.update(w_target - self.weights())
        return self.weights()

    def _written(self) -> None:
        """After programming or a write: outputs need no drift compensation now, and the
        compensation reference (the readout of the programmed state) is taken again when a later
        set_time needs it — so training writes never pay for a readout."""
        self._reference: float | None = None
        self.compensation = 1.0

    def _readout(self, g_norm: np.ndarray, var_norm: np.ndarray | None) -> float:
        return drift_readout(g_norm, var_norm, self.device.periphery, self.normals)

    def update(self, delta_w: np.ndarray) -> None:
        """Apply a requested weight change (out, in) through the devices' update model.

        "symmetric" mapping: half of the conductance change to G+, the opposite half to G-, through
        the first model with an update stage (else exact, clipped to [0, gmax]).
        "one_sided" mapping: pairs are re-programmed (read-modify-write: the new target starts from
        the pair's current effective weight g_eff, what the devices hold, never a float copy).  With
        write_granularity = 0 every pair with a nonzero request dw = delta_w / w_max gets the target
        clip(g_eff + dw, -1, 1).  With write_granularity e > 0 a pair moves by n whole increments
        of e, n = floor(dw / e + u) with u ~ U[0, 1) (stochastic rounding: E[n e] = dw, unbiased;
        u counter-based from one key drawn from the tile's Generator), target clip(g_eff + n e,
        -1, 1), and only pairs with n != 0 are re-programmed: fresh programming noise for those
        alone, the other devices keep their conductance.  Device properties (state) persist."""
        self._update(delta_w)
        self._written()

    def _update(self, delta_w: np.ndarray) -> None:
        d = self.device
        if d.pair_mapping == "one_sided":
            if d.write_granularity:
                idx, w_new, _ = granular_targets(np.ascontiguousarray(delta_w, dtype=np.float32),
                                                 self.w_max[:, 0], self.g_eff, d.write_granularity,
                                                 self.rng)
                self._reprogram_at(idx, w_new)
                return
            dw_norm = np.asarray(delta_w, dtype=np.float32) / self.w_max
            self._reprogram(np.clip(self.g_eff + dw_norm, -1.0, 1.0), dw_norm != 0)
            return
        dw_norm = np.asarray(delta_w, dtype=np.float32) / self.w_max
        half_dg = dw_norm * np.float32(d.gmax_uS / 2)
        for i, sign in enumerate((1.0, -1.0)):
            g, state = self.g_prog[i], self.states[i]
            for model in d.noise:
                if "update" in model.stages:
                    g = model.update(g, np.float32(sign) * half_dg, d.gmax_uS, state, self.rng)
                    break
            else:
                g = np.clip(g + np.float32(sign) * half_dg, 0.0, d.gmax_uS)
            for model in d.noise:
                g = model.enforce(g, state)
            self.g_prog[i] = g.astype(np.float32, copy=False)
        self._refresh()

    def _reprogram(self, w_norm: np.ndarray, changed: np.ndarray) -> None:
        """Re-write the pairs whose target changed; device properties persist across writes."""
        if not changed.all():
            self._reprogram_at(changed, w_norm[changed])
            return
        for i, target in enumerate(self._targets(w_norm)):
            self.g_prog[i], self.states[i] = self._write_devices(target, self.states[i])
        self._refresh()

    def _reprogram_at(self, sel: np.ndarray, w_norm: np.ndarray) -> None:
        """Re-write the pairs selected by a boolean (M, K) mask or by flat C-order indices (in
        C order either way, so the same draws in the same order) to normalized targets w_norm,
        then refresh just them."""
        if w_norm.size == 0:
            return
        written = []
        for i, target in enumerate(self._targets(w_norm)):
            states = self.states[i]
            g, state = self._write_devices(target, _Subset(states, sel))
            _scatter(self.g_prog[i], sel, g)
            for k, v in state.items():
                _scatter(states[k], sel, v)
            written.append((g, state))
        self._refresh_at(sel, written)

    def outer_update(self, x: np.ndarray, d: np.ndarray, lr: float) -> None:
        """Rank-N update W <- W - lr * d^T x (SGD outer product of a batch)."""
        self.update(-np.float32(lr) * (d.T @ x))  # (out, in)

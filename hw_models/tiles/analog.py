"""Analog crossbar holding one weight matrix: the devices' state (programmed conductances, per-device
properties, their read-out at the current time) composed with a weight mapping (mapping.py), a
periphery chain (chain.py) and an update policy (update.py), all chosen by the DeviceConfig.

Arrays are kept in the layer's (out, in) orientation, G[m, k]: physical row k (input line) and
column m (output line); a tile covers tile_rows inputs x tile_cols outputs.  Weight
w[m, k] = (G+[m, k] - G-[m, k]) / gmax * w_max[m] (per-output-column scaling).
"""

from __future__ import annotations

import numpy as np

from common.errors import OnchipError
from hw_models.device import DeviceConfig
from hw_models.kernels.pair import pair_difference
from hw_models.periphery import compensation_factor
from hw_models.rng import NormalSource, generator_state, restore_generator
from hw_models.tiles.chain import PeripheryChain
from hw_models.tiles.mapping import WeightMapping
from hw_models.tiles.pcm_write import fused_write
from hw_models.tiles.readout import Subset, read_out, scatter
from hw_models.tiles.update import update_policy


class AnalogTile:
    """One layer's weight matrix on analog crossbar tiles (the Tile protocol, hw_models/tiles):
    programming, reads (forward and transposed MVM through the periphery chain), writes (the
    update policy of its pair mapping), and time after programming (drift, frozen read noise,
    global drift compensation)."""

    def __init__(self, weight: np.ndarray, device: DeviceConfig, rng: np.random.Generator) -> None:
        self.device = device
        self.rng = rng
        self.normals = NormalSource(rng)  # per-read noise, drawn on all cores
        self.mapping = WeightMapping(device.weight_headroom, device.pair_mapping, device.gmax_uS)
        self.chain = PeripheryChain(device.periphery, self.normals)
        self.policy = update_policy(device.pair_mapping)
        self.out_features, self.in_features = weight.shape
        self.t_s = device.read_time_s
        self.program(weight)

    # ---- programming and time ------------------------------------------------------------
    def program(self, weight: np.ndarray) -> None:
        """Write W (out, in): per-column range w_max = headroom * max|W[m, :]|, then each device of
        both polarities through the program stage of every noise model in the chain."""
        w = np.ascontiguousarray(weight, dtype=np.float32)  # (M, K)
        self.w_max = self.mapping.ranges(w)
        w_norm = np.clip(w / self.w_max, -1.0, 1.0)
        self.g_prog, self.states = [], []
        for target in self.mapping.targets(w_norm):
            g, state = self._write_devices(target, None)
            self.g_prog.append(g)
            self.states.append(state)
        self.refresh()
        self.written()

    def _write_devices(self, target: np.ndarray, old) -> tuple[np.ndarray, dict]:
        """Program stage of every model in the chain, then the hard faults; `old` is the state
        of an earlier write of the same devices (None for new ones)."""
        g, state = target, {}
        for model in self.device.noise:
            g, new = model.program(g, self.device.gmax_uS, self.rng, old)
            state.update(new)
        for model in self.device.noise:
            g = model.enforce(g, state)
        return np.ascontiguousarray(g, dtype=np.float32), state

    def set_time(self, t_s: float) -> None:
        """Evaluate from now on at t_s seconds after programming: drift, read noise at t (frozen
        read noise drawn anew), and the drift-compensation factor against the programmed state.
        The array keeps one clock: writes happen at read_time_s only (_check_clock)."""
        self.t_s = float(t_s)
        self.refresh()
        self._compensate()

    def _compensate(self) -> None:
        """The drift-compensation factor now (reference readout taken first if needed)."""
        if self.device.periphery.drift_compensation:
            if self._reference is None:  # readout of the state as programmed (aihwkit: program_weights)
                inv = np.float32(1.0 / self.device.gmax_uS)
                self._reference = self.chain.drift_readout((self.g_prog[0] - self.g_prog[1]) * inv, None)
            self.compensation = compensation_factor(self._reference,
                                                    self.chain.drift_readout(self.g_eff, self.read_var))

    def written(self) -> None:
        """After programming or a write: outputs need no drift compensation now (the array is read
        at read_time_s), and the compensation reference (the readout of the programmed state) is
        taken again when a later set_time needs it — so training writes never pay for a readout."""
        self._reference: float | None = None
        self.compensation = 1.0

    def _check_clock(self) -> None:
        """Writes happen while the array is read at its read_time_s: it keeps one clock, so devices
        re-written at a later time would be read as that old (drifted again)."""
        if self.t_s != self.device.read_time_s:
            raise OnchipError(f"a write to an array read {self.t_s:g} s after programming: the simulator "
                              "keeps one programming time per array, so re-written devices would be read as "
                              f"that old; set_time({self.device.read_time_s:g}) (hardware.read_time_s) before "
                              "training again")

    def refresh(self) -> None:
        """Conductances, effective weights and read variances of every device at time t_s."""
        self.g_now, self.g_eff, self.read_var = self._read_out(zip(self.g_prog, self.states))

    def _refresh_at(self, sel: np.ndarray, written: list[tuple[np.ndarray, dict]]) -> None:
        """refresh for the selected devices only (mask or flat indices; every stage acts per
        device, so this equals a full refresh bit for bit, except that frozen read noise is drawn
        anew for these devices alone: the others keep theirs); written: (g_prog, state) of each
        polarity there."""
        g_now, g_eff, read_var = self._read_out(written)
        for i, part in enumerate(g_now):
            if not (self.g_now[i] is self.g_prog[i] and part is written[i][0]):  # else written
                scatter(self.g_now[i], sel, part)
        scatter(self.g_eff, sel, g_eff)
        if read_var is not None:
            scatter(self.read_var, sel, read_var)

    def _read_out(self, devices) -> tuple[list[np.ndarray], np.ndarray, np.ndarray | None]:
        """(conductances at t_s per polarity, normalized effective weights, normalized read
        variance or None) of (g_prog, state) pairs (tiles/readout.py read_out for each)."""
        d = self.device
        gs, var = [], None
        for g, state in devices:
            g, v = read_out(d.noise, g, state, self.t_s, self.normals)
            if v is not None:
                var = v if var is None else var + v
            gs.append(g)
        inv = np.float32(1.0 / d.gmax_uS)
        g_eff = pair_difference(gs[0], gs[1], inv)
        return gs, g_eff, None if var is None else (var * inv * inv).astype(np.float32, copy=False)

    # ---- reads ----------------------------------------------------------------------------
    def weights(self) -> np.ndarray:
        """Effective weights (out, in) at the current time, without read noise."""
        return self.g_eff * self.w_max

    def weight_range(self) -> np.ndarray:
        """w_max (M, 1): the weight of a pair at full conductance difference, fixed at programming."""
        return self.w_max

    def forward(self, x: np.ndarray) -> np.ndarray:
        """y = W x for a batch x (N, in) -> (N, out)."""
        y = self.chain.mvm(x, self.g_eff, self.read_var, self.device.tile_rows)
        y *= self.w_max.T
        if self.compensation != 1.0:
            y *= np.float32(self.compensation)
        return y

    def backward(self, d: np.ndarray) -> np.ndarray:
        """Transposed MVM W^T d for a batch d (N, out) -> (N, in), same periphery and noise."""
        g_t = self.g_eff.T  # a view: BLAS reads it transposed, no copy
        var_t = None if self.read_var is None else self.read_var.T
        return self.chain.mvm(np.ascontiguousarray(d * self.w_max.T, dtype=np.float32), g_t, var_t,
                              self.device.tile_cols)

    # ---- writes (the update policy, tiles/update.py) ----------------------------------------
    def write(self, w_target: np.ndarray) -> np.ndarray:
        """Move the devices towards w_target (out, in) through the update policy; returns the
        weights the devices now hold."""
        self._check_clock()
        out = self.policy.write(self, w_target)
        self.written()
        return out

    def update(self, delta_w: np.ndarray) -> None:
        """Apply a requested weight change (out, in) through the update policy (tiles/update.py:
        re-programming of one-sided pairs, exact or in whole increments of write_granularity;
        pulsed updates of symmetric pairs)."""
        self._check_clock()
        self.policy.update(self, delta_w)
        self.written()

    def outer_update(self, x: np.ndarray, d: np.ndarray, lr: float) -> None:
        """Rank-N update W <- W - lr * d^T x (SGD outer product of a batch x (N, in), d (N, out)):
        update(-lr d^T x), or, for a pulsed device with update_scheme = "pulse_train", aihwkit's
        stochastic pulse trains made from x and d (tiles/update.py)."""
        self._check_clock()
        self.policy.outer_update(self, x, d, lr)
        self.written()

    def reprogram_all(self, w_norm: np.ndarray) -> None:
        """Re-write every pair to normalized targets w_norm; device properties persist."""
        for i, target in enumerate(self.mapping.targets(w_norm)):
            self.g_prog[i], self.states[i] = self._write_devices(target, self.states[i])
        self.refresh()

    def reprogram_at(self, sel: np.ndarray, w_norm: np.ndarray) -> None:
        """Re-write the pairs selected by a boolean (M, K) mask or by flat C-order indices (in
        C order either way, so the same draws in the same order) to normalized targets w_norm,
        then refresh just them."""
        if w_norm.size == 0 or fused_write(self, sel, w_norm):  # (pcm arrays: tiles/pcm_write.py)
            return
        written = []
        for i, target in enumerate(self.mapping.targets(w_norm)):
            states = self.states[i]
            g, state = self._write_devices(target, Subset(states, sel))
            scatter(self.g_prog[i], sel, g)
            for k, v in state.items():
                scatter(states[k], sel, v)
            written.append((g, state))
        self._refresh_at(sel, written)

    # ---- state (save / load: onchip_ff.api) ---------------------------------------------------
    def state(self) -> dict:
        """Everything that makes this array what it is now, as numpy arrays and plain values:
        conductances as programmed and as read at t_s, per-device properties, ranges, time,
        compensation, and the states of its random streams (so that a restored array reads the
        same noise)."""
        return {"kind": "analog", "g_prog": list(self.g_prog), "states": [dict(s) for s in self.states],
                "g_now": list(self.g_now), "g_eff": self.g_eff, "read_var": self.read_var, "w_max": self.w_max,
                "t_s": self.t_s, "compensation": self.compensation, "reference": self._reference,
                "rng": generator_state(self.rng), "normals": self.normals.states()}

    def load_state(self, state: dict) -> None:
        """Restore a state() of an array of the same shape and device."""
        if state.get("kind") != "analog" or np.shape(state["g_eff"]) != self.g_eff.shape:
            raise ValueError(f"not the state of a {self.g_eff.shape} analog array")
        f32 = lambda a: np.ascontiguousarray(a, dtype=np.float32)  # noqa: E731
        self.g_prog = [f32(g) for g in state["g_prog"]]
        self.states = [{k: np.ascontiguousarray(v) for k, v in s.items()} for s in state["states"]]
        self.g_now = [f32(g) for g in state["g_now"]]
        self.g_eff, self.w_max = f32(state["g_eff"]), f32(state["w_max"])
        self.read_var = None if state["read_var"] is None else f32(state["read_var"])
        self.t_s, self.compensation, self._reference = state["t_s"], state["compensation"], state["reference"]
        self.rng = restore_generator(state["rng"])
        self.normals.set_states(state["normals"])

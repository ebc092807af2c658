"""TorchTile: one layer's weight matrix on analog arrays simulated in torch tensors on any torch
device — the Tile protocol (hw_models/tiles) with the AnalogTile's mapping, periphery, update
policy and read-out (hw_models/tiles/analog.py, update.py, readout.py), for the arrays the torch
engine covers (hw_models/torch_engine.unsupported).

Random numbers: two torch generators on the tile's device (programming and write rounding; reads),
seeded from the numpy Generator the tile is made with; moving the tile to another device reseeds
them from draws of the old ones, so a seed still fixes every result on a given device.
"""

from __future__ import annotations

import numpy as np
import torch

from common.errors import ConfigError, OnchipError
from hw_models.device import DeviceConfig
from hw_models.periphery import compensation_factor
from hw_models.torch_engine import devices
from hw_models.torch_engine import unsupported
from hw_models.torch_engine.chain import TorchChain


def _generator(device: torch.device, seed: int) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(seed)


def _streams(tile: "TorchTile", rng: np.random.Generator) -> None:
    """The tile's two generators on its device (programming and write rounding; reads), seeded
    from two draws of rng."""
    seeds = rng.integers(0, 2 ** 63, 2)
    tile.gen = _generator(tile.torch_device, int(seeds[0]))
    tile.chain = TorchChain(tile.device.periphery, _generator(tile.torch_device, int(seeds[1])))


class TorchTile:
    """Arrays of `device` holding W (out, in), simulated in torch on `torch_device`.  forward /
    backward / weights take and return torch tensors (numpy arrays are accepted and converted)."""

    tensors = True  # torch_layers passes tensors, not numpy arrays

    def __init__(self, weight, device: DeviceConfig, rng: np.random.Generator,
                 torch_device: str | torch.device = "cpu") -> None:
        why = unsupported(device)
        if why:
            raise ConfigError(f"hardware.engine = 'torch': {why}")
        self.device = device
        self.torch_device = torch.device(torch_device)
        _streams(self, rng)
        w = self._tensor(weight)
        self.out_features, self.in_features = w.shape
        self.t_s = device.read_time_s
        self.program(w)

    def _tensor(self, a) -> torch.Tensor:
        t = torch.as_tensor(a) if not isinstance(a, torch.Tensor) else a
        return t.detach().to(device=self.torch_device, dtype=torch.float32)

    def _state_tensor(self, a) -> torch.Tensor:
        """A per-device state array as a tensor on this tile's device, its dtype kept (stuck flags
        are int8)."""
        t = torch.as_tensor(a) if not isinstance(a, torch.Tensor) else a
        return t.detach().to(device=self.torch_device).clone()

    # ---- programming and time ------------------------------------------------------------
    def program(self, weight) -> None:
        """Write W: per-row range w_max = headroom max|W[m, :]| (headroom 1 for an all-zero row),
        the pair mapping's targets, the program stages of the noise chain (torch_engine/devices.py)."""
        w = self._tensor(weight)
        absmax = w.abs().amax(dim=1) if w.numel() else torch.ones(w.shape[0], device=w.device)
        self.w_max = (self.device.weight_headroom * torch.where(absmax > 0, absmax, torch.ones_like(absmax)))[:, None]
        w_norm = torch.clamp(w / self.w_max, -1.0, 1.0)
        self.g_prog, self.states = [], []
        for target in self._targets(w_norm):
            g, state = self._program_devices(target)
            self.g_prog.append(g)
            self.states.append(state)
        self.refresh()
        self.written()

    def _targets(self, w_norm: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(G+, G-) targets (uS): one-sided pairs put one device at 0, symmetric pairs sit around
        gmax/2 (hw_models/tiles/mapping.py)."""
        gmax = self.device.gmax_uS
        if self.device.pair_mapping == "one_sided":
            return torch.clamp(w_norm, min=0.0) * gmax, torch.clamp(-w_norm, min=0.0) * gmax
        half = gmax / 2
        return half * (1 + w_norm), half * (1 - w_norm)

    def _program_devices(self, target: torch.Tensor, old=None) -> tuple[torch.Tensor, dict]:
        return devices.program(self.device.noise, target, self.device.gmax_uS, self.gen, old)

    def set_time(self, t_s: float) -> None:
        """Evaluate from now on at t_s seconds after programming (drift, frozen read noise drawn
        anew, drift compensation against the programmed state), as AnalogTile.set_time."""
        self.t_s = float(t_s)
        self.refresh()
        if self.device.periphery.drift_compensation:
            if self._reference is None:
                self._reference = self.chain.drift_readout((self.g_prog[0] - self.g_prog[1]) / self.device.gmax_uS, None)
            self.compensation = compensation_factor(self._reference, self.chain.drift_readout(self.g_eff, self.read_var))

    def written(self) -> None:
        """After a write: no compensation now; the reference readout is taken again when needed."""
        self._reference = None
        self.compensation = 1.0

    def _check_clock(self) -> None:
        if self.t_s != self.device.read_time_s:
            raise OnchipError(f"a write to an array read {self.t_s:g} s after programming: set_time("
                              f"{self.device.read_time_s:g}) (hardware.read_time_s) before training again")

    def refresh(self) -> None:
        """Conductances, effective weights and read variances of every device at t_s."""
        self.g_now, self.g_eff, self.read_var = self._read_out(self.g_prog, self.states)

    def _read_out(self, g_progs, states):
        gs, var = [], None
        for g, state in zip(g_progs, states):
            g, v = devices.read_out(self.device.noise, g, state, self.t_s, self.chain.gen)
            gs.append(g)
            if v is not None:
                var = v if var is None else var + v
        inv = 1.0 / self.device.gmax_uS
        return gs, (gs[0] - gs[1]) * inv, None if var is None else var * (inv * inv)

    # ---- reads ----------------------------------------------------------------------------
    def weights(self) -> torch.Tensor:
        """Effective weights (out, in) at the current time, without read noise."""
        return self.g_eff * self.w_max

    def weight_range(self) -> torch.Tensor:
        """w_max (M, 1): the weight of a pair at full conductance difference, fixed at programming."""
        return self.w_max

    def forward(self, x) -> torch.Tensor:
        """y = W x for a batch x (N, in) -> (N, out)."""
        y = self.chain.mvm(self._tensor(x), self.g_eff, self.read_var, self.device.tile_rows) * self.w_max.T
        return y * self.compensation if self.compensation != 1.0 else y

    def backward(self, d) -> torch.Tensor:
        """Transposed MVM W^T d (N, out) -> (N, in), same periphery and noise."""
        var_t = None if self.read_var is None else self.read_var.T
        return self.chain.mvm(self._tensor(d) * self.w_max.T, self.g_eff.T, var_t, self.device.tile_cols)

    # ---- writes -----------------------------------------------------------------------------
    def update(self, delta_w) -> None:
        """Apply a requested change (out, in) through the pairs' update policy (hw_models/tiles/
        update.py): one-sided pairs move by stochastically rounded whole increments of
        write_granularity (only moved pairs are re-programmed), or to clip(g_eff + dw, -1, 1)
        exactly when it is 0 (Reprogram); symmetric pairs take half the conductance change on G+
        and the opposite half on G- through the devices' update model (Pulsed)."""
        self._check_clock()
        dw_norm = self._tensor(delta_w) / self.w_max
        if self.device.pair_mapping == "one_sided":
            self._move(dw_norm)
        else:
            self._pulse(dw_norm)
        self.written()

    def _pulse(self, dw_norm: torch.Tensor) -> None:
        d = self.device
        half_dg = dw_norm * (d.gmax_uS / 2)
        for i, sign in enumerate((1.0, -1.0)):
            g = devices.update(d, self.g_prog[i], sign * half_dg, self.states[i], self.gen)
            self.g_prog[i] = devices.enforce(d.noise, g, self.states[i])
        self.refresh()

    def _move(self, dw_norm: torch.Tensor) -> None:
        e = self.device.write_granularity
        if e:
            u = torch.rand(dw_norm.shape, generator=self.gen, device=dw_norm.device)
            n = torch.floor(dw_norm / e + u)
            changed = n != 0
            targets = torch.clamp(self.g_eff + n * e, -1.0, 1.0)[changed]
        else:
            changed = dw_norm != 0
            targets = torch.clamp(self.g_eff + dw_norm, -1.0, 1.0)[changed]
        self.reprogram_at(changed, targets)

    def write(self, w_target) -> torch.Tensor:
        """Move the devices towards w_target; returns the weights they now hold."""
        self.update(self._tensor(w_target) - self.weights())
        return self.weights()

    def outer_update(self, x, d, lr: float) -> None:
        """Rank-N update W <- W - lr d^T x."""
        self.update(-lr * (self._tensor(d).T @ self._tensor(x)))

    def reprogram_at(self, mask: torch.Tensor, w_norm: torch.Tensor) -> None:
        """Re-write the pairs selected by a boolean (M, K) mask to normalized targets w_norm (in
        C order), then refresh just them (fresh frozen read noise for them alone)."""
        if w_norm.numel() == 0:
            return
        written = []
        for i, target in enumerate(self._targets(w_norm)):
            g, state = self._program_devices(target, devices.old_state(self.states[i], mask))
            self.g_prog[i][mask] = g
            for k, v in state.items():
                self.states[i][k][mask] = v
            written.append((g, state))
        gs, g_eff, var = self._read_out([g for g, _ in written], [s for _, s in written])
        for i, g in enumerate(gs):
            if self.g_now[i] is not self.g_prog[i]:
                self.g_now[i][mask] = g
        self.g_eff[mask] = g_eff
        if var is not None:
            self.read_var[mask] = var

    # ---- devices and state ------------------------------------------------------------------
    def to(self, torch_device) -> "TorchTile":
        """Move every tensor to torch_device; the generators are reseeded there from draws of the
        old ones."""
        dev = torch.device(torch_device)
        if dev == self.torch_device:
            return self
        move = lambda t: None if t is None else t.to(dev)  # noqa: E731
        old_prog = self.g_prog
        self.g_prog = [move(g) for g in self.g_prog]
        same = [g is p for g, p in zip(self.g_now, old_prog)]
        self.g_now = [self.g_prog[i] if same[i] else move(g) for i, g in enumerate(self.g_now)]
        self.states = [{k: move(v) for k, v in s.items()} for s in self.states]
        self.g_eff, self.read_var, self.w_max = move(self.g_eff), move(self.read_var), move(self.w_max)
        seeds = [int(torch.randint(0, 2 ** 62, (1,), generator=g, device=g.device)) for g in (self.gen, self.chain.gen)]
        self.gen, self.chain.gen = _generator(dev, seeds[0]), _generator(dev, seeds[1])
        self.torch_device = dev
        return self

    def state(self) -> dict:
        """Everything that makes this array what it is now (tensors as numpy arrays, generator
        states as uint8 arrays)."""
        cpu = lambda t: None if t is None else t.detach().cpu().numpy()  # noqa: E731
        return {"kind": "analog-torch", "g_prog": [cpu(g) for g in self.g_prog],
                "states": [{k: cpu(v) for k, v in s.items()} for s in self.states],
                "g_now": [cpu(g) for g in self.g_now], "g_now_is_prog": [g is p for g, p in zip(self.g_now, self.g_prog)],
                "g_eff": cpu(self.g_eff), "read_var": cpu(self.read_var), "w_max": cpu(self.w_max), "t_s": self.t_s,
                "compensation": self.compensation, "reference": self._reference,
                "generators": [g.get_state().numpy() for g in (self.gen, self.chain.gen)],
                "torch_device": str(self.torch_device)}

    def load_state(self, state: dict) -> None:
        """Restore a state() of an array of the same shape and device (on this tile's device)."""
        if state.get("kind") != "analog-torch" or tuple(np.shape(state["g_eff"])) != tuple(self.g_eff.shape):
            raise ValueError(f"not the state of a {tuple(self.g_eff.shape)} torch-engine array")
        t = self._tensor
        self.g_prog = [t(g).clone() for g in state["g_prog"]]
        self.states = [{k: self._state_tensor(v) for k, v in s.items()} for s in state["states"]]
        self.g_now = [self.g_prog[i] if same else t(g).clone()
                      for i, (g, same) in enumerate(zip(state["g_now"], state["g_now_is_prog"]))]
        self.g_eff, self.w_max = t(state["g_eff"]).clone(), t(state["w_max"]).clone()
        self.read_var = None if state["read_var"] is None else t(state["read_var"]).clone()
        self.t_s, self.compensation, self._reference = state["t_s"], state["compensation"], state["reference"]
        if state["torch_device"] == str(self.torch_device):
            for g, s in zip((self.gen, self.chain.gen), state["generators"]):
                g.set_state(torch.as_tensor(s, dtype=torch.uint8))

    @classmethod
    def from_analog(cls, tile, torch_device) -> "TorchTile":
        """A torch-engine copy of a numba-engine AnalogTile (hw_models/tiles/analog.py) on
        torch_device: its conductances, device properties, ranges, time and compensation; random
        streams seeded from draws of its Generator."""
        new = cls.__new__(cls)
        new.device = tile.device
        new.torch_device = torch.device(torch_device)
        _streams(new, tile.rng)
        new.out_features, new.in_features = tile.out_features, tile.in_features
        t = new._tensor
        new.g_prog = [t(g).clone() for g in tile.g_prog]
        new.states = [{k: new._state_tensor(v) for k, v in s.items()} for s in tile.states]
        new.g_now = [new.g_prog[i] if g is p else t(g).clone() for i, (g, p) in enumerate(zip(tile.g_now, tile.g_prog))]
        new.g_eff, new.w_max = t(tile.g_eff).clone(), t(tile.w_max).clone()
        new.read_var = None if tile.read_var is None else t(tile.read_var).clone()
        new.t_s, new.compensation, new._reference = tile.t_s, tile.compensation, tile._reference
        return new

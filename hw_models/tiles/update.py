"""Update policies of an analog array: how a requested weight change reaches the devices.

Reprogram (one-sided pairs): read-modify-write — the new target starts from the pair's current
effective weight g_eff (what the devices hold, never a float copy).  With write_granularity = 0
every pair with a nonzero request dw = delta_w / w_max gets the target clip(g_eff + dw, -1, 1).
With write_granularity e > 0 a pair moves by n whole increments of e, n = floor(dw / e + u) with
u ~ U[0, 1) (stochastic rounding: E[n e] = dw, unbiased; u counter-based from one key drawn from
the array's Generator), target clip(g_eff + n e, -1, 1), and only pairs with n != 0 are
re-programmed: fresh programming noise for those alone, the other devices keep their
conductance.  Ideal devices (no noise model, no compensation, exact writes) take a fused one-pass
write kernel.  Device properties (state) persist across writes.

Pulsed (symmetric pairs): half of the conductance change to G+, the opposite half to G-, through
the first noise model with an update stage (else exact, clipped to [0, gmax]).  A rank-N update
(x, d, lr) is update(-lr d^T x), except when that model takes stochastic pulse trains
(pulsed_constant with update_scheme = "pulse_train", aihwkit's scheme): then x and the per-device
conductance error d gmax / (2 w_max) of each output column go to its pulse_train_update, which
fires one pulse at G+ and one opposite pulse at G- per coincidence of a row and a column stream.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hw_models.kernels.pair import half_requests
from hw_models.kernels.pcm import granular_targets
from hw_models.kernels.program import one_sided_write

if TYPE_CHECKING:
    from hw_models.tiles.analog import AnalogTile


def update_model(device):
    """The first noise model of the device's chain with an update stage (None: exact updates)."""
    return next((m for m in device.noise if "update" in m.stages), None)


def takes_pulse_trains(device) -> bool:
    """Whether the device's update model fires aihwkit's stochastic pulse trains from (x, d)."""
    return bool(getattr(update_model(device), "pulse_train", False))


class _Policy:
    def outer_update(self, tile: AnalogTile, x: np.ndarray, d: np.ndarray, lr: float) -> None:
        """W <- W - lr d^T x, as a requested change."""
        self.update(tile, -np.float32(lr) * (d.T @ x))


class Reprogram(_Policy):
    """Writes re-program the pairs they change (one-sided pairs)."""

    def update(self, tile: AnalogTile, delta_w: np.ndarray) -> None:
        d = tile.device
        if d.write_granularity:
            idx, w_new, _ = granular_targets(np.ascontiguousarray(delta_w, dtype=np.float32),
                                             tile.w_max[:, 0], tile.g_eff, d.write_granularity, tile.rng)
            tile.reprogram_at(idx, w_new)
            return
        dw_norm = np.asarray(delta_w, dtype=np.float32) / tile.w_max
        w_norm, changed = np.clip(tile.g_eff + dw_norm, -1.0, 1.0), dw_norm != 0
        if not changed.all():
            tile.reprogram_at(changed, w_norm[changed])
            return
        tile.reprogram_all(w_norm)

    def write(self, tile: AnalogTile, w_target: np.ndarray) -> np.ndarray:
        d = tile.device
        if not d.noise and not d.periphery.drift_compensation and not d.write_granularity:
            w_target = np.ascontiguousarray(w_target, dtype=np.float32)
            out = np.empty_like(w_target)
            one_sided_write(w_target, tile.w_max[:, 0], d.gmax_uS, tile.g_prog[0], tile.g_prog[1],
                            tile.g_eff, out)
            return out
        if d.write_granularity:  # update(), fused with weights()
            idx, w_new, w_out = granular_targets(np.ascontiguousarray(w_target, dtype=np.float32),
                                                 tile.w_max[:, 0], tile.g_eff, d.write_granularity,
                                                 tile.rng, from_target=True)
            tile.reprogram_at(idx, w_new)
            rows = idx // tile.in_features
            np.put(w_out, idx, np.take(tile.g_eff, idx) * np.take(tile.w_max[:, 0], rows))
            return w_out
        tile.update(w_target - tile.weights())
        return tile.weights()


class Pulsed(_Policy):
    """Updates move both devices of a symmetric pair through the devices' update model."""

    def update(self, tile: AnalogTile, delta_w: np.ndarray) -> None:
        self.move(tile, self._requests(tile, delta_w))

    @staticmethod
    def _requests(tile: AnalogTile, w: np.ndarray, g_eff: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The requests of G+ and G- for a change w, or for a target w when g_eff is given."""
        return half_requests(w, tile.w_max, np.float32(tile.device.gmax_uS / 2), g_eff=g_eff, shape=tile.g_eff.shape)

    def move(self, tile: AnalogTile, requests: tuple[np.ndarray, np.ndarray]) -> None:
        """Move G+ and G- by their requested conductance changes (uS; kernels/pair.py
        half_requests: +-(delta_w / w_max) gmax / 2) through the update model, then store them."""
        d = tile.device
        model = update_model(d)
        moved = []
        for i, dg in enumerate(requests):
            g = tile.g_prog[i]
            if model is not None:
                moved.append(model.update(g, dg, d.gmax_uS, tile.states[i], tile.rng))
            else:
                moved.append(np.clip(g + dg, 0.0, d.gmax_uS))
        self._store(tile, moved)

    def outer_update(self, tile: AnalogTile, x: np.ndarray, d: np.ndarray, lr: float) -> None:
        """W <- W - lr d^T x: stochastic pulse trains when the update model takes them (module
        docstring), else update(-lr d^T x)."""
        dev = tile.device
        if not takes_pulse_trains(dev):
            super().outer_update(tile, x, d, lr)
            return
        d_uS = np.asarray(d, np.float32) * (np.float32(dev.gmax_uS / 2) / tile.w_max[:, 0])
        g_plus, g_minus, _ = update_model(dev).pulse_train_update(tile.g_prog, tile.states, x, d_uS, float(lr),
                                                                 dev.gmax_uS, tile.rng)
        self._store(tile, [g_plus, g_minus])

    @staticmethod
    def _store(tile: AnalogTile, moved: list[np.ndarray]) -> None:
        """The moved conductances of both polarities through every model's hard faults, stored as
        the devices' state; then the read-out."""
        for i, g in enumerate(moved):
            for model in tile.device.noise:
                g = model.enforce(g, tile.states[i])
            tile.g_prog[i] = np.ascontiguousarray(g, dtype=np.float32)
        tile.refresh()

    def write(self, tile: AnalogTile, w_target: np.ndarray) -> np.ndarray:
        """update(w_target - weights()), its change computed in one pass with the requests."""
        self.move(tile, self._requests(tile, w_target, g_eff=tile.g_eff))
        return tile.weights()


def update_policy(pair_mapping: str) -> Reprogram | Pulsed:
    """The policy of a pair mapping: one-sided pairs are re-programmed, symmetric pairs pulsed."""
    return Reprogram() if pair_mapping == "one_sided" else Pulsed()

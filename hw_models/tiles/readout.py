"""The devices of an array as they are read at a time after programming: drift, hard faults, read
noise (frozen into the conductances, or per read as a variance), and the gather/scatter helpers
with which a write refreshes only the devices it touched."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from hw_models.kernels.readout import add_noise_clamped, put_at
from hw_models.rng import NormalSource


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


def gather(a: np.ndarray, sel: np.ndarray) -> np.ndarray:
    """Devices of a (M, K) array selected by a boolean (M, K) mask or by flat C-order indices."""
    return a[sel] if sel.dtype == np.bool_ else np.take(a, sel)


def scatter(a: np.ndarray, sel: np.ndarray, values: np.ndarray) -> None:
    """a[sel] = values for a boolean mask, a.flat[sel] = values for ascending flat indices (on
    all cores: kernels/readout.py put_at)."""
    if sel.dtype == np.bool_:  # a mask of most devices: faster than a put of as many indices
        a[sel] = values
    else:
        put_at(a, sel, np.asarray(values, dtype=a.dtype))


class Subset(Mapping):
    """The per-device state arrays at the selected devices, gathered on first access (a model that
    keeps no properties across writes, like "pcm", never pays for the gather); `take(array, sel)`
    gathers (default `gather`; the torch engine passes tensors and a boolean mask tensor)."""

    def __init__(self, arrays: dict, sel, take=gather) -> None:
        self._arrays, self._sel, self._take, self._taken = arrays, sel, take, {}

    def __getitem__(self, key: str):
        if key not in self._taken:
            self._taken[key] = self._take(self._arrays[key], self._sel)
        return self._taken[key]

    def __contains__(self, key) -> bool:
        return key in self._arrays

    def __iter__(self):
        return iter(self._arrays)

    def __len__(self) -> int:
        return len(self._arrays)

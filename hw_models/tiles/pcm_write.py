"""Fused write of one-sided PCM pairs: the re-programming of the pairs a training step changes on
an array whose only noise model is "pcm" (the pcm preset), done in one parallel pass
(kernels/pcm.py pcm_write_at) instead of program + read-out + scatter per polarity.

It equals the general path of AnalogTile.reprogram_at bit for bit (tests/test_pcm_write.py): the
same keys are drawn from the same streams in the same order (the array's Generator: one per
polarity for the programming normals; the read-noise source: one per polarity for the frozen read
noise), and every float32 operation is the general path's.  It applies only where the general
path's read-out is the identity or frozen read noise: no drift (the array is read at its
programming time, as during training), and a read noise that is "frozen" or off.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from hw_models.kernels.pcm import NU_NONE, pcm_write_at
from hw_models.kernels.quantize import seed_key
from hw_models.noise.pcm import NU_KEY, PCM, Q_KEY

if TYPE_CHECKING:
    from hw_models.tiles.analog import AnalogTile


def fused_write(tile: AnalogTile, idx: np.ndarray, w_norm: np.ndarray) -> bool:
    """Re-program the pairs at ascending int64 flat indices idx to normalized targets w_norm and
    refresh them, if this array qualifies (then True); else do nothing and return False."""
    d = tile.device
    if d.pair_mapping != "one_sided" or len(d.noise) != 1 or not isinstance(d.noise[0], PCM):
        return False
    model = d.noise[0]
    if idx.dtype != np.int64 or model._log_ratio(tile.t_s) != 0:
        return False
    factor = model._time_factor(tile.t_s)
    if factor != 0 and not model.frozen_read:
        return False
    if any((tile.g_now[i] is tile.g_prog[i]) != (factor == 0) for i in (0, 1)):
        return False  # (read-out not as the general path left it: let it handle this write)
    arrays = [*tile.g_prog, *tile.g_now, tile.g_eff, *(v for s in tile.states for v in s.values())]
    if any(a.dtype != np.float32 or not a.flags.c_contiguous for a in arrays):
        return False
    args = model.kernel_args()
    draws_prog = args["nu_law"] != NU_NONE or args["prog_noise_scale"] > 0
    prog_keys = [seed_key(tile.rng) for _ in range(2)] if draws_prog else None
    read_keys = [seed_key(tile.normals.stream) for _ in range(2)] if factor != 0 else None
    empty = np.empty(0, np.float32)

    def flat(i: int, key: str) -> np.ndarray:
        return tile.states[i][key].reshape(-1) if key in tile.states[i] else empty

    pcm_write_at(idx, np.ascontiguousarray(w_norm, dtype=np.float32), d.gmax_uS, prog_keys, factor, read_keys,
                 [g.reshape(-1) for g in tile.g_prog], [flat(0, NU_KEY), flat(1, NU_KEY)],
                 [flat(0, Q_KEY), flat(1, Q_KEY)], [g.reshape(-1) for g in tile.g_now],
                 tile.g_eff.reshape(-1), **args)
    return True

"""The fused write of one-sided PCM pairs (tiles/pcm_write.py, kernels/pcm.py pcm_write_at) equals
the general path (program + read-out + scatter per polarity) bit for bit, on every variant of the
pcm model that it takes, and it leaves the others to the general path."""

import dataclasses

import numpy as np
import pytest

from hw_models.noise.pcm import PCM
from hw_models.presets import preset
from hw_models.tiles import make_tile
import hw_models.tiles.analog as analog_mod

VARIANTS = {
    "preset": {},
    "no read noise": {"read_noise_scale": 0.0},
    "no programming noise": {"prog_noise_scale": 0.0},
    "constant law": {"drift_law": "constant"},
    "no drift": {"drift_scale": 0.0},
    "exact": {"prog_noise_scale": 0.0, "drift_scale": 0.0, "read_noise_scale": 0.0},
}


def _device(read_time_s=0.0, **pcm):
    d = preset("pcm")
    return dataclasses.replace(d, read_time_s=read_time_s, noise=(dataclasses.replace(d.noise[0], **pcm),))


def _arrays(tile) -> list[np.ndarray]:
    return [*tile.g_prog, *tile.g_now, tile.g_eff, *(v for s in tile.states for v in s.values()),
            tile.rng.integers(0, 2 ** 63, 4), tile.normals.standard_normal((8,))]


def _train(device, fused: bool, monkeypatch, steps=3):
    if not fused:
        monkeypatch.setattr(analog_mod, "fused_write", lambda *a: False)
    rng = np.random.default_rng(0)
    w = (rng.standard_normal((40, 70)) * 0.1).astype(np.float32)
    tile = make_tile(w, device, np.random.default_rng(1))
    for s in range(steps):
        tile.update((rng.standard_normal(w.shape) * 0.01).astype(np.float32))
        tile.forward(rng.standard_normal((5, 70)).astype(np.float32))
    monkeypatch.undo()
    return tile


@pytest.mark.parametrize("variant", VARIANTS)
def test_fused_write_equals_the_general_path_bit_for_bit(variant, monkeypatch):
    device = _device(**VARIANTS[variant])
    calls = []
    real = analog_mod.fused_write
    monkeypatch.setattr(analog_mod, "fused_write", lambda *a: calls.append(1) or real(*a))
    fused = _train(device, True, monkeypatch)
    assert calls, "the fused path did not run"
    general = _train(device, False, monkeypatch)
    for a, b in zip(_arrays(fused), _arrays(general), strict=True):
        assert np.array_equal(a, b)


def test_arrays_read_after_programming_take_the_general_path(monkeypatch):
    """A write at a later read time (drift) or with per-read noise is not fused."""
    for device in (_device(read_time_s=3600.0), _device(read_noise="per_read")):
        tile = make_tile(np.ones((4, 6), np.float32), device, np.random.default_rng(0))
        from hw_models.tiles.pcm_write import fused_write
        assert not fused_write(tile, np.arange(3, dtype=np.int64), np.zeros(3, np.float32))


def test_pcm_alone_is_fused_and_chains_are_not():
    from hw_models.tiles.pcm_write import fused_write
    from hw_models.noise import get
    chain = dataclasses.replace(preset("pcm"), noise=(PCM(), get("stuck_at")()))
    tile = make_tile(np.ones((4, 6), np.float32), chain, np.random.default_rng(0))
    assert not fused_write(tile, np.arange(3, dtype=np.int64), np.zeros(3, np.float32))

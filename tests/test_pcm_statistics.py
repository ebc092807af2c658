"""The pcm model's conductance after programming, drift and read noise, as a deployed device holds
it (aihwkit's program_weights + drift_weights(t)): sample moments of G(t)/gmax over 10^6 devices
per target, at g in {0.05, 0.1, 0.25, 0.5, 0.75, 1} x t in {1 h, 1 day, 1 month, 1 year}, within 3
standard errors of PCM.conductance_moments, which agrees with its numerical-integration twin
(tests/naive.py) to 1e-6.  Samples go through the crossbar's own read-out (drift, faults, frozen
read noise)."""

from __future__ import annotations

import numpy as np
import pytest

from hw_models.tiles.readout import read_out
from hw_models.noise.pcm import PCM
from hw_models.rng import NormalSource

from naive import naive_pcm_conductance_moments
from test_noise_models import assert_moments

GMAX = 25.0
G_NORM = (0.05, 0.1, 0.25, 0.5, 0.75, 1.0)
TIMES_S = {"1 h": 3600.0, "1 day": 86400.0, "1 month": 2.592e6, "1 year": 3.1536e7}
N_DEVICES = 1_000_000


@pytest.mark.parametrize("g_norm", G_NORM)
def test_conductance_moments_match_a_million_devices(g_norm):
    model = PCM()
    rng = np.random.default_rng(int(g_norm * 1000))
    target = np.full(N_DEVICES, g_norm * GMAX, np.float32)
    g_prog, state = model.program(target, GMAX, rng)
    normals = NormalSource(rng)
    for label, t_s in TIMES_S.items():
        mean, std = model.conductance_moments(g_norm * GMAX, GMAX, t_s)
        g, var = read_out((model,), g_prog, state, t_s, normals)
        assert var is None and g.min() >= 0  # frozen noise: in the conductance, clamped at 0
        assert_moments(g.astype(np.float64) / GMAX, float(mean) / GMAX, float(std) / GMAX,
                       f"G({label})/gmax at g = {g_norm}")


def test_per_read_moments_match_samples():
    """read_noise = "per_read": one read is G(t) (1 + s xi), unclamped; its moments likewise."""
    model = PCM(read_noise="per_read")
    rng = np.random.default_rng(5)
    for g_norm in (0.05, 1.0):
        g_prog, state = model.program(np.full(N_DEVICES, g_norm * GMAX, np.float32), GMAX, rng)
        g, var = read_out((model,), g_prog, state, 86400.0, NormalSource(rng))
        read = g.astype(np.float64) + np.sqrt(var) * rng.standard_normal(g.shape)
        mean, std = model.conductance_moments(g_norm * GMAX, GMAX, 86400.0)
        assert_moments(read / GMAX, float(mean) / GMAX, float(std) / GMAX, f"per-read G/gmax at g = {g_norm}")


@pytest.mark.parametrize("model", [PCM(), PCM(drift_law="constant"), PCM(read_noise="per_read"),
                                   PCM(prog_noise_scale=0.0), PCM(drift_scale=2.0, read_noise_scale=0.5)],
                         ids=["aihwkit", "constant", "per_read", "no_prog_noise", "scaled"])
def test_conductance_moments_match_their_integration_twin(model):
    for g_norm in (0.0, 0.005, 0.05, 0.25, 1.0):
        for t_s in (0.0, 1.0, 86400.0, 3.1536e7):
            mean, std = model.conductance_moments(g_norm * GMAX, GMAX, t_s)
            want_mean, want_std = naive_pcm_conductance_moments(model, g_norm * GMAX, GMAX, t_s)
            np.testing.assert_allclose([float(mean), float(std)], [want_mean, want_std], rtol=1e-6, atol=1e-9,
                                       err_msg=f"g = {g_norm}, t = {t_s}")

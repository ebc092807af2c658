"""aihwkit's stochastic pulse-train update (hw_models/kernels/pulse_train.py; pulsed_constant's
update_scheme = "pulse_train"; AnalogTile.outer_update): kernel against its twin in tests/naive.py,
the update-management formulas, coincidence statistics (Binomial(BL, p_x p_d) per device and
sample), the mean update -lr d^T x through a tile, the wiring (update() and the default scheme
unchanged) and config errors."""

import math

import numpy as np
import pytest
from naive import naive_pulse_train_management, naive_pulse_train_update

from common.errors import ConfigError
from hw_models.device import DeviceConfig
from hw_models.kernels import pulse_train as P
from hw_models.noise.pulsed_constant import PulsedConstant
from hw_models.tiles.analog import AnalogTile

jitfree = pytest.mark.jitfree
F32 = np.float32
DW = 0.0625  # a nominal step exact in float32: counts are exact conductance multiples
NOM = (DW, DW, 25.0)  # (step_up, step_down, gmax) of a nominal device


def _batch(rng, n, k, m, d_scale=1.0):
    x = (rng.normal(0, 1, (n, k)) * (rng.random((n, k)) < 0.7)).astype(F32)  # ~30% exact zeros
    d = (rng.normal(0, d_scale, (n, m)) * (rng.random((n, m)) < 0.8)).astype(F32)
    return x, d


def _close(samples, mean, var, k=4.0):
    """Per-device sample mean and variance agree with (mean, var) within k standard errors."""
    s = np.asarray(samples, np.float64)
    m, v = s.mean(axis=0), s.var(axis=0)
    se_m = np.sqrt(v / s.shape[0]) + 1e-12
    se_v = np.sqrt(((s - m) ** 2).var(axis=0) / s.shape[0]) + 1e-12
    assert np.all(np.abs(m - mean) <= k * se_m), (m, mean, se_m)
    assert np.all(np.abs(v - var) <= k * se_v), (v, var, se_v)


# ---- kernel against twin ----------------------------------------------------------------------
@jitfree
@pytest.mark.parametrize("shape", [(0, 1, 1), (1, 1, 1), (3, 5, 4), (6, 2, 7), (2, 3, 40)])  # (N, K, M)
@pytest.mark.parametrize("per_device", [False, True])
@pytest.mark.parametrize("std,lr,bl,um,ublm", [(0.0, 0.01, 31, True, True), (0.3, 0.3, 31, True, True),
                                               (0.3, -0.05, 7, True, False), (0.3, 2.0, 64, False, False),
                                               (0.0, 0.5, 1, False, True)])
def test_kernel_is_bit_exact_with_twin(shape, per_device, std, lr, bl, um, ublm):
    n, k, m = shape
    rng = np.random.default_rng(n + 10 * k + 100 * m + int(per_device))
    g_plus = rng.uniform(-0.5, 25.5, (m, k)).astype(F32)  # some outside the bounds
    g_minus = rng.uniform(0, 25, (m, k)).astype(F32)
    x, d = _batch(rng, n, k, m, d_scale=rng.choice([0.01, 1.0, 30.0]))  # 30: k > BL, saturation

    def steps():
        if per_device:
            ranges = ((0.02, 0.08), (0.02, 0.08), (20, 25))  # step_up, step_down, gmax
            return tuple(rng.uniform(lo, hi, m * k).astype(F32) for lo, hi in ranges)
        return (0.05, 0.04, 25.0)

    sp, sm = steps(), steps()
    args = (g_plus, g_minus, x, d, lr, 0.05, sp, sm, 0.5, std)
    gp, gm, c = P.pulse_train_update(*args, np.uint64(77), bl, um, ublm)
    wp, wm, wc = naive_pulse_train_update(*args, 77, bl, um, ublm)
    assert gp.dtype == gm.dtype == F32 and gp.shape == gm.shape == (m, k)
    np.testing.assert_array_equal(gp, wp)
    np.testing.assert_array_equal(gm, wm)
    assert c == wc


@jitfree
def test_management_matches_twin_and_formulas():
    rng, dw = np.random.default_rng(3), 0.05
    x_max = np.r_[0.0, rng.uniform(0.01, 2, 40)]
    d_max = np.r_[1.0, 10 ** rng.uniform(-4, 1, 40)]
    x, d = np.diag(x_max), np.diag(d_max)  # row n has max |x| = x_max[n]
    for lr in (0.0, 0.003, 0.4):
        for um, ublm in ((False, False), (True, False), (False, True), (True, True)):
            bl, b, a = P.management(x, d, lr, dw, 31, um, ublm)
            want = [naive_pulse_train_management(xm, dm, lr, dw, 31, um, ublm)
                    for xm, dm in zip(x_max, d_max)]
            assert bl.tolist() == [w[0] for w in want] and b.tolist() == [w[1] for w in want]
            assert a.tolist() == [w[2] for w in want]
            assert bl[0] == 0 and (lr == 0 or (bl[1:] > 0).all())
    # the documented formulas, one sample, k = lr x_max d_max / dw
    xs, ds = np.array([[1.0, -0.5]]), np.array([[0.2, 0.1]])
    for lr, ublm, bl_want in ((0.625, True, 3), (0.625, False, 31), (25.0, True, 31)):
        k = lr * 1.0 * 0.2 / dw  # 2.5 or 100
        bl, b, a = P.management(xs, ds, lr, dw, 31, True, ublm)
        assert bl[0] == bl_want
        p_x, p_d = b[0] * 1.0, a[0] * 0.2
        if k <= 31:  # balanced: both maxima fire with sqrt(k / BL); E[c] = lr x d / dw
            assert p_x == pytest.approx(math.sqrt(k / bl_want)) and p_d == pytest.approx(p_x)
        else:  # saturated: x_max always fires, d_max with k / BL > 1: the update is clipped to BL
            assert p_x == pytest.approx(1.0) and p_d == pytest.approx(k / 31)
    bl, b, a = P.management(xs, ds, 0.625, dw, 31, False, False)
    assert bl[0] == 31 and a[0] == b[0] == math.sqrt(0.625 / (dw * 31))


# ---- statistics -------------------------------------------------------------------------------
@pytest.mark.parametrize("um,ublm,lr", [(False, False, 0.9 * DW * 31), (True, True, 0.9 * DW * 31),
                                        (True, True, 0.3), (True, True, 50 * DW)])
def test_coincidences_are_binomial_per_device(um, ublm, lr):
    """One sample, many keys: a device's count is Binomial(BL, min(p_x, 1) min(p_d, 1)) (its row
    and column streams are independent); the last case saturates (k = 40 > BL = 31); the total
    over devices averages to expected_coincidences."""
    x = np.array([[1.0, 0.5, -0.25]], F32)
    d = np.array([[0.8, -0.3]], F32)
    g = np.full((2, 3), 12.5, F32)
    bl, b, a = P.management(x, d, lr, DW, 31, um, ublm)
    q = np.minimum(np.abs(d[0])[:, None] * a[0], 1) * np.minimum(np.abs(x[0])[None, :] * b[0], 1)
    reps = 4000
    counts, totals = np.empty((reps, 2, 3)), np.empty(reps)
    for r in range(reps):
        gp, gm, totals[r] = P.pulse_train_update(g, g, x, d, lr, DW, NOM, NOM, 0.0, 0.0, np.uint64(r),
                                                 31, um, ublm)
        counts[r] = np.abs(gp - 12.5) / DW
        np.testing.assert_array_equal(gp - 12.5, 12.5 - gm)  # one pulse each, opposite directions
    np.testing.assert_array_equal(counts, np.round(counts))
    np.testing.assert_array_equal(counts.sum(axis=(1, 2)), totals)
    fired = counts[-1] > 0
    assert np.all(np.sign(gp - 12.5)[fired] == -np.sign(d[0][:, None] * x[0][None, :])[fired])  # w -= lr x d
    _close(counts.reshape(reps, -1), (bl[0] * q).ravel(), (bl[0] * q * (1 - q)).ravel())
    exp = P.expected_coincidences(x, d, lr, DW, 31, um, ublm)
    assert exp == pytest.approx(float((bl[0] * q).sum()), rel=1e-12)
    assert abs(totals.mean() - exp) <= 4 * totals.std() / np.sqrt(reps)
    if lr == 50 * DW:
        assert bl[0] == 31 and q[0, 0] == 1.0  # clipped: every bit of the largest pair fires


def _tile(seed, w, **kw):
    model = PulsedConstant(update_scheme="pulse_train", dw_min_dtod=0.0, up_down_dtod=0.0, gmax_dtod=0.0,
                           **kw)
    return AnalogTile(w, DeviceConfig(noise=(model,), pair_mapping="symmetric", weight_headroom=2.0),
                      np.random.default_rng(seed))


def test_tile_mean_update_is_sgd():
    """E[W' - W] = -lr d^T x through AnalogTile.outer_update (no clipping: weights far from the
    bounds; no saturation: k <= BL), with cycle-to-cycle noise and up/down asymmetry."""
    rng = np.random.default_rng(5)
    w = rng.normal(0, 0.1, (4, 6)).astype(F32)
    x = (rng.uniform(0, 1, (8, 6)) * (rng.random((8, 6)) < 0.6)).astype(F32)
    d = rng.normal(0, 0.05, (8, 4)).astype(F32)
    lr, reps = 0.05, 2000
    deltas = np.empty((reps, 4, 6))
    for r in range(reps):
        tile = _tile(r, w, dw_min_std=0.3, up_down=0.2)
        before = tile.weights()
        tile.outer_update(x, d, lr)
        deltas[r] = tile.weights() - before
    m, se = deltas.mean(axis=0), deltas.std(axis=0) / np.sqrt(reps)
    want = -lr * (d.T.astype(np.float64) @ x)
    assert np.all(np.abs(m - want) <= 4 * se + 1e-7), (m, want, se)
    assert np.abs(want).max() > 10 * se.max()  # the test can tell the update from zero


@jitfree
def test_wiring_update_and_default_scheme_unchanged():
    rng = np.random.default_rng(6)
    w = rng.normal(0, 0.1, (5, 7)).astype(F32)
    x, d = _batch(rng, 4, 7, 5, d_scale=0.1)
    dw = -np.float32(0.02) * (d.T @ x)
    train, count = _tile(1, w), AnalogTile(w, DeviceConfig(noise=(PulsedConstant(
        dw_min_dtod=0.0, up_down_dtod=0.0, gmax_dtod=0.0),), weight_headroom=2.0), np.random.default_rng(1))
    train.update(dw)  # no x, d: the pulse-count law in either scheme
    count.update(dw)
    np.testing.assert_array_equal(train.weights(), count.weights())
    a, b = _tile(2, w), _tile(2, w)
    a.outer_update(x, d, 0.02)
    b.outer_update(x, d, 0.02)
    np.testing.assert_array_equal(a.weights(), b.weights())  # same seed, same pulses
    c = _tile(2, w)
    c.update(dw)
    assert not np.array_equal(a.weights(), c.weights())  # outer_update took the pulse trains
    off = AnalogTile(w, DeviceConfig(noise=(PulsedConstant(enabled=False, update_scheme="pulse_train"),)),
                     np.random.default_rng(3))
    ref = AnalogTile(w, DeviceConfig(noise=(PulsedConstant.zero(),)), np.random.default_rng(3))
    off.outer_update(x, d, 0.02)
    ref.update(dw)
    np.testing.assert_array_equal(off.weights(), ref.weights())  # "off" is the ideal device


@jitfree
def test_zero_rate_and_errors():
    rng = np.random.default_rng(7)
    g = rng.uniform(0, 25, (3, 4)).astype(F32)
    x, d = _batch(rng, 2, 4, 3)
    gp, gm, c = P.pulse_train_update(g, g, x, d, 0.0, DW, NOM, NOM, 0.0, 0.3, np.uint64(1))
    assert c == 0 and np.array_equal(gp, g) and np.array_equal(gm, g)
    with pytest.raises(ValueError, match="do not fit"):
        P.pulse_train_update(g, g, x, d[:, :2], 0.1, DW, NOM, NOM, 0.0, 0.3, np.uint64(1))
    with pytest.raises(ValueError, match="desired_bl"):
        P.pulse_train_update(g, g, x, d, 0.1, DW, NOM, NOM, 0.0, 0.3, np.uint64(1), desired_bl=65)
    with pytest.raises(ValueError, match="finite"):
        P.pulse_train_update(g, g, x * np.nan, d, 0.1, DW, NOM, NOM, 0.0, 0.3, np.uint64(1))


@jitfree
@pytest.mark.parametrize("field,value,rule", [
    ("update_scheme", "aihwkit", "one of 'pulse_count', 'pulse_train'"),
    ("desired_bl", 0, "an integer in 1..64"),
    ("desired_bl", 65, "an integer in 1..64"),
    ("desired_bl", 3.0, "an integer in 1..64"),
    ("update_management", 1, "true or false"),
    ("update_bl_management", "yes", "true or false"),
])
def test_config_errors_name_the_field(field, value, rule):
    with pytest.raises(ConfigError) as e:
        PulsedConstant(**{field: value})
    assert str(e.value) == f"hardware.pulsed_constant.{field} must be {rule}, got {value!r}"


def test_sgd_training_on_pulse_train_arrays_steps_by_pulse_trains(monkeypatch):
    """A learner on pulsed_constant arrays with update_scheme = "pulse_train", stepped by plain SGD:
    every layer's step is the pulse-train update of its (x, d) (AnalogTile.outer_update, never a
    write), and DF still learns; with Adam the arrays take the requested writes (pulse counts)."""
    from conftest import tiny_config
    from onchip_ff.data import load_dataset
    from onchip_ff.trainer import train
    from hw_models.tiles.analog import AnalogTile
    calls = {"outer": 0, "write": 0}
    outer, write = AnalogTile.outer_update, AnalogTile.write
    monkeypatch.setattr(AnalogTile, "outer_update", lambda t, *a: calls.__setitem__("outer", calls["outer"] + 1) or outer(t, *a))
    monkeypatch.setattr(AnalogTile, "write", lambda t, *a: calls.__setitem__("write", calls["write"] + 1) or write(t, *a))
    hw = ["hardware.backend=sim", "hardware.preset=reram_pulsed", 'hardware.noise=["pulsed_constant"]',
          'hardware.pulsed_constant.update_scheme="pulse_train"', "hardware.pulsed_constant.dw_min_uS=0.01"]
    cfg = tiny_config("df", extra=hw + ["train.optimizer=sgd", "train.lr=0.05"])
    acc = train(cfg, load_dataset(cfg.data)).metrics["test_accuracy"]
    assert calls["outer"] > 0 and calls["write"] == 0
    assert acc > 0.5, acc
    calls.update(outer=0, write=0)
    cfg = tiny_config("df", extra=hw + ["train.optimizer=adam"], epochs=1)
    train(cfg, load_dataset(cfg.data))
    assert calls["outer"] == 0 and calls["write"] > 0

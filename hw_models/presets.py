"""Named device presets (compositions of DeviceConfig, PeripheryConfig and noise models, sources
cited) and the resolution of a config's [hardware] table: preset + overrides -> DeviceConfig.

[hardware] keys: backend, preset, noise (list of model names, replaces the preset's chain), any
DeviceConfig field (gmax_uS, tile_rows, weight_bits, ...), any PeripheryConfig field (dac_bits,
adc_bits, out_noise, ...), and one sub-table per noise model, e.g. [hardware.pcm] drift_nu_mean.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from hw_models.device import DeviceConfig
from hw_models.noise import registry
from hw_models.periphery import PeripheryConfig
from common.tomlfile import typed_fields
from common.errors import ConfigError


def _ideal() -> DeviceConfig:
    # exact float arithmetic; w_max = 100 max|W| so that training never reaches a conductance bound;
    # one-sided pairs keep full float32 precision of small weights (gmax/2 (1 +- w) would not)
    return DeviceConfig(weight_headroom=100.0, pair_mapping="one_sided")


def _fixed8() -> DeviceConfig:
    # 8-bit weights (per-output scale) and activations (per-vector scale), int32 accumulators,
    # stochastic rounding of updates to the weight LSB (Gupta et al., "Deep Learning with Limited
    # Numerical Precision", ICML 2015); w_max = 2 max|W| leaves room for weights to grow.
    return DeviceConfig(weight_bits=8, input_bits=8, acc_bits=32, weight_headroom=2.0,
                        update_rounding="stochastic")


def _pcm() -> DeviceConfig:
    # PCM inference tile as aihwkit's InferenceRPUConfig + PCMLikeNoiseModel (Joshi et al., Nature
    # Comm. 11, 2473 (2020); Nandakumar et al. 2020): gmax 25 uS, one-sided pair mapping, 8-bit
    # DAC/ADC (inp_res = out_res = 1/254 in aihwkit's io parameters), out_bound 10, output noise
    # 0.04 (the paper's measured 4%), global drift compensation.  Reads during training happen
    # right after programming (read_time_s = 0: aihwkit's t_inference = 0, i.e. t = t0 = 20 s in
    # the drift law, no drift, 1/f noise of 20 s).  Training re-programs pairs in
    # increments of write_granularity = 0.038 w_max (stochastically rounded, AnalogTile.update): the
    # model's own programming noise at mid conductance, sigma_prog(gmax / 2) = 0.26348 + 1.9650 / 2
    # - 1.1731 / 4 = 0.953 uS = 0.038 gmax (pcm.py polynomial), i.e. a re-programming cannot place a
    # device closer than about this to its target anyway; update granularity as in the
    # mixed-precision PCM training of Nandakumar et al., Front. Neurosci. 14, 406 (2020), there with
    # a digital accumulator, here unbiased by stochastic rounding.
    return DeviceConfig(
        gmax_uS=25.0, pair_mapping="one_sided", weight_headroom=1.0, read_time_s=0.0,
        write_granularity=0.038,
        periphery=PeripheryConfig(dac_bits=8, adc_bits=8, out_bound=10.0, out_noise=0.04,
                                  bound_management=True, drift_compensation=True),
        noise=(registry.get("pcm")(),))


def _reram_pulsed() -> DeviceConfig:
    # ReRAM with pulsed, nonlinear, asymmetric conductance response (NeuroSim's Ag:a-Si device,
    # Chen et al., IEEE TCAD 2018), symmetric pair mapping, 8-bit DAC/ADC.
    return DeviceConfig(
        gmax_uS=25.0, pair_mapping="symmetric", weight_headroom=2.0, read_time_s=0.0,
        periphery=PeripheryConfig(dac_bits=8, adc_bits=8, out_bound=12.0),
        noise=(registry.get("pulsed_nonlinear").example(),))


PRESETS = {"ideal": _ideal, "fixed8": _fixed8, "pcm": _pcm, "reram_pulsed": _reram_pulsed}


def preset(name: str) -> DeviceConfig:
    if name not in PRESETS:
        raise ConfigError(f"hardware.preset must be one of {', '.join(sorted(PRESETS))}, got {name!r}")
    return PRESETS[name]()


HARDWARE_TABLE = "the [hardware] table"
DEVICE_KEYS = [f.name for f in dataclasses.fields(DeviceConfig) if f.name not in ("periphery", "noise")]
PERIPHERY_KEYS = [f.name for f in dataclasses.fields(PeripheryConfig)]


def resolve(raw: dict[str, Any], stored: bool = False) -> tuple[str, str, DeviceConfig]:
    """[hardware] table -> (backend, preset name, validated DeviceConfig); a hardware setting that
    does nothing on the torch backend is an error, except in a stored config (stored=True: a
    resolved config of older code, whose defaults may have changed since)."""
    raw = dict(raw)
    backend = raw.pop("backend", "torch")
    name = raw.pop("preset", "ideal")
    if not isinstance(backend, str) or backend not in ("torch", "sim"):
        raise ConfigError(f"hardware.backend must be 'torch' or 'sim', got {backend!r}")
    if not isinstance(name, str):
        raise ConfigError(f"hardware.preset must be a preset name, got {name!r}")
    base = preset(name)
    chain = {m.name: m for m in base.noise}
    order = [m.name for m in base.noise]
    if "noise" in raw:
        names = raw.pop("noise")
        if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
            raise ConfigError(f"hardware.noise must be a list of noise model names, got {names!r}")
        order = [registry.get(n).name for n in names]
        chain = {n: chain.get(n) or registry.get(n)() for n in order}
    device_kw, periphery_kw = {}, {}
    for key, value in raw.items():
        if isinstance(value, dict):
            if key not in chain:
                known = ", ".join(registry.names())
                raise ConfigError(f"[hardware.{key}]: {key!r} is not in this device's noise chain "
                                  f"({order}); add it with hardware.noise = [...] (models: {known})")
            chain[key] = dataclasses.replace(chain[key], **typed_fields(type(chain[key]), value, f"hardware.{key}",
                                                                       HARDWARE_TABLE))
        elif key in DEVICE_KEYS:
            device_kw[key] = value
        elif key in PERIPHERY_KEYS:
            periphery_kw[key] = value
        else:
            raise ConfigError(f"unknown key hardware.{key}; valid keys: backend, preset, noise, "
                              + ", ".join(DEVICE_KEYS + PERIPHERY_KEYS) + ", or a [hardware.<model>] table")
    periphery = dataclasses.replace(base.periphery, **typed_fields(PeripheryConfig, periphery_kw, "hardware",
                                                                           HARDWARE_TABLE))
    device = dataclasses.replace(base, periphery=periphery, noise=tuple(chain[n] for n in order),
                                 **typed_fields(DeviceConfig, device_kw, "hardware", HARDWARE_TABLE))
    if backend == "torch" and not stored:
        _nothing_on_torch(name, base, device)
    return backend, name, device


def _nothing_on_torch(name: str, base: DeviceConfig, device: DeviceConfig) -> None:
    """The torch backend computes in float32 on no device at all: a preset other than "ideal" or
    a hardware field that differs from its preset would do nothing, so it is an error."""
    if name != "ideal" or device != base:
        changed = [f"hardware.{k}" for k in DEVICE_KEYS if getattr(device, k) != getattr(base, k)]
        changed += [f"hardware.{k}" for k in PERIPHERY_KEYS if getattr(device.periphery, k) != getattr(base.periphery, k)]
        if device.noise != base.noise:
            changed.append("hardware.noise")
        what = ", ".join(changed) or f"hardware.preset = {name!r}"
        raise ConfigError(f"{what} does nothing with hardware.backend = 'torch' (the float reference); "
                          "set hardware.backend = 'sim' to run on the simulated hardware")


def to_dict(backend: str, name: str, device: DeviceConfig) -> dict[str, Any]:
    """Fully resolved [hardware] table (inverse of resolve)."""
    def plain(v):
        return list(v) if isinstance(v, tuple) else v
    out: dict[str, Any] = {"backend": backend, "preset": name}
    out.update({k: plain(getattr(device, k)) for k in DEVICE_KEYS})
    out.update({k: plain(getattr(device.periphery, k)) for k in PERIPHERY_KEYS})
    out["noise"] = [m.name for m in device.noise]
    for m in device.noise:
        out[m.name] = {f.name: plain(getattr(m, f.name)) for f in dataclasses.fields(m)}
    return out

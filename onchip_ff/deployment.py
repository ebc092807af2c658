"""Train-then-deploy: program trained weights onto simulated tiles (a hardware preset on the sim
backend) and evaluate the test accuracy at times after programming, with and without global drift
compensation. Used by the trainer when [deploy] preset is set and by `onchip-ff deploy`."""

from __future__ import annotations

from typing import Any

import torch

from common.errors import ConfigError
from onchip_ff import config
from onchip_ff.methods import build_learner

TIME_LABELS = {1.0: "1 s", 3600.0: "1 h", 86400.0: "1 day", 2.592e6: "1 month", 3.1536e7: "1 year"}


def time_label(t_s: float) -> str:
    return TIME_LABELS.get(float(t_s), f"{t_s:g} s")


def deploy_config(cfg: config.Config, overrides: list[str]) -> config.Config:
    """The run's config on the sim backend with only the hardware `overrides` (validated): the
    training hardware is replaced, the rest of the config kept.  Overrides of other sections would
    do nothing (the run is trained already): a one-line error."""
    for text in overrides:
        parts, _ = config.parse_override(text)
        if parts[0] != "hardware":
            raise ConfigError(f"--set {text}: deployment takes hardware.* settings only; "
                              f"{'.'.join(parts)} would do nothing (the run is trained already)")
    raw = config.to_dict(cfg)
    raw["hardware"] = {"backend": "sim"}
    raw["deploy"] = {}
    return config.from_dict(config.apply_overrides(raw, overrides),
                            "the run's config with the deployment's hardware overrides")


def deployed_learner(dep: config.Config, state: dict, input_shape, n_classes: int, seed: int):
    """The learner of deploy config `dep` with the trained weights `state` (a learner state_dict)
    programmed onto its tiles; programming noise is drawn now, from `seed`."""
    learner = build_learner(dep, input_shape, n_classes, torch.Generator().manual_seed(seed))
    learner.load_state_dict(state)
    with torch.no_grad():
        for m in learner.analog_modules:
            m.program_from_weight()
    learner.eval()
    return learner


def set_time(learner, t_s: float) -> None:
    """Read every tile `t_s` seconds after programming (drift; the compensation factor follows);
    nothing on the torch backend (no tiles)."""
    for m in getattr(learner, "analog_modules", []):
        m.set_time(t_s)


def evaluate_drift(cfg: config.Config, state: dict, data, accuracy, overrides: list[str],
                   times_s, compensation, seeds: list[int], report=None) -> list[dict[str, Any]]:
    """Test accuracy of the trained weights deployed per `overrides` (e.g. hardware.preset=pcm),
    one row per (programming seed, compensation on/off, time after programming)."""
    rows = []
    for seed in seeds:
        for comp in compensation:
            flag = f"hardware.drift_compensation={'true' if comp else 'false'}"
            dep = deploy_config(cfg, list(overrides) + [flag])
            learner = deployed_learner(dep, state, data.input_shape, data.n_classes, seed)
            for t in times_s:
                set_time(learner, t)
                acc = accuracy(learner, data.x_test, data.y_test, cfg.train.eval_batch_size)
                row = {"seed": seed, "compensation": bool(comp), "time": time_label(t),
                       "time_s": float(t), "test_accuracy": acc}
                rows.append(row)
                if report is not None:
                    report(row)
    return rows

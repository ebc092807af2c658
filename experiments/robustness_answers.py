"""Plain-language answers from a robustness study's rows (experiments/robustness_report.csv_rows):
how much each method loses from its clean level to each noise level, paired by seed, and whether it
loses less than a baseline method (backprop) by more than two standard errors."""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import numpy as np

from experiments.robustness_spec import Parameter, Spec


@dataclass(frozen=True)
class Drop:
    """A method's accuracy change from the parameter's clean level to `level` (negative = a loss),
    mean and std over the seeds that finished both runs."""

    method: str
    level: float
    mean: float
    std: float
    seeds: int


def clean_level(p: Parameter) -> float:
    """The level with the least hardware error: the lowest, or the highest when lower levels are
    harsher (bits)."""
    return float(max(p.levels) if p.harsher == "lower" else min(p.levels))


def harshest_level(p: Parameter) -> float:
    """The level with the most hardware error."""
    return float(min(p.levels) if p.harsher == "lower" else max(p.levels))


def drops(rows: list[dict[str, Any]], method: str, p: Parameter) -> list[Drop]:
    """Per level (clean level excluded, ordered from mild to harsh) the change of test accuracy
    against the clean level, paired by seed."""
    acc: dict[float, dict[int, float]] = defaultdict(dict)
    for r in rows:
        if r["method"] == method and r["parameter"] == p.name and r["test_accuracy"] is not None:
            acc[float(r["level"])][r["seed"]] = r["test_accuracy"]
    clean = acc.get(clean_level(p), {})
    out = []
    order = sorted(p.levels, reverse=p.harsher == "lower")
    for level in map(float, order):
        if level == clean_level(p):
            continue
        seeds = sorted(set(clean) & set(acc.get(level, {})))
        if seeds:
            d = np.array([acc[level][s] - clean[s] for s in seeds])
            out.append(Drop(method, level, float(d.mean()), float(d.std()), len(seeds)))
    return out


def _se(d: Drop) -> float:
    return d.std / math.sqrt(max(1, d.seeds - 1)) if d.seeds > 1 else float("inf")


def differs(a: Drop, b: Drop) -> bool:
    """True when the two mean changes differ by more than two combined standard errors (std over
    seeds with n - 1 in the denominator of the error)."""
    se = math.hypot(_se(a), _se(b))
    return abs(a.mean - b.mean) > 2 * se


def _pts(x: float, sign: bool = True) -> str:
    return f"{100 * x:+.1f}" if sign else f"{100 * x:.1f}"


def parameter_answer(spec: Spec, rows: list[dict[str, Any]], p: Parameter, baseline: str) -> str:
    """One paragraph for one parameter: the ranking of the methods' changes at the harshest level,
    and per method the levels where it loses less (or more) than the baseline beyond two standard
    errors."""
    per_method = {m: drops(rows, m, p) for m in spec.methods}
    harsh = harshest_level(p)
    at_harsh = {m: next((d for d in ds if d.level == harsh), None) for m, ds in per_method.items()}
    ranked = sorted((d for d in at_harsh.values() if d is not None), key=lambda d: -d.mean)
    if not ranked:
        return f"**{p.title}**: no finished runs yet."
    text = [f"**{p.title}** ({p.xlabel}), {clean_level(p):g} → {harsh:g}: "
            + ", ".join(f"{d.method} {_pts(d.mean)} ± {_pts(d.std, False)}" for d in ranked) + " points."]
    base = {d.level: d for d in per_method.get(baseline, [])}
    for m, ds in per_method.items():
        if m == baseline or not base or not ds:
            continue
        shared = [d for d in ds if d.level in base]
        if not shared or min(min(d.seeds, base[d.level].seeds) for d in shared) < 2:
            text.append(f"{m} vs {baseline}: not compared yet (fewer than 2 seeds at some level).")
            continue
        sig = [d for d in shared if differs(d, base[d.level])]
        better = ", ".join(f"{d.level:g} ({_pts(d.mean - base[d.level].mean)})" for d in sig if d.mean > base[d.level].mean)
        worse = ", ".join(f"{d.level:g} ({_pts(d.mean - base[d.level].mean)})" for d in sig if d.mean < base[d.level].mean)
        d_h, b_h = at_harsh.get(m), base.get(harsh)
        gap = f"{_pts(d_h.mean - b_h.mean)} points at {harsh:g}" if d_h is not None and b_h is not None else ""
        if better or worse:
            if better and worse:
                how = f"less than {baseline} at {better} and more at {worse}"
            else:
                how = f"less than {baseline} at {better}" if better else f"more than {baseline} at {worse}"
            text.append(f"{m} degrades {how} points (its change minus {baseline}'s).")
        else:
            text.append(f"{m} and {baseline}: no difference beyond two standard errors"
                        + (f" ({gap})." if gap else "."))
    return " ".join(text)


def drift_parameters(rows: list[dict[str, Any]], preset: str) -> list[Parameter]:
    """The drift evaluation of the float references as two parameters (time after programming,
    without and with global drift compensation), so that parameter_answer reads them as curves."""
    from experiments.robustness_report import DRIFT, DRIFT_COMPENSATED
    out = []
    for name, what in ((DRIFT, "no compensation"), (DRIFT_COMPENSATED, "global drift compensation")):
        times = sorted({float(r["level"]) for r in rows if r["parameter"] == name})
        if times:
            out.append(Parameter((name,), preset, tuple(times), "time after programming, s",
                                 f"float-trained weights on {preset}, drift, {what}", ()))
    return out


def answers(spec: Spec, rows: list[dict[str, Any]], baseline: str = "bp") -> list[str]:
    """One paragraph per parameter of the study (see parameter_answer), then the drift of the
    float references deployed on spec.deploy_preset, without and with compensation."""
    params = list(spec.parameters) + (drift_parameters(rows, spec.deploy_preset) if spec.deploy_preset else [])
    return [parameter_answer(spec, rows, p, baseline) for p in params]

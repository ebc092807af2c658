"""Every config key a user can set in [data], [model], [train], [deploy] and every method's
[objective] keys has a row in the README's key tables ("| section.key | default | meaning |"), so a
new field cannot land undocumented.  A row may name several keys: "train.lr_min, lr_period_epochs",
"data.synthetic_*" (every field with that prefix), "data.corruption_gaussian_fraction,
_dropout_fraction" (the first key's stem + the suffix)."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import pytest

from onchip_ff import config
from onchip_ff.methods import REGISTRY, names

ROOT = Path(__file__).resolve().parents[1]
SECTIONS = {"data": config.DataConfig, "model": config.ModelConfig, "train": config.TrainConfig,
            "deploy": config.DeployConfig}


def documented_keys(text: str) -> dict[str, set[str]]:
    """section -> the key names (exact, or 'prefix*') that the README's table rows document."""
    out: dict[str, set[str]] = {}
    for line in text.splitlines():
        m = re.match(r"\|\s*([a-z]+)\.([^|]+)\|", line)
        if not m:
            continue
        section, cell = m.group(1), m.group(2)
        names_ = [t.strip().strip("`") for t in re.split(r"[,/]", cell) if t.strip()]
        first = names_[0].split()[0] if names_ else ""
        for name in names_:
            name = name.split()[0]
            if name.startswith("_"):  # "_dropout_fraction" after "corruption_gaussian_fraction"
                name = first.split("_")[0] + name
            out.setdefault(section, set()).add(name)
    return out


def _covered(field: str, keys: set[str]) -> bool:
    return field in keys or any(k.endswith("*") and field.startswith(k[:-1]) for k in keys)


@pytest.mark.jitfree
def test_every_config_key_has_a_readme_row():
    names()  # fills the method registry
    keys = documented_keys((ROOT / "README.md").read_text())
    missing = [f"{s}.{f.name}" for s, cls in SECTIONS.items() for f in dataclasses.fields(cls)
               if not _covered(f.name, keys.get(s, set()))]
    missing += [f"objective.{f.name} ({m.name})" for m in REGISTRY.values() for f in dataclasses.fields(m.objective)
                if not _covered(f.name, keys.get("objective", set()))]
    assert not missing, f"config keys without a row in the README's key tables: {missing}"


@pytest.mark.jitfree
def test_the_parser_would_see_a_missing_key():
    keys = documented_keys("| data.name | x | y |\n| data.synthetic_* | 1 | z |\n"
                           "| data.corruption_gaussian_fraction, _noise_fraction | 0 | w |\n")
    assert _covered("synthetic_seed", keys["data"]) and _covered("corruption_noise_fraction", keys["data"])
    assert not _covered("resize_px", keys["data"])

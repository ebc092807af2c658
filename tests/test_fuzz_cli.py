"""Property-based fuzzing of the command line (hypothesis, derandomized so CI sees the same cases):
600 `train` runs with random values of random type for every config key (and keys that do not
exist), and 300 random argument lists for the other commands.  Each either exits 0 with finished
outputs or exits 2 with a one-line error; never a traceback; and the files of an existing run
folder and results store are never changed."""

from __future__ import annotations

import dataclasses
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from experiments.cli import main
from experiments.runner.sweep import toml_value
from hw_models.presets import DEVICE_KEYS, PERIPHERY_KEYS
from onchip_ff import config
from onchip_ff.methods import get, names

ROOT = Path(__file__).resolve().parent.parent
DF_MLP = str(ROOT / "experiments" / "configs" / "df_mlp_fmnist.toml")
TINY = ["data.name=synthetic", "data.synthetic_train=40", "data.synthetic_test=20", "model.hidden=[10]",
        "train.epochs=1", "train.batch_size=20", "train.threads=1", "train.train_eval_samples=20",
        "train.eval_batch_size=20"]
SLOW = {"data.synthetic_train", "data.synthetic_test", "data.train_limit", "data.test_limit",
        "data.synthetic_side_px", "train.epochs", "train.train_eval_samples", "train.threads",
        "data.root", "data.path", "deploy.draws", "train.device", "hardware.tile_rows", "hardware.tile_cols"}
KEYS = sorted(({f"{section}.{f.name}" for section, cls in (("data", config.DataConfig), ("model", config.ModelConfig),
                                                          ("train", config.TrainConfig), ("deploy", config.DeployConfig))
               for f in dataclasses.fields(cls)}
              | {f"objective.{f.name}" for n in names() for f in dataclasses.fields(get(n).objective)}
              | {f"hardware.{k}" for k in DEVICE_KEYS + PERIPHERY_KEYS} | {"objective.method", "hardware.backend",
                                                                          "hardware.preset", "hardware.pcm.drift_scale"}
              | {"train.nope", "nosection.key", "hardware.nope.x"}) - SLOW)
WORDS = ["df", "ff", "bp", "sff", "intff", "deeperforward", "mlp", "cnn", "sim", "torch", "pcm", "ideal", "fixed8",
         "adam", "sgd", "cosine", "learnable", "ema", "random", "hard", "layer", "group", "one_sided", "x", ""]
JUNK = st.one_of(st.integers(-3, 6), st.floats(allow_nan=True, allow_infinity=True, width=32),
                 st.booleans(), st.sampled_from(WORDS), st.lists(st.integers(-1, 12), max_size=3))
SECTIONS = {"data": config.DataConfig, "model": config.ModelConfig, "train": config.TrainConfig,
            "deploy": config.DeployConfig}


def _type_of(key: str):
    """The annotated type of a config key (None for hardware and unknown keys)."""
    import typing
    section, _, name = key.partition(".")
    classes = [SECTIONS[section]] if section in SECTIONS else \
        [get(n).objective for n in names()] if section == "objective" else []
    for cls in classes:
        hints = typing.get_type_hints(cls)
        if name in hints:
            return hints[name]
    return None


def _plausible(key: str):
    """Values of the key's own type in small ranges: most of them valid, some out of range."""
    t = _type_of(key)
    if t is bool:
        return st.booleans()
    if t is int:
        return st.integers(0, 4)
    if t is float:
        return st.floats(0, 2, width=32)
    if t is str:
        return st.sampled_from(WORDS)
    if typing_origin(t) is tuple:
        return st.lists(st.integers(1, 12), min_size=1, max_size=2)
    return JUNK


def typing_origin(t):
    import typing
    return typing.get_origin(t)


def _value(key: str):
    return st.one_of(_plausible(key), _plausible(key), _plausible(key), JUNK)  # 3 typed : 1 anything


PLAIN = [k for k in KEYS if k.split(".")[0] in ("data", "model", "train", "deploy")]
HARDWARE = [k for k in KEYS if k.startswith("hardware.") and k not in ("hardware.backend", "hardware.preset")]


@st.composite
def train_overrides(draw) -> list[tuple[str, object]]:
    """A method and a backend, then 0..2 keys that apply to them (most values plausible), and now
    and then any key at all with any value."""
    from hw_models.presets import PRESETS
    method = draw(st.sampled_from(names()))
    out: list[tuple[str, object]] = [("objective.method", method)]
    keys = PLAIN + [f"objective.{f.name}" for f in dataclasses.fields(get(method).objective)]
    if draw(st.booleans()):
        out += [("hardware.backend", "sim"), ("hardware.preset", draw(st.sampled_from(sorted(PRESETS))))]
        keys += HARDWARE
    for _ in range(draw(st.integers(0, 2))):
        key = draw(st.sampled_from(keys))
        out.append((key, draw(_value(key))))
    if draw(st.integers(0, 4)) == 0:
        out.append((draw(st.sampled_from(KEYS)), draw(JUNK)))
    return out
FUZZ = settings(max_examples=600, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])


def _digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


def _check(code: int, err: str) -> None:
    assert "Traceback" not in err, err
    assert code in (0, 2), (code, err)
    if code == 2:
        lines = err.strip().splitlines()
        assert lines and lines[-1].startswith("onchip-ff: error:"), err
        assert not any("error" in ln for ln in lines[:-1]), err


@pytest.fixture(scope="module")
def existing(tmp_path_factory):
    """A finished run folder and a results store, which no fuzzed command may change."""
    root = tmp_path_factory.mktemp("existing")
    sets = [a for s in TINY for a in ("--set", s)]
    assert main(["train", DF_MLP, *sets, "--out", str(root / "run"), "--no-progress"]) == 0
    sweep = root / "s.toml"
    sweep.write_text(f'[sweep]\nname = "s"\nbase = "{DF_MLP}"\nseeds = [0]\n[fixed]\n'
                     + "".join(f'"{k}" = {toml_value(config.parse_override(t)[1], k)}\n'
                               for t in TINY for k in [t.split("=")[0]]))
    assert main(["sweep", str(sweep), "--store", str(root / "s.sqlite"), "--executor", "inline", "--no-progress"]) == 0
    return root


@FUZZ
@given(overrides=train_overrides(), reuse=st.integers(0, 9).map(lambda i: i == 0))
def test_train_with_random_config_values(overrides, reuse, existing, tmp_path_factory, capsys):
    before = _digest(existing)
    sets = TINY + [f"{k}={toml_value(v, k)}" for k, v in overrides]
    out = existing / "run" if reuse else tmp_path_factory.mktemp("fuzz") / "run"
    code = main(["train", DF_MLP, *[a for s in sets for a in ("--set", s)], "--out", str(out), "--no-progress"])
    _check(code, capsys.readouterr().err)
    if code == 0:
        assert not reuse and json.loads((out / "metrics.json").read_text())["status"] == "done"
    assert _digest(existing) == before


TOKENS = ["--out", "--set", "--seeds", "--store", "--where", "--best", "--by", "--format", "--plot-only", "--dry-run",
          "--workers", "--executor", "--python", "--devices", "--draws", "--resume", "0", "-1", "2", "abc",
          "csv", "table", "inline", "train.lr=1", "hardware.adc_bits=6", "status=done", "objective.method",
          "nonexistent.toml", "{run}", "{store}", "{tmp}"]
COMMANDS = ["deploy", "results", "sweep", "robustness", "memory", "crosscheck", "train", "nope"]


@settings(max_examples=300, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(command=st.sampled_from(COMMANDS), tokens=st.lists(st.sampled_from(TOKENS), max_size=5))
def test_other_commands_with_random_arguments(command, tokens, existing, tmp_path_factory, capsys):
    before = _digest(existing)
    tmp = tmp_path_factory.mktemp("args")
    argv = [command] + [t.format(run=existing / "run", store=existing / "s.sqlite", tmp=tmp / "new") for t in tokens]
    if command in ("sweep", "robustness", "memory") and "--dry-run" not in argv:
        argv = argv[:1] + ["nonexistent.toml"] + argv[1:]  # never a long study
    if command == "crosscheck":
        argv += ["--python", str(tmp / "no-python")]
    _check(main(argv), capsys.readouterr().err)
    after = _digest(existing)  # new files may appear (deploy writes RUN_DIR/deploy); old ones stay as they were
    assert all(after.get(k) == v for k, v in before.items() if not k.startswith("s.sqlite"))

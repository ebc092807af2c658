"""One TOML reader for every file kind (common/tomlfile.py): the same one-line errors, exit 2, for
a missing file, a folder and invalid TOML in `train`, `sweep`, `robustness` and `memory`; typed
tables reject unknown keys and wrong types naming the key."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from common.errors import ConfigError
from common.tomlfile import read_toml, typed
from experiments.cli import main

COMMANDS = {"config": ["train", "{}"], "sweep": ["sweep", "{}", "--store", "{out}/s.sqlite"],
            "robustness": ["robustness", "{}", "--out", "{out}/r"], "memory": ["memory", "{}", "--out", "{out}/m"]}


@pytest.mark.parametrize("kind", COMMANDS)
@pytest.mark.parametrize("case, needle", [("missing", "not found"), ("folder", "is a folder"),
                                          ("bad", "is not valid TOML")])
def test_every_file_kind_gives_the_same_one_line_errors(kind, case, needle, tmp_path, capsys):
    path = tmp_path / "x.toml"
    if case == "folder":
        path.mkdir()
    elif case == "bad":
        path.write_text("[train\nepochs = 2")
    argv = [a.format(str(path), out=tmp_path) for a in COMMANDS[kind]]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and needle in err and "Traceback" not in err
    if case != "bad":
        assert f"{kind} file" in err


@dataclass(frozen=True)
class _Table:
    n: int = 1
    xs: tuple[float, ...] = ()
    label: str = ""


def test_typed_tables_name_the_key():
    assert typed(_Table, {"n": 3, "xs": [1, 2.5]}, "t", "f.toml", label="a") == _Table(3, (1.0, 2.5), "a")
    with pytest.raises(ConfigError, match=r"unknown key t.m in f.toml; valid keys of \[t\]: n, xs, label"):
        typed(_Table, {"m": 1}, "t", "f.toml")
    with pytest.raises(ConfigError, match="t.n must be an integer"):
        typed(_Table, {"n": "3"}, "t", "f.toml")
    with pytest.raises(ConfigError, match="unknown key t.label"):  # given by the caller, not the file
        typed(_Table, {"label": "b"}, "t", "f.toml", label="a")


def test_unknown_tables_are_named(tmp_path):
    path = tmp_path / "s.toml"
    path.write_text("[sweep]\n[nope]\n")
    with pytest.raises(ConfigError, match=r"unknown table\(s\) nope; a sweep file has \[sweep\]"):
        read_toml(path, "sweep", "example.toml", ("sweep", "fixed"))

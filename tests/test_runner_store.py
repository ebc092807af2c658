"""Sweep runner without training: sweep expansion and config keys, the store's refusal of foreign
or corrupt files, atomic claims across processes, stale owners, and results export."""

import csv
import hashlib
import io
import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.runner import store as store_mod
from experiments.runner.store import Store, process_identity
from experiments.runner.sweep import canonical_json, config_from_json, config_key, load_sweep
from onchip_ff import config

pytestmark = pytest.mark.jitfree
ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "experiments" / "configs" / "sweep_tiny_synthetic.toml"
BASE = """
[data]
name = "synthetic"
[model]
hidden = [8]
[train]
epochs = 1
"""


def write_sweep(folder: Path, body: str, base: str = BASE) -> Path:
    (folder / "configs").mkdir(exist_ok=True)
    (folder / "configs" / "base.toml").write_text(base)
    path = folder / "configs" / "sweep.toml"
    path.write_text(textwrap.dedent(body))
    return path


GRID = """
[sweep]
name = "grid"
base = "base.toml"
seeds = [0, 1]
[fixed]
"data.synthetic_train" = 100
[[variants]]
"objective.method" = "df"
[[variants]]
objective.method = "bp"
train.lr = 1e-3
[grid.model]
hidden = [[8], [4, 4]]
"""


def one_line_error(capsys, argv, *needles):
    assert main(argv) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("onchip-ff: error:"), err
    for needle in needles:
        assert needle in err, err
    return err


def test_expansion_order_keys_and_labels(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, GRID))
    assert sweep.name == "grid" and len(sweep.runs) == 8 and sweep.duplicates == 0
    assert [r.position for r in sweep.runs] == list(range(8))
    assert [r.label.split()[-1] for r in sweep.runs] == ["train.seed=0"] * 4 + ["train.seed=1"] * 4
    assert sweep.runs[2].label == 'objective.method="bp" train.lr=0.001 model.hidden=[8] train.seed=0'
    for run in sweep.runs:
        cfg = config.load(tmp_path / "configs" / "base.toml", list(run.overrides))
        assert run.config_json == canonical_json(cfg) == json.dumps(
            config.to_dict(cfg), sort_keys=True, separators=(",", ":"))
        assert run.key == config_key(cfg) == hashlib.sha256(run.config_json.encode()).hexdigest()
        assert config_key(config_from_json(run.config_json)) == run.key  # stored JSON round-trips
        assert cfg.data.synthetic_train == 100
    assert len({r.key for r in sweep.runs}) == 8


def test_set_replaces_fixed_and_variants_and_grid_win(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, GRID), ["data.synthetic_train=300", "train.lr=0.02"])
    cfgs = [config_from_json(r.config_json) for r in sweep.runs]
    assert {c.data.synthetic_train for c in cfgs} == {300}
    assert [c.train.lr for c in cfgs[:4]] == [0.02, 0.02, 0.001, 0.001]  # the bp variant sets lr


def test_dry_run_lists_runs_and_writes_nothing(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    assert main(["sweep", str(TINY), "--store", str(store), "--dry-run"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and all(" new " in line for line in lines) and not store.exists()
    assert 'objective.method="bp" train.lr=0.003 train.seed=1' in lines[3]
    _store_with_results(store)
    assert main(["sweep", str(TINY), "--store", str(store), "--dry-run"]) == 0
    assert [line.split()[1] for line in capsys.readouterr().out.splitlines()] == ["done"] * 3 + ["failed"]
    one_line_error(capsys, ["sweep", str(TINY), "--workers", "0"], "--workers")
    one_line_error(capsys, ["sweep", str(TINY), "--ray-address", "x:1"], "--executor ray")
    one_line_error(capsys, ["sweep", str(TINY), "--executor", "spark"], "invalid choice")


def test_equal_configs_are_one_run(tmp_path):
    sweep = load_sweep(write_sweep(tmp_path, """
        [sweep]
        base = "base.toml"
        [grid]
        "train.lr" = [0.001, 1e-3, 0.002]
        "train.optimizer" = ["adam"]
    """))
    assert sweep.name == "sweep" and len(sweep.runs) == 2 and sweep.duplicates == 1


def test_a_variant_can_start_from_its_own_config(tmp_path):
    path = write_sweep(tmp_path, """
        [sweep]
        base = "base.toml"
        seeds = [0]
        [fixed]
        "train.epochs" = 2
        [[variants]]
        "train.lr" = 0.01
        [[variants]]
        base = "other.toml"
    """)
    (path.parent / "other.toml").write_text(BASE.replace("hidden = [8]", "hidden = [6, 6]")
                                             + '[objective]\nmethod = "bp"\n')
    first, second = load_sweep(path).runs
    a, b = config_from_json(first.config_json), config_from_json(second.config_json)
    assert (a.model.hidden, a.objective.method, a.train.lr) == ((8,), "df", 0.01)
    assert (b.model.hidden, b.objective.method, b.train.epochs) == ((6, 6), "bp", 2)  # [fixed] applies too
    assert second.label == "base=other.toml train.seed=0"
    assert first.label == "train.lr=0.01 train.seed=0"


@pytest.mark.parametrize("body, needle", [
    ("[sweep]\nbase = 'base.toml'\n[[variants]]\nbase = 'missing.toml'\n", "[[variants]] #1 base 'missing.toml' not found"),
    ("[sweep]\nbase = 'base.toml'\n[[variants]]\nbase = 3\n", "[[variants]] #1 base must name a config file"),
    ("[sweep]\nbase = 'base.toml'\n[grids]\n", "unknown table(s) grids"),
    ("[sweep]\nbase = 'base.toml'\nseed = [1]\n", "sweep.seed"),
    ("[sweep]\nname = 'x'\n", "sweep.base"),
    ("[sweep]\nbase = 'nope.toml'\n", "relative to the sweep file"),
    ("[sweep]\nbase = 'base.toml'\nseeds = [1, 1]\n", "sweep.seeds"),
    ("[sweep]\nbase = 'base.toml'\n[grid]\n'train.lr' = 0.1\n", "grid.train.lr must be a non-empty list"),
    ("[sweep]\nbase = 'base.toml'\n[fixed]\n'train.lr' = 0.1\n[grid]\n'train.lr' = [0.2]\n",
     "both in [grid]"),
    ("[sweep]\nbase = 'base.toml'\n[[variants]]\n'train.lr' = 0.1\n[grid]\n'train.lr' = [0.2]\n",
     "also in [grid]"),
    ("[sweep]\nbase = 'base.toml'\nseeds = [0]\n[fixed]\n'train.seed' = 3\n", "sweep.seeds"),
    ("[sweep]\nbase = 'base.toml'\n[grid]\n'lr' = [1]\n", "section.key"),
    ("[sweep]\nbase = 'base.toml'\n[grid]\n'train.lr' = [0.1, -1.0]\n", "train.lr must be > 0"),
    ("[sweep]\nbase = 'base.toml'\n[grid]\n'objective.method' = ['df', 'xx']\n", "objective.method"),
    ("[sweep\n", "not valid TOML"),
])
def test_bad_sweep_files_are_one_line_errors(tmp_path, capsys, body, needle):
    path = write_sweep(tmp_path, body)
    store = tmp_path / "store.sqlite"
    one_line_error(capsys, ["sweep", str(path), "--store", str(store), "--no-progress"], needle)
    assert not store.exists()


def _foreign_sqlite(path: Path) -> None:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE runs (key TEXT, status TEXT)")
    con.execute("INSERT INTO runs VALUES ('a', 'done')")
    con.commit()
    con.close()


def _our_store(path: Path) -> None:
    with Store(path) as s:
        s.add("tiny", list(load_sweep(TINY).runs))


def _garbled(path: Path) -> None:
    _our_store(path)
    data = bytearray(path.read_bytes())
    data[4096:8192] = bytes(range(256)) * 16
    path.write_bytes(bytes(data))


def _truncated(path: Path) -> None:
    _our_store(path)
    path.write_bytes(path.read_bytes()[:5000])


def _newer_schema(path: Path) -> None:
    _our_store(path)
    data = bytearray(path.read_bytes())
    data[60:64] = (store_mod.SCHEMA_VERSION + 1).to_bytes(4, "big")
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("make, needle", [
    (lambda p: p.write_text("key,status\nabc,done\n" * 20), "not an SQLite file"),
    (lambda p: p.write_bytes(b"SQLite format 3\x00" + bytes(200)), "another program"),
    (_foreign_sqlite, "another program"),
    (_garbled, "corrupt"),
    (_truncated, "corrupt"),
    (_newer_schema, "newer"),
])
def test_foreign_or_corrupt_store_is_refused_untouched(tmp_path, capsys, make, needle):
    path = tmp_path / "store.sqlite"
    make(path)
    before, listing = path.read_bytes(), sorted(os.listdir(tmp_path))
    one_line_error(capsys, ["results", str(path)], needle, str(path))
    one_line_error(capsys, ["sweep", str(TINY), "--store", str(path), "--no-progress"], needle)
    one_line_error(capsys, ["sweep", str(TINY), "--store", str(path), "--dry-run"], needle)
    assert path.read_bytes() == before and sorted(os.listdir(tmp_path)) == listing


def test_missing_store_and_folder_store(tmp_path, capsys):
    one_line_error(capsys, ["results", str(tmp_path / "none.sqlite")], "no results store")
    one_line_error(capsys, ["results", str(tmp_path)], "is a folder")
    assert not (tmp_path / "none.sqlite").exists()


def test_claims_finish_release_and_stale_owners(tmp_path):
    runs = list(load_sweep(TINY).runs)
    a, b = process_identity(), "otherhost:1:1"
    with Store(tmp_path / "s.sqlite") as s:
        assert s.add("tiny", runs) == 4 and s.add("tiny", runs) == 0
        k0, k1, k2, k3 = (r.key for r in runs)
        cfg, status = s.claim(k0, a)
        assert cfg == runs[0].config_json and status == "running"
        assert s.claim(k0, b) == (None, "running")  # live owner, fresh heartbeat
        assert s.finish(k0, b, {"status": "done"}, "c") is False  # not b's run
        assert s.finish(k0, a, {"status": "done", "metrics": {"test_accuracy": 0.5}, "version": "v"}, "c")
        assert s.claim(k0, b) == (None, "done")
        # an owner process that is gone (same host) -> stale at once
        gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                              capture_output=True, text=True).stdout.strip()
        dead = f"{process_identity().rsplit(':', 2)[0]}:{gone}:1"
        s.conn.execute("UPDATE runs SET status = 'running', owner = ?, heartbeat = ? WHERE key = ?",
                       (dead, time.time(), k1))
        assert s.claim(k1, b)[1] == "running" and s.rows()[1]["owner"] == b
        # a pid reused by another process (start time differs) -> stale
        reused = process_identity().rsplit(":", 1)[0] + ":1"
        s.conn.execute("UPDATE runs SET owner = ? WHERE key = ?", (reused, k1))
        assert s.claim(k1, a)[0] is not None
        # an owner on another host: only an old heartbeat frees the run
        s.conn.execute("UPDATE runs SET owner = ?, heartbeat = ? WHERE key = ?", (b, time.time(), k1))
        assert s.claim(k1, a) == (None, "running")
        s.conn.execute("UPDATE runs SET heartbeat = ? WHERE key = ?",
                       (time.time() - store_mod.STALE_AFTER_S - 1, k1))
        assert s.claim(k1, a)[0] is not None
        assert s.finish(k1, a, {"status": "failed", "error": "boom"}, "c")
        assert s.claim(k1, b) == (None, "failed") and s.claim(k1, b, retry_failed=True)[0] is not None
        s.claim(k2, a)
        s.claim(k3, a)
        assert s.release_all(a) == 2
        rows = {r["key"]: r for r in s.rows()}
        assert [rows[k]["status"] for k in (k0, k1, k2, k3)] == ["done", "running", "pending", "pending"]
        assert rows[k0]["test_accuracy"] == 0.5 and rows[k0]["git_commit"] == "c"
        assert rows[k1]["attempts"] == 4 and rows[k1]["error"] is None and rows[k1]["owner"] == b


RACER = """
import sys, time
from experiments.runner.store import Store, process_identity
path, keys = sys.argv[1], sys.argv[2].split(",")
me = process_identity()
with Store(path) as s:
    for key in keys:
        if s.claim(key, me)[0] is not None:
            assert s.finish(key, me, {"status": "done", "metrics": {"epochs": 1}}, "c")
"""


def test_concurrent_processes_claim_each_run_once(tmp_path):
    runs = list(load_sweep(write_sweep(tmp_path, """
        [sweep]
        base = "base.toml"
        [grid]
        "train.seed" = [%s]
    """ % ", ".join(map(str, range(120))))).runs)
    path = tmp_path / "s.sqlite"
    with Store(path) as s:
        s.add("race", runs)
    keys = [r.key for r in runs]
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    procs = [subprocess.Popen([sys.executable, "-c", RACER, str(path), ",".join(order)], env=env)
             for order in (keys, keys[::-1], keys[40:] + keys[:40])]
    assert [p.wait(timeout=120) for p in procs] == [0, 0, 0]
    with Store(path, readonly=True) as s:
        rows = s.rows()
    assert len(rows) == 120 and {r["status"] for r in rows} == {"done"}
    assert {r["attempts"] for r in rows} == {1}  # no run was ever claimed twice


def _store_with_results(path: Path) -> list:
    runs = list(load_sweep(TINY).runs)
    with Store(path) as s:
        s.add("tiny", runs)
        for i, run in enumerate(runs):
            s.claim(run.key, "me:1:1")
            result = ({"status": "done", "metrics": {"test_accuracy": 0.25 * i, "train_accuracy": 0.5,
                                                     "epochs": 1, "wall_s": 1.5}, "version": "0.1.0"}
                      if i != 3 else {"status": "failed", "error": "diverged: non-finite loss nan"})
            s.finish(run.key, "me:1:1", result, "abc123")
    return runs


def test_results_table_and_csv_with_where(tmp_path, capsys):
    path = tmp_path / "s.sqlite"
    runs = _store_with_results(path)
    assert main(["results", str(path)]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split() == ["key", "status", "objective.method", "train.seed", "test_accuracy",
                                "train_accuracy", "epochs", "wall_s", "error"]
    assert len(lines) == 5 and lines[1].startswith(runs[0].key[:12])
    assert "failed" in lines[4] and "diverged: non-finite loss nan" in lines[4]

    assert main(["results", str(path), "--where", "objective.method=df", "--where", "status=done"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line[:12] for line in lines[1:]] == [runs[0].key[:12], runs[2].key[:12]]
    assert lines[0].split()[2] == "train.seed"  # only the fields that differ between shown runs

    assert main(["results", str(path), "--format", "csv", "--where", "status=failed"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert len(rows) == 1 and rows[0]["key"] == runs[3].key and rows[0]["status"] == "failed"
    assert rows[0]["objective.method"] == "bp" and rows[0]["train.seed"] == "1"
    assert rows[0]["error"].startswith("diverged") and rows[0]["git_commit"] == "abc123"

    assert main(["results", str(path), "--format", "csv", "--where", "model.hidden=[16]",
                 "--where", "train.lr=0.003", "--where", f"key={runs[1].key[:12]}"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["key"] for r in rows] == [runs[1].key]
    assert rows[0]["test_accuracy"] == "0.25" and rows[0]["model.hidden"] == "[16]"
    assert "hardware.preset" in rows[0] and "data.synthetic_train" in rows[0]

    assert main(["results", str(path), "--where", "status=pending"]) == 0
    assert capsys.readouterr().out.strip() == "(no runs)"
    one_line_error(capsys, ["results", str(path), "--where", "objective.metod=df"], "objective.metod")
    one_line_error(capsys, ["results", str(path), "--where", "status"], "key=value")
    one_line_error(capsys, ["results", str(path), "--where", "status=finished"], "pending")

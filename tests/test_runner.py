"""Sweep runner end to end on tiny synthetic runs: local processes, reruns, failed runs (NaN,
data errors, exceptions, dead workers), --retry-failed, Ctrl-C, SIGKILL and resume, two sweep
processes on one store, and Ray giving the same rows as local."""

import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

import onchip_ff
from experiments.cli import main
from experiments.runner.executors import LocalExecutor
from experiments.runner.store import Store
from experiments.runner.sweep import config_from_json, config_key

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "experiments" / "configs" / "sweep_tiny_synthetic.toml"
BASE = ROOT / "experiments" / "configs" / "df_mlp_fmnist.toml"
ENV = dict(os.environ, PYTHONPATH=str(ROOT))
TIMING = ("wall_s", "train_s")


def write_sweep(folder: Path, tables: str, seeds: str = "[0]", samples: int = 200, epochs: int = 1) -> Path:
    path = folder / "sweep.toml"
    path.write_text(textwrap.dedent(f"""
        [sweep]
        base = "{BASE}"
        seeds = {seeds}
        [fixed]
        "data.name" = "synthetic"
        "data.synthetic_train" = {samples}
        "data.synthetic_test" = 100
        "model.hidden" = [16]
        "train.epochs" = {epochs}
        "train.batch_size" = 50
        "train.threads" = 1
        "train.train_eval_samples" = 100
        "train.lr" = 3e-3
    """) + textwrap.dedent(tables))
    return path


def rows(store: Path) -> list[dict]:
    with Store(store, readonly=True) as s:
        return s.rows()


def counts(store: Path) -> dict[str, int]:
    """Status counts through a plain read-only connection (cheap enough to poll)."""
    try:
        con = sqlite3.connect(f"{store.resolve().as_uri()}?mode=ro", uri=True, timeout=30)
        try:
            found = dict(con.execute("SELECT status, count(*) FROM runs GROUP BY status").fetchall())
        finally:
            con.close()
    except sqlite3.Error:
        found = {}
    return {s: found.get(s, 0) for s in ("pending", "running", "done", "failed")}


def _default_sigint() -> None:
    # a shell running the suite in the background (`cmd &`) hands SIGINT down as ignored, and
    # Python then installs no KeyboardInterrupt handler; the tests send SIGINT as Ctrl-C would
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def sweep_process(sweep: Path, store: Path, *extra: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "experiments.cli", "sweep", str(sweep), "--store",
                             str(store), "--no-progress", "--workers", "1", *extra], env=ENV, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=_default_sigint)


def wait_for(condition, what: str, proc: subprocess.Popen | None = None, timeout_s: float = 90) -> None:
    end = time.monotonic() + timeout_s
    while not condition():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"sweep exited ({proc.returncode}) before {what}: {proc.stderr.read()}")
        assert time.monotonic() < end, f"timed out waiting for {what}"
        time.sleep(0.02)


def descendants(pid: int) -> set[int]:
    parent = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parent[int(entry.name)] = int(stat[stat.rindex(")") + 2:].split()[1])
    found, frontier = set(), {pid}
    while frontier:
        frontier = {p for p, pp in parent.items() if pp in frontier} - found
        found |= frontier
    return found


def gone(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat[stat.rindex(")") + 2] in "ZX"  # exited; a zombie only waits to be reaped


def comparable(row: dict) -> dict:
    m = json.loads(row["metrics"])
    for key in TIMING:
        m.pop(key)
    for h in m["history"]:
        h.pop("wall_s")
    return {"key": row["key"], "status": row["status"], "config": row["config"], "metrics": m}


@pytest.fixture(scope="module")
def local_store(tmp_path_factory) -> Path:
    store = tmp_path_factory.mktemp("local") / "tiny.sqlite"
    assert main(["sweep", str(TINY), "--store", str(store), "--workers", "2", "--no-progress"]) == 0
    return store


def test_local_sweep_stores_every_run_and_rerun_skips_them(local_store, capsys):
    first = rows(local_store)
    assert len(first) == 4 and {r["status"] for r in first} == {"done"}
    for r in first:
        m = json.loads(r["metrics"])
        assert r["attempts"] == 1 and r["sweep"] == "tiny_synthetic" and r["error"] is None
        assert 0 <= r["test_accuracy"] <= 1 and r["test_accuracy"] == m["test_accuracy"]
        assert r["epochs"] == 1 and len(m["history"]) == 1 and m["threads"] == 1
        assert r["version"] == onchip_ff.__version__ and r["git_commit"]
        assert config_key(config_from_json(r["config"])) == r["key"]
    assert main(["sweep", str(TINY), "--store", str(local_store), "--workers", "2", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert "(4 done, 0 failed, 0 to run)" in captured.err and "4/4 done" in captured.out
    assert rows(local_store) == first


def test_failed_runs_are_stored_and_the_sweep_goes_on(tmp_path, capsys):
    sweep = write_sweep(tmp_path, f"""
        [[variants]]
        "objective.method" = "df"
        [[variants]]
        "objective.method" = "bp"
        "train.optimizer" = "sgd"
        "train.lr" = 1e20
        [[variants]]
        "data.name" = "fashion_mnist"
        "data.root" = "{tmp_path / 'no_data'}"
    """)
    store = tmp_path / "s.sqlite"
    argv = ["sweep", str(sweep), "--store", str(store), "--workers", "2", "--no-progress"]
    assert main(argv) == 1
    err = capsys.readouterr().err
    ok, nan, nodata = rows(store)
    assert ok["status"] == "done" and nan["status"] == "failed" and nodata["status"] == "failed"
    assert nan["error"].startswith("diverged: non-finite loss") and nan["metrics"] is None
    assert "does not exist" in nodata["error"] and "apt-get" in nodata["error"]
    assert f"failed {nan['key'][:12]}: diverged" in err
    assert main(argv) == 1  # failed runs are not retried without --retry-failed
    assert "(1 done, 2 failed (skipped" in capsys.readouterr().err
    assert rows(store) == [ok, nan, nodata]
    assert main([*argv, "--retry-failed"]) == 1
    again = rows(store)
    assert [r["attempts"] for r in again] == [1, 2, 2] and again[0] == ok
    assert again[1]["error"] == nan["error"] and again[1]["finished"] > nan["finished"]


def test_inline_executor_stores_exceptions_and_matches_local(local_store, tmp_path, monkeypatch, capsys):
    import torch

    import experiments.runner.worker as worker
    real = worker.run_training

    def flaky(cfg, data, **kwargs):
        if cfg.train.seed == 1:
            raise RuntimeError("boom\nsecond line")
        return real(cfg, data, **kwargs)

    monkeypatch.setattr(worker, "run_training", flaky)
    threads = torch.get_num_threads()
    store = tmp_path / "inline.sqlite"
    try:
        assert main(["sweep", str(TINY), "--store", str(store), "--executor", "inline", "--no-progress"]) == 1
    finally:
        torch.set_num_threads(threads)
    got = rows(store)
    assert [r["status"] for r in got] == ["done", "done", "failed", "failed"]
    assert got[2]["error"] == "RuntimeError: boom" and "second line" in got[2]["detail"]
    assert "Traceback" in got[2]["detail"] and "flaky" in got[2]["detail"]
    local = rows(local_store)
    assert [comparable(r) for r in got[:2]] == [comparable(r) for r in local[:2]]


def test_a_dead_worker_process_is_a_failed_result():
    executor = LocalExecutor()
    try:
        handles = {executor.submit("os:_exit", (3,)): "exit", executor.submit("os:abort", ()): "abort",
                   executor.submit("operator:add", (1, 2)): "add"}
        results = {}
        while len(results) < 3:
            results.update((handles[h], r) for h, r in executor.wait(30))
    finally:
        executor.close()
    assert results["add"] == 3
    assert results["exit"]["status"] == "failed" and "exit code 3" in results["exit"]["error"]
    assert f"killed by signal {int(signal.SIGABRT)}" in results["abort"]["error"]


def test_run_processes_get_passive_openmp_waiting():
    """Idle OpenMP threads must not spin in run processes (they would steal the other runs'
    cores); a value the user exported is kept."""
    executor = LocalExecutor()
    try:
        handle = executor.submit("os:getenv", ("OMP_WAIT_POLICY",))
        results = []
        while not results:
            results = executor.wait(30)
    finally:
        executor.close()
    assert results == [(handle, os.environ.get("OMP_WAIT_POLICY", "PASSIVE"))]


def test_sigterm_stops_a_sweep_like_ctrl_c(tmp_path):
    sweep = write_sweep(tmp_path, '[grid]\n"objective.method" = ["df", "bp"]\n', seeds="[0, 1]", samples=400,
                        epochs=2)
    store = tmp_path / "s.sqlite"
    proc = sweep_process(sweep, store)
    wait_for(lambda: counts(store)["running"] == 1, "a run in progress", proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "put back to pending" in err, err
    assert counts(store)["running"] == 0


def test_ctrl_c_then_sigkill_then_resume_loses_nothing_and_duplicates_nothing(tmp_path):
    sweep = write_sweep(tmp_path, '[grid]\n"objective.method" = ["df", "bp"]\n', seeds="[0, 1, 2, 3]",
                        samples=400, epochs=2)
    store = tmp_path / "s.sqlite"
    first = sweep_process(sweep, store)
    wait_for(lambda: (c := counts(store))["done"] >= 1 and c["running"] == 1, "a run in progress", first)
    first.send_signal(signal.SIGINT)
    _, err = first.communicate(timeout=60)
    assert first.returncode == 130 and "put back to pending" in err, err
    assert "leaked semaphore" not in err, err  # tqdm uses a thread lock in the CLI process
    c = counts(store)
    assert c["running"] == 0 and c["failed"] == 0 and c["done"] + c["pending"] == 8
    released = sum(r["status"] == "pending" and r["attempts"] > 0 for r in rows(store))

    second = sweep_process(sweep, store)
    while True:  # freeze the sweep process so the store cannot change between the look and the kill;
        # the row is claimed before its worker process exists, so wait for both
        wait_for(lambda: counts(store)["running"] == 1, "a run in progress", second)
        second.send_signal(signal.SIGSTOP)
        children = descendants(second.pid)
        if counts(store)["running"] == 1 and children:
            break
        second.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    second.kill()
    second.communicate(timeout=60)
    assert children  # the forkserver and the run in progress
    wait_for(lambda: all(gone(p) for p in children), "the killed sweep's workers to exit", timeout_s=30)

    assert main(["sweep", str(sweep), "--store", str(store), "--no-progress"]) == 0
    final = rows(store)
    assert len(final) == 8 and len({r["key"] for r in final}) == 8
    assert {r["status"] for r in final} == {"done"}
    assert sum(r["attempts"] for r in final) == 8 + released + 1  # +1: the killed run, reclaimed


def test_two_sweep_processes_share_one_store(tmp_path):
    sweep = write_sweep(tmp_path, '[grid]\n"objective.method" = ["df", "bp"]\n', seeds="[0, 1, 2]")
    store = tmp_path / "shared.sqlite"
    procs = [sweep_process(sweep, store), sweep_process(sweep, store)]
    outputs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    final = rows(store)
    assert len(final) == 6 and {r["status"] for r in final} == {"done"}
    assert {r["attempts"] for r in final} == {1}  # every run was claimed exactly once


def test_ray_executor_gives_the_same_rows_as_local(local_store, tmp_path):
    pytest.importorskip("ray")
    store = tmp_path / "ray.sqlite"
    assert main(["sweep", str(TINY), "--store", str(store), "--executor", "ray", "--workers", "2",
                 "--no-progress"]) == 0
    assert [comparable(r) for r in rows(store)] == [comparable(r) for r in rows(local_store)]


def test_rows_stored_by_older_code_are_rekeyed_not_rerun(tmp_path, capsys):
    """A row whose stored config lacks a field the current code added (default = old behaviour)
    is found under the current key: the rerun trains nothing; a field whose stored value differs
    from the current default keeps its own key (such a run is not reused)."""
    import hashlib
    sweep = write_sweep(tmp_path, '[grid]\n"objective.method" = ["df", "bp"]\n')
    store = tmp_path / "s.sqlite"
    argv = ["sweep", str(sweep), "--store", str(store), "--executor", "inline", "--no-progress"]
    assert main(argv) == 0
    before = {r["key"]: r for r in rows(store)}
    con = sqlite3.connect(store)
    for key, row in before.items():  # as written by a version without [deploy] and data.corruption*
        cfg = json.loads(row["config"])
        del cfg["deploy"]
        cfg["data"] = {k: v for k, v in cfg["data"].items() if not k.startswith("corruption")}
        text = json.dumps(cfg, sort_keys=True, separators=(",", ":"))
        con.execute("UPDATE runs SET key = ?, config = ? WHERE key = ?",
                    (hashlib.sha256(text.encode()).hexdigest(), text, key))
    con.commit()
    con.close()
    assert not set(before) & {r["key"] for r in rows(store)}
    capsys.readouterr()
    assert main([*argv, "--dry-run"]) == 0  # lists them as done, and moves nothing
    assert capsys.readouterr().out.count(" done ") == 2 and not set(before) & {r["key"] for r in rows(store)}
    assert main(argv) == 0
    assert "(2 done, 0 failed, 0 to run)" in capsys.readouterr().err
    after = {r["key"]: r for r in rows(store)}
    assert set(after) == set(before)
    assert all(after[k]["config"] == before[k]["config"] and after[k]["attempts"] == 1 for k in after)


def test_mlp_reference_sweep_chooses_on_a_validation_split():
    """experiments/configs/mlp_reference_fmnist.toml (issue 21's MLP references): DF and BP, 3
    learning rates x 3 seeds each, 10 epochs, cosine schedule, a 10 % validation split."""
    from pathlib import Path
    from experiments.runner.sweep import config_from_json, load_sweep
    path = Path(__file__).resolve().parents[1] / "experiments" / "configs" / "mlp_reference_fmnist.toml"
    cfgs = [config_from_json(run.config_json) for run in load_sweep(path).runs]
    assert len(cfgs) == 18 and {c.objective.method for c in cfgs} == {"df", "bp"}
    for method in ("df", "bp"):
        mine = [c for c in cfgs if c.objective.method == method]
        assert {(c.train.lr, c.train.seed) for c in mine} == {(lr, s) for lr in (3e-4, 1e-3, 2e-3) for s in (0, 1, 2)}
    assert all(c.data.val_fraction == 0.1 and c.train.epochs == 10 and c.train.lr_schedule == "cosine"
               and c.model.hidden == (1000, 1000, 1000) for c in cfgs)


def test_cnn_reference_sweep_compares_augmentation_on_a_validation_split():
    """experiments/configs/cnn_reference_fmnist.toml (issue 21's CNN references): DF with and without
    augmentation and BP with it, 2 learning rates each, 20 cosine epochs, a 10 % validation split."""
    from pathlib import Path
    from experiments.runner.sweep import config_from_json, load_sweep
    path = Path(__file__).resolve().parents[1] / "experiments" / "configs" / "cnn_reference_fmnist.toml"
    cfgs = [config_from_json(run.config_json) for run in load_sweep(path).runs]
    got = {(c.objective.method, c.train.augment_shift_px, c.train.augment_flip, c.train.lr) for c in cfgs}
    assert got == {(m, s, f, lr) for m, s, f in (("df", 2, True), ("bp", 2, True), ("df", 0, False))
                   for lr in (1e-3, 3e-4)}
    assert all(c.model.arch == "cnn" and c.model.channels == (32, 64, 128) and c.data.val_fraction == 0.1
               and c.train.epochs == 20 and c.train.lr_schedule == "cosine" for c in cfgs)


def test_cnn_reference_seeds_are_the_chosen_settings_with_other_seeds():
    """cnn_reference_seeds_fmnist.toml adds seeds 1 and 2 of the settings chosen on validation (DF
    without augmentation, BP with it, lr 1e-3): each of its runs equals a run of
    cnn_reference_fmnist.toml in every field but train.seed, so model selection (select_best) counts
    them as one setting."""
    import json
    from pathlib import Path
    from experiments.runner.sweep import load_sweep
    configs = Path(__file__).resolve().parents[1] / "experiments" / "configs"

    def settings(name: str) -> list[tuple[str, int]]:
        out = []
        for run in load_sweep(configs / name).runs:
            cfg = json.loads(run.config_json)
            seed = cfg["train"].pop("seed")
            out.append((json.dumps(cfg, sort_keys=True), seed))
        return out

    chosen = settings("cnn_reference_seeds_fmnist.toml")
    reference = {s for s, seed in settings("cnn_reference_fmnist.toml") if seed == 0}
    assert sorted(seed for _, seed in chosen) == [1, 1, 2, 2]
    assert all(s in reference for s, _ in chosen)
    picked = {(json.loads(s)["objective"]["method"], json.loads(s)["train"]["augment_flip"],
               json.loads(s)["train"]["lr"]) for s, _ in chosen}
    assert picked == {("df", False, 1e-3), ("bp", True, 1e-3)}

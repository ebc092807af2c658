"""Runs that survive: a train killed at a random step of epoch 2 of 3 resumes to the very weights of
an uninterrupted run (torch and sim/fixed8); SIGTERM and Ctrl-C leave status "interrupted"; a
diverged run is stopped, marked failed and its folder reusable; full disks and corrupt files are
one-line errors that leave no partial files; checkpoints carrying code are refused unrun; settings
that would do nothing are errors."""

from __future__ import annotations

import errno
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from experiments.cli import main

ROOT = Path(__file__).resolve().parent.parent
DF_MLP = str(ROOT / "experiments" / "configs" / "df_mlp_fmnist.toml")
TINY = ["data.name=synthetic", "data.synthetic_train=40", "data.synthetic_test=20", "model.hidden=[4]",
        "train.epochs=1", "train.batch_size=20", "train.threads=1", "train.train_eval_samples=20"]
# 3 epochs of 100 steps each (a few seconds per epoch on sim/fixed8): room to kill in the middle
SLOW = ["data.name=synthetic", "data.synthetic_train=1000", "data.synthetic_test=200", "model.hidden=[48, 48]",
        "train.epochs=3", "train.batch_size=10", "train.threads=1", "train.train_eval_samples=100"]


def _argv(sets, *extra):
    out = []
    for s in sets:
        out += ["--set", s]
    return [*out, *extra]


def _one_line(capsys, argv, *needles, code=2):
    """The command exits with `code` and its error is one line (the last; commands may announce what
    they are about to do before it), naming each needle; no traceback."""
    assert main(argv) == code
    lines = capsys.readouterr().err.strip().splitlines()
    err = lines[-1]
    assert err.startswith("onchip-ff: error:") and not any("error" in ln or "Traceback" in ln for ln in lines[:-1]), lines
    for needle in needles:
        assert needle in err, err
    return err


def _start(out, sets):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.Popen([sys.executable, "-m", "experiments.cli", "train", DF_MLP, *_argv(sets), "--out", str(out),
                             "--no-progress"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _epochs(out) -> int:
    try:
        return json.loads((out / "metrics.json").read_text())["epochs"]
    except (OSError, ValueError, KeyError):
        return 0


def _wait_epochs(proc, out, n, timeout_s=120):
    t0 = time.monotonic()
    while _epochs(out) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() - t0 < timeout_s, "the run did not reach its epoch in time"
        time.sleep(0.02)


def _weights(out):
    ckpt = torch.load(out / "checkpoint.pt", weights_only=True)
    return ckpt["model"], ckpt["tiles"]


@pytest.mark.parametrize("backend", [[], ["hardware.backend=sim", "hardware.preset=fixed8"]], ids=["torch", "fixed8"])
def test_sigkill_in_epoch_2_then_resume_equals_an_uninterrupted_run(tmp_path, backend):
    sets = SLOW + backend
    ref = tmp_path / "ref"
    assert main(["train", DF_MLP, *_argv(sets), "--out", str(ref), "--no-progress"]) == 0
    history = json.loads((ref / "metrics.json").read_text())["history"]
    epoch_s = history[1]["wall_s"] - history[0]["wall_s"]
    killed = tmp_path / "killed"
    proc = _start(killed, sets)
    _wait_epochs(proc, killed, 1)
    time.sleep(np.random.default_rng(7).uniform(0.05, 0.5) * epoch_s)  # a random step of epoch 2
    proc.send_signal(signal.SIGKILL)
    proc.communicate(timeout=60)
    assert _epochs(killed) == 1 and json.loads((killed / "metrics.json").read_text())["status"] == "running"
    assert main(["train", "--resume", str(killed), "--no-progress"]) == 0
    got, want = json.loads((killed / "metrics.json").read_text()), json.loads((ref / "metrics.json").read_text())
    assert got["status"] == "done" and got["epochs"] == 3
    assert [h["loss"] for h in got["history"]] == [h["loss"] for h in want["history"]]
    assert got["test_accuracy"] == want["test_accuracy"]
    (m1, t1), (m2, t2) = _weights(killed), _weights(ref)
    assert m1.keys() == m2.keys() and all(torch.equal(m1[k], m2[k]) for k in m1)
    assert len(t1) == len(t2) == (2 if backend else 0)
    for a, b in zip(t1, t2):
        assert torch.equal(a["codes"], b["codes"]) and a["rng"] == b["rng"]


def test_sigterm_and_ctrl_c_mark_the_run_interrupted_and_resume_finishes_it(tmp_path):
    for sig, code, word in ((signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")):
        out = tmp_path / word
        proc = _start(out, SLOW)
        _wait_epochs(proc, out, 1)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == code and f"onchip-ff: {word}" in err and err.count("\n") == 1, err
        metrics = json.loads((out / "metrics.json").read_text())
        assert metrics["status"] == "interrupted" and metrics["epochs"] >= 1
    assert main(["train", "--resume", str(tmp_path / "terminated"), "--no-progress"]) == 0
    assert json.loads((tmp_path / "terminated" / "metrics.json").read_text())["status"] == "done"
    assert main(["train", "--resume", str(tmp_path / "terminated")]) == 2  # finished: nothing to resume


def test_resume_refuses_what_it_cannot_continue(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", DF_MLP, *_argv(TINY), "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    _one_line(capsys, ["train", "--resume", str(run)], "finished already")
    _one_line(capsys, ["train", DF_MLP, "--resume", str(run)], "leave out CONFIG")
    _one_line(capsys, ["train", "--resume", str(tmp_path / "none")], "no config.toml")
    _one_line(capsys, ["train"], "needs a CONFIG.toml")


def test_a_diverged_run_is_failed_and_its_folder_reusable(tmp_path, capsys):
    out = tmp_path / "run"
    _one_line(capsys, ["train", DF_MLP, *_argv(TINY + ["objective.scale=1e30", "train.lr=1e30"]), "--out", str(out),
                       "--no-progress"],
              "non-finite")
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["status"] == "failed" and "DivergedError" in metrics["error"]
    assert main(["train", DF_MLP, *_argv(TINY), "--out", str(out), "--no-progress"]) == 0  # the same folder
    assert json.loads((out / "metrics.json").read_text())["status"] == "done"
    for bad in ("train.lr=inf", "train.lr=nan", "hardware.out_noise=inf"):
        _one_line(capsys, ["train", DF_MLP, "--set", bad], bad.split("=")[0], "finite")


def test_a_loss_far_above_its_start_warns():
    from onchip_ff import config
    from onchip_ff.data import load_dataset
    from onchip_ff.trainer import train
    cfg = config.load(DF_MLP, TINY + ["train.lr=1e6", "train.epochs=2", "objective.method=bp"])
    with pytest.warns(UserWarning, match="over 10x"):
        train(cfg, load_dataset(cfg.data))


IO_FAULTS = [(errno.ENOSPC, "free some disk space"), (errno.EIO, "the storage failed"),
             (errno.EACCES, "check the permissions"), (errno.EROFS, "read-only")]


@pytest.mark.parametrize("code,hint", IO_FAULTS, ids=["ENOSPC", "EIO", "EACCES", "EROFS"])
def test_io_failures_on_train_are_one_line_and_leave_no_partial_files(tmp_path, capsys, monkeypatch, code, hint):
    """Injected where every run file is made durable (os.fsync): full disk, I/O error, permission
    denied (injected: the suite may run as root, for whom permissions do not bite), read-only."""
    def fail(fd):
        raise OSError(code, os.strerror(code))
    monkeypatch.setattr(os, "fsync", fail)
    out = tmp_path / "run"
    _one_line(capsys, ["train", DF_MLP, *_argv(TINY), "--out", str(out), "--no-progress"], os.strerror(code), hint)
    assert not [p.name for p in out.iterdir() if p.name.startswith(".")]  # no temporary files
    assert not (out / "metrics.json").exists() or json.loads((out / "metrics.json").read_text())["status"] != "done"


@pytest.mark.parametrize("code", [c for c, _ in IO_FAULTS], ids=["ENOSPC", "EIO", "EACCES", "EROFS"])
def test_io_failures_creating_the_output_folder_are_one_line(tmp_path, capsys, monkeypatch, code):
    from pathlib import Path as P

    def fail(self, *args, **kwargs):
        raise OSError(code, os.strerror(code), str(self))
    monkeypatch.setattr(P, "mkdir", fail)
    out = tmp_path / "run"
    _one_line(capsys, ["train", DF_MLP, *_argv(TINY), "--out", str(out), "--no-progress"], os.strerror(code),
              f"--out {out} is not writable", "pass a folder you can write to")
    assert not out.exists()


@pytest.fixture
def tiny_store_limit(monkeypatch):
    """SQLite's own 'database or disk is full' after a few pages (PRAGMA max_page_count)."""
    import experiments.runner.store as store
    real = store._connect

    def small(path, mode):
        conn = real(path, mode)
        conn.execute("PRAGMA max_page_count = 12")
        return conn
    monkeypatch.setattr(store, "_connect", small)


def _fixed(sets) -> str:
    """[fixed] lines of `section.key=value` overrides (bare words quoted)."""
    import tomllib
    lines = []
    for text in sets:
        key, value = text.split("=", 1)
        try:
            tomllib.loads(f"v = {value}")
        except tomllib.TOMLDecodeError:
            value = f'"{value}"'
        lines.append(f'"{key}" = {value}\n')
    return "".join(lines)


def _sweep_file(tmp_path, n_seeds=40):
    path = tmp_path / "s.toml"
    path.write_text(f'[sweep]\nname = "full"\nbase = "{DF_MLP}"\nseeds = {list(range(n_seeds))}\n[fixed]\n'
                    + _fixed(TINY))
    return path


def test_full_store_on_sweep_memory_and_robustness(tmp_path, capsys, tiny_store_limit):
    sweep = _sweep_file(tmp_path)
    _one_line(capsys, ["sweep", str(sweep), "--store", str(tmp_path / "s.sqlite"), "--executor", "inline"],
              "results store", "disk is full")
    mem = tmp_path / "m.toml"
    mem.write_text('[memory]\ncuda = false\n[[memory.grid]]\nmethod = ["df", "bp", "ff"]\narch = ["mlp"]\n'
                   'batch = [4, 8, 16, 32, 64]\ndepth = [1, 2, 3]\nformat = ["float32"]\noptimizer = ["sgd", "adam"]\n'
                   'mlp_width = 8\n')
    _one_line(capsys, ["memory", str(mem), "--out", str(tmp_path / "m")], "results store", "disk is full")
    rob = tmp_path / "r.toml"
    rob.write_text(f'[robustness]\nseeds = {list(range(30))}\n[methods]\ndf = "{DF_MLP}"\n[fixed]\n'
                   + _fixed(TINY)
                   + '[[parameter]]\nkey = "hardware.adc_bits"\nlevels = [4, 6]\nnoise_model = "adc"\n'
                   '[parameter.set]\n"hardware.backend" = "sim"\n')
    _one_line(capsys, ["robustness", str(rob), "--out", str(tmp_path / "r"), "--executor", "inline"],
              "results store", "disk is full")


def test_corrupt_checkpoints_and_code_in_a_checkpoint_are_refused(tmp_path, capsys):
    run = tmp_path / "run"
    assert main(["train", DF_MLP, *_argv(TINY), "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    ckpt = run / "checkpoint.pt"
    good = ckpt.read_bytes()
    for damage, needle in ((good[: len(good) // 2], "truncated or corrupt"), (os.urandom(4000), "truncated or corrupt")):
        ckpt.write_bytes(damage)
        _one_line(capsys, ["deploy", str(run), "--out", str(tmp_path / "d")], needle)
    torch.save({"config": {}, "epoch": 1}, ckpt)
    _one_line(capsys, ["deploy", str(run), "--out", str(tmp_path / "d")], "no model state")
    marker = tmp_path / "pwned"

    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))
    torch.save({"model": Evil()}, ckpt)  # a torch checkpoint whose unpickling would run a command
    _one_line(capsys, ["deploy", str(run), "--out", str(tmp_path / "d")], "refused, nothing was run")
    _one_line(capsys, ["train", "--resume", str(run)], "finished already")
    assert not marker.exists()
    assert not (tmp_path / "d").exists()  # nothing written by the failed commands


def test_settings_that_would_do_nothing_are_errors(tmp_path, capsys):
    _one_line(capsys, ["train", DF_MLP, "--set", "hardware.adc_bits=4"], "hardware.adc_bits", "hardware.backend = 'sim'")
    _one_line(capsys, ["train", DF_MLP, "--set", "hardware.preset=pcm"], "hardware.preset", "does nothing")
    run = tmp_path / "run"
    assert main(["train", DF_MLP, *_argv(TINY), "--out", str(run), "--no-progress"]) == 0
    capsys.readouterr()
    _one_line(capsys, ["deploy", str(run), "--set", "train.lr=0.1"], "train.lr would do nothing")
    store = tmp_path / "s.sqlite"
    assert main(["sweep", str(_sweep_file(tmp_path, 1)), "--store", str(store), "--executor", "inline",
                 "--no-progress"]) == 0
    capsys.readouterr()
    _one_line(capsys, ["results", str(store), "--where", "train.lr=[1,"], "not a valid TOML value")
    rob = tmp_path / "r.toml"
    rob.write_text(f'[robustness]\nseeds = [0]\n[methods]\ndf = "{DF_MLP}"\n[[parameter]]\nkey = "hardware.adc_bits"\n'
                   'levels = [4]\nnoise_model = "adc"\n[parameter.set]\n"hardware.backend" = "sim"\n')
    _one_line(capsys, ["robustness", str(rob), "--out", str(tmp_path / "r"), "--store", str(store), "--plot-only"],
              "holds no run")
    (tmp_path / "cfgdir").mkdir()
    _one_line(capsys, ["train", str(tmp_path / "cfgdir")], "is a folder")
    (tmp_path / "afile").write_text("x")
    _one_line(capsys, ["train", DF_MLP, "--set", f'data.root="{tmp_path / "afile"}"'], "is a file")


def test_sqlite_errors_keep_the_stored_runs(tmp_path, capsys):
    store = tmp_path / "s.sqlite"
    assert main(["sweep", str(_sweep_file(tmp_path, 2)), "--store", str(store), "--executor", "inline",
                 "--no-progress"]) == 0
    before = sqlite3.connect(store).execute("SELECT count(*) FROM runs WHERE status = 'done'").fetchone()[0]
    assert before == 2

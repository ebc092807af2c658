"""`onchip-ff robustness`: expansion of a robustness file into runs, the CSV schema, the plots, and
resuming from the results store without recomputing finished points."""

import csv
import sqlite3
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.robustness_report import CSV_COLUMNS, DRIFT, DRIFT_COMPENSATED
from experiments.robustness_spec import FLOAT, load_spec

CONFIGS = Path(__file__).resolve().parents[1] / "experiments" / "configs"
PNG = b"\x89PNG\r\n\x1a\n"
TINY = f"""
[robustness]
name = "tiny"
seeds = [0, 1]

[methods]
df = "{CONFIGS / 'df_mlp_fmnist.toml'}"
bp = "{CONFIGS / 'bp_mlp_fmnist.toml'}"

[fixed]
"data.name" = "synthetic"
"data.synthetic_train" = 300
"data.synthetic_test" = 200
"model.hidden" = [16, 16]
"train.epochs" = 1
"train.batch_size" = 50
"train.threads" = 1
"train.lr" = 3e-3

[reference]
deploy_preset = "pcm"
times_s = [1.0, 86400.0]

[[parameter]]
noise_model = "gaussian_weight"
key = "hardware.gaussian_weight.sigma_add_rel"
levels = [0.0, 0.05]
xlabel = "std (fraction of g_max)"
[parameter.set]
"hardware.backend" = "sim"
"hardware.weight_headroom" = 2.0
"hardware.noise" = ["gaussian_weight", "stuck_at"]
"hardware.gaussian_weight.sigma_mul_rel" = 0.0
"hardware.stuck_at.p_stuck_low" = 0.0
"hardware.stuck_at.p_stuck_high" = 0.0

[[parameter]]
noise_model = "stuck_at"
key = ["hardware.stuck_at.p_stuck_low", "hardware.stuck_at.p_stuck_high"]
levels = [0.0, 0.1]
[parameter.set]
"hardware.backend" = "sim"
"hardware.weight_headroom" = 2.0
"hardware.noise" = ["gaussian_weight", "stuck_at"]
"hardware.gaussian_weight.sigma_add_rel" = 0.0
"hardware.gaussian_weight.sigma_mul_rel" = 0.0
"""


def _spec_file(tmp_path, text=TINY):
    path = tmp_path / "tiny.toml"
    path.write_text(text)
    return path


def test_spec_expands_points_and_shares_runs_with_equal_configs(tmp_path):
    spec = load_spec(_spec_file(tmp_path))
    # 2 seeds x 2 methods x (1 reference + 2 parameters x 2 levels)
    assert len(spec.points) == 2 * 2 * 5
    # both parameters' zero level is the same device: one run per (method, seed) is shared
    assert len(spec.sweep.runs) == len(spec.points) - 2 * 2 and spec.sweep.duplicates == 4
    zero = [p for p in spec.points if p.parameter is not None and p.level == 0 and p.method == "df"
            and p.seed == 0]
    assert len(zero) == 2 and zero[0].key == zero[1].key
    assert len({r.key for r in spec.sweep.runs}) == len(spec.sweep.runs)
    ref = next(p for p in spec.points if p.parameter is None)
    run = next(r for r in spec.sweep.runs if r.key == ref.key)
    assert '"backend":"torch"' in run.config_json and '"preset":"pcm"' in run.config_json


def test_robustness_writes_csv_plots_and_rerun_skips_finished_points(tmp_path, capsys):
    spec_path, out = _spec_file(tmp_path), tmp_path / "out"
    argv = ["robustness", str(spec_path), "--out", str(out), "--executor", "inline", "--no-progress"]
    assert main(argv) == 0
    rows = list(csv.DictReader(open(out / "robustness.csv")))
    assert tuple(rows[0]) == CSV_COLUMNS
    points = [r for r in rows if r["parameter"] not in (DRIFT, DRIFT_COMPENSATED)]
    drift = [r for r in rows if r["parameter"] in (DRIFT, DRIFT_COMPENSATED)]
    assert len(points) == 20 and len(drift) == 2 * 2 * 2 * 2  # methods x seeds x compensation x times
    ids = {(r["method"], r["noise_model"], r["parameter"], r["level"], r["seed"]) for r in rows}
    assert len(ids) == len(rows)  # one row per (method, noise_model, parameter, level, seed)
    assert all(r["status"] == "done" and 0 <= float(r["test_accuracy"]) <= 1 for r in rows)
    assert all(float(r["train_time_s"]) > 0 for r in points)
    refs = [r for r in points if r["parameter"] == FLOAT]
    assert len(refs) == 4 and {r["noise_model"] for r in refs} == {"none"}
    assert {r["noise_model"] for r in drift} == {"pcm"}
    assert {float(r["level"]) for r in drift} == {1.0, 86400.0}
    stuck = {r["level"] for r in points if r["noise_model"] == "stuck_at"}
    assert stuck == {"0.0", "0.1"}
    for name in ("robustness.png", "drift.png"):
        assert (out / name).read_bytes()[:8] == PNG
    md = (out / "robustness.md").read_text()
    assert md.count("| df |") == 2 + 2 and md.count("| df | off |") == 1 and "highest − lowest" in md
    before = (out / "robustness.csv").read_text()
    db = sqlite3.connect(out / "robustness.sqlite")
    started = db.execute("SELECT key, attempts, started FROM runs ORDER BY key").fetchall()
    db.close()
    assert len(started) == 16 and all(a == 1 for _, a, _ in started)
    capsys.readouterr()

    assert main(argv) == 0  # rerun: nothing is trained again
    err = capsys.readouterr().err
    assert "16 done" in err and "0 to run" in err
    db = sqlite3.connect(out / "robustness.sqlite")
    assert db.execute("SELECT key, attempts, started FROM runs ORDER BY key").fetchall() == started
    db.close()
    assert (out / "robustness.csv").read_text() == before

    (out / "robustness.png").unlink()
    assert main(["robustness", str(spec_path), "--out", str(out), "--plot-only"]) == 0
    assert (out / "robustness.png").read_bytes()[:8] == PNG


def test_a_new_level_runs_only_the_new_points(tmp_path, capsys):
    spec_path, out = _spec_file(tmp_path, TINY.replace("seeds = [0, 1]", "seeds = [0]")), tmp_path / "out"
    argv = ["robustness", str(spec_path), "--out", str(out), "--executor", "inline", "--no-progress"]
    assert main(argv) == 0
    spec_path.write_text(spec_path.read_text().replace("levels = [0.0, 0.1]", "levels = [0.0, 0.1, 0.2]"))
    capsys.readouterr()
    assert main(argv) == 0
    assert "8 done, 0 failed, 2 to run" in capsys.readouterr().err
    rows = list(csv.DictReader(open(out / "robustness.csv")))
    assert {r["level"] for r in rows if r["noise_model"] == "stuck_at"} == {"0.0", "0.1", "0.2"}


@pytest.mark.jitfree
@pytest.mark.parametrize("edit, message", [
    (("[fixed]", "[fixd]"), "unknown table(s) fixd"),
    (("levels = [0.0, 0.05]", "levels = []"), "levels must be a non-empty list"),
    (("levels = [0.0, 0.05]", "levels = [0.0, 0.0]"), "levels must be a non-empty list of distinct"),
    (('key = "hardware.gaussian_weight.sigma_add_rel"', 'key = "sigma"'), "must be section.key"),
    (('"train.lr" = 3e-3', '"train.seed" = 3'), "train.seed is set by robustness.seeds"),
    (('"hardware.weight_headroom" = 2.0\n"hardware.noise" = ["gaussian_weight", "stuck_at"]\n'
      '"hardware.gaussian_weight.sigma_mul_rel"', '"hardware.weight_headroom" = -2.0\n'
      '"hardware.noise" = ["gaussian_weight", "stuck_at"]\n"hardware.gaussian_weight.sigma_mul_rel"'),
     "weight_headroom"),
    (('bp = "', 'bp = "missing/'), "methods.bp"),
    (("seeds = [0, 1]", "seeds = [0, 0]"), "distinct"),
    (("[reference]", "[reference]\nbogus = 1"), "reference.bogus"),
])
def test_bad_robustness_files_are_one_line_errors_before_anything_is_written(tmp_path, capsys, edit, message):
    text = TINY.replace(*edit, 1)
    assert text != TINY
    out = tmp_path / "out"
    assert main(["robustness", str(_spec_file(tmp_path, text)), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not out.exists()


@pytest.mark.jitfree
def test_missing_file_plot_only_without_store_and_bad_workers(tmp_path, capsys):
    assert main(["robustness", str(tmp_path / "nope.toml"), "--out", str(tmp_path / "o")]) == 2
    assert "not found" in capsys.readouterr().err
    spec_path = _spec_file(tmp_path)
    assert main(["robustness", str(spec_path), "--out", str(tmp_path / "o"), "--plot-only"]) == 2
    assert "no store" in capsys.readouterr().err
    assert main(["robustness", str(spec_path), "--out", str(tmp_path / "o"), "--workers", "0"]) == 2
    assert "--workers" in capsys.readouterr().err


@pytest.mark.jitfree
def test_shipped_robustness_config_covers_the_issue_parameters():
    spec = load_spec(CONFIGS / "robustness_fmnist.toml")
    assert set(spec.methods) == {"df", "dfo", "ff", "deeperforward", "sff", "bp"} and len(spec.seeds) >= 3
    models = {p.noise_model: p for p in spec.parameters}
    assert set(models) == {"gaussian_weight", "gaussian_read", "stuck_at", "adc", "fixed_point", "pcm"}
    assert models["gaussian_weight"].levels[0] == 0 and models["gaussian_weight"].levels[-1] == 0.1
    assert models["adc"].harsher == models["fixed_point"].harsher == "lower"
    assert models["stuck_at"].levels[-1] * len(models["stuck_at"].keys) == 0.1
    assert 1.0 in models["pcm"].levels  # the pcm preset itself is a point
    assert spec.deploy_preset == "pcm"
    assert all(spec.method_setting(m, "train.epochs") >= 3 for m in spec.methods)  # trained, not 1 epoch
    assert spec.method_setting("dfo", "objective.block_size") == 2
    first = load_spec(CONFIGS / "robustness_1epoch_fmnist.toml")
    assert set(first.methods) == {"df", "ff", "bp"} and first.method_setting("df", "train.epochs") == 1
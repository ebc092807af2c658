"""Robustness files with per-method settings, the plain-language answers (changes paired by seed,
compared with a baseline beyond two standard errors), and `onchip-ff results-page` built from
stores filled by the real commands on synthetic data."""

import json
from pathlib import Path

import pytest

from experiments.cli import main
from experiments.results_page import best_val, load_page
from experiments.robustness_answers import clean_level, differs, drops, harshest_level, parameter_answer
from experiments.robustness_spec import FLOAT, Parameter, load_spec
from tests.test_robustness import CONFIGS, PNG, TINY

WITH_DFO = TINY.replace(
    f'bp = "{CONFIGS / "bp_mlp_fmnist.toml"}"',
    f'bp = "{CONFIGS / "bp_mlp_fmnist.toml"}"\n'
    f'dfo = {{ config = "{CONFIGS / "df_mlp_fmnist.toml"}", set = {{ "objective.block_size" = 2, '
    '"train.epochs" = 2, "hardware.weight_headroom" = 4.0 } }')


def _file(tmp_path, text, name="s.toml"):
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.jitfree
def test_a_method_table_sets_its_own_fields_on_every_curve(tmp_path):
    spec = load_spec(_file(tmp_path, WITH_DFO))
    assert list(spec.methods) == ["df", "bp", "dfo"]
    assert spec.method_setting("dfo", "train.epochs") == 2 and spec.method_setting("df", "train.epochs") == 1
    assert spec.method_setting("dfo", "objective.block_size") == 2
    runs = {r.key: json.loads(r.config_json) for r in spec.sweep.runs}
    dfo = [runs[p.key] for p in spec.points if p.method == "dfo"]
    assert len(dfo) == 2 * 5 and all(c["train"]["epochs"] == 2 for c in dfo)
    # the method's own headroom wins over the parameter's set (2.0) on the simulated points
    assert all(c["hardware"]["weight_headroom"] == 4.0 for c in dfo if c["hardware"]["backend"] == "sim")
    df = [runs[p.key] for p in spec.points if p.method == "df" and p.parameter is not None]
    assert all(c["hardware"]["weight_headroom"] == 2.0 for c in df)


@pytest.mark.jitfree
@pytest.mark.parametrize("entry, message", [
    ('{ config = "X", bogus = 1 }', "methods.dfo.bogus"),
    ('{ set = { "train.epochs" = 2 } }', "methods.dfo.config must be the path"),
    ('{ config = "X", set = { "train.seed" = 2 } }', "train.seed is set by robustness.seeds"),
    ('{ config = "X", set = { "hardware.adc_bits" = 6 } }', "swept and also set by methods.dfo"),
    ('{ config = "X", set = { "train.epochs" = -1 } }', "train.epochs"),
    ("3", "methods.dfo must be the path of a config file, or a table"),
])
def test_bad_method_tables_are_one_line_errors(tmp_path, capsys, entry, message):
    text = TINY + (f'\n[[parameter]]\nnoise_model = "adc"\nkey = "hardware.adc_bits"\nlevels = [4, 8]\n'
                   '[parameter.set]\n"hardware.backend" = "sim"\n')
    text = text.replace(f'bp = "{CONFIGS / "bp_mlp_fmnist.toml"}"',
                        f'bp = "{CONFIGS / "bp_mlp_fmnist.toml"}"\n'
                        f'dfo = {entry.replace("X", str(CONFIGS / "df_mlp_fmnist.toml"))}')
    assert main(["robustness", str(_file(tmp_path, text)), "--out", str(tmp_path / "o"), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def _param(harsher="higher", levels=(0.0, 0.05, 0.1)):
    return Parameter(("hardware.x",), "x", tuple(levels), "x", "x title", (), harsher)


def _rows(table):
    """table: {(method, level): [acc per seed]} -> rows of csv_rows' shape."""
    return [{"method": m, "parameter": "hardware.x", "level": level, "seed": s, "test_accuracy": a}
            for (m, level), accs in table.items() for s, a in enumerate(accs)]


@pytest.mark.jitfree
def test_drops_are_paired_by_seed_and_ordered_from_mild_to_harsh():
    p = _param()
    rows = _rows({("df", 0.0): [0.90, 0.80, 0.70], ("df", 0.05): [0.89, 0.79, 0.69],
                  ("df", 0.1): [0.85, 0.75, None]})
    d = drops(rows, "df", p)
    assert [x.level for x in d] == [0.05, 0.1]
    # paired by seed: every seed lost exactly 1 point, so no spread although the seeds differ by 10
    assert d[0].mean == pytest.approx(-0.01) and d[0].std == pytest.approx(0.0, abs=1e-12)
    assert d[1].seeds == 2 and d[1].mean == pytest.approx(-0.05)
    bits = _param("lower", (2, 4, 8))
    assert clean_level(bits) == 8 and harshest_level(bits) == 2
    rows = _rows({("df", 8): [0.9, 0.9], ("df", 4): [0.89, 0.88], ("df", 2): [0.7, 0.72]})
    assert [x.level for x in drops(rows, "df", bits)] == [4.0, 2.0]


@pytest.mark.jitfree
def test_answers_say_less_only_beyond_two_standard_errors(tmp_path):
    spec = load_spec(_file(tmp_path, TINY))
    p = _param()
    clear = _rows({("df", 0.0): [0.90, 0.91, 0.89], ("df", 0.1): [0.85, 0.86, 0.84],
                   ("bp", 0.0): [0.90, 0.91, 0.89], ("bp", 0.1): [0.70, 0.72, 0.68]})
    text = parameter_answer(spec, clear, p, "bp")
    assert "df degrades less than bp at 0.1 (+15.0) points (its change minus bp's)." in text
    assert text.index("df -5.0 ± 0.0") < text.index("bp -20.0 ± 0.8")  # best first
    noisy = _rows({("df", 0.0): [0.90, 0.90, 0.90], ("df", 0.1): [0.85, 0.75, 0.80],
                   ("bp", 0.0): [0.90, 0.90, 0.90], ("bp", 0.1): [0.84, 0.74, 0.79]})
    assert "no difference beyond two standard errors" in parameter_answer(spec, noisy, p, "bp")
    one_seed = _rows({("df", 0.0): [0.90], ("df", 0.1): [0.85], ("bp", 0.0): [0.90], ("bp", 0.1): [0.10]})
    assert "df vs bp: not compared yet" in parameter_answer(spec, one_seed, p, "bp")
    with_dfo = load_spec(_file(tmp_path, WITH_DFO, "dfo.toml"))
    assert "dfo" not in parameter_answer(with_dfo, clear, p, "bp")  # a method without runs says nothing
    a, b = drops(clear, "df", p)[0], drops(clear, "bp", p)[0]
    assert differs(a, b) and not differs(drops(noisy, "df", p)[0], drops(noisy, "bp", p)[0])


@pytest.mark.jitfree
def test_best_val_is_chosen_on_validation():
    history = [{"epoch": i + 1, "val_accuracy": v, "test_accuracy": t} for i, (v, t) in
               enumerate([(0.80, 0.99), (0.86, 0.50), (0.88, 0.70), (0.879, 0.95)])]
    assert best_val(history) == (3, 0.88, 0.70)  # the test accuracy never picks the epoch
    assert best_val([{"epoch": 1, "test_accuracy": 0.5}]) is None


@pytest.mark.jitfree
def test_the_reference_choice_says_how_many_settings_it_was_chosen_from():
    from experiments.runner.export import select_best

    def row(method, lr, seed, val, test):
        cfg = {"objective.method": method, "train.lr": lr, "train.seed": seed}
        return {"status": "done", "metrics": json.dumps({"val_accuracy": val}), "test_accuracy": test}, cfg

    rows = [row("df", 1e-3, 0, 0.90, 0.80), row("df", 1e-3, 1, 0.92, 0.81), row("df", 3e-4, 0, 0.905, 0.99),
            row("bp", 1e-3, 0, 0.89, 0.88)]
    best = {e["group"][0]: e for e in select_best(rows, ["objective.method"])}
    assert best["df"]["setting"]["train.lr"] == 1e-3 and best["df"]["seeds"] == 2  # mean val 0.91 > 0.905
    assert best["df"]["compared"] == 2 and best["bp"]["compared"] == 1
    assert best["df"]["test_mean"] == pytest.approx(0.805)  # the test accuracy never chooses


def _run(method, schedule, vals, block=1):
    cfg = {"objective": {"method": method, "block_size": block}, "train": {"lr_schedule": schedule}}
    history = [{"epoch": i + 1, "val_accuracy": v, "test_accuracy": v - 0.01} for i, v in enumerate(vals)]
    return {"status": "done", "config": json.dumps(cfg), "metrics": json.dumps({"history": history})}


@pytest.mark.jitfree
def test_epochs_needed_are_the_fewest_short_epochs_within_the_long_runs_best(monkeypatch, tmp_path):
    import experiments.results_page as rp
    rows = [_run("df", "constant", [0.85, 0.88, 0.90, 0.89, 0.895]), _run("df", "cosine", [0.86, 0.885]),
            _run("df", "cosine", [0.85, 0.87, 0.89, 0.893]), _run("df", "cosine", [0.80, 0.85, 0.87]),
            _run("df", "constant", [0.80, 0.95], block=2), _run("df", "cosine", [0.90], block=2),
            _run("bp", "cosine", [0.8, 0.9]), {"status": "failed", "config": "{}", "metrics": None}]
    monkeypatch.setattr(rp, "_rows", lambda store: rows)
    runs = {r["label"]: r for r in rp.convergence_runs(rp.Convergence(tmp_path, "cmd", 0.01)).values()}
    # df: best long val 0.90 (epoch 3); cosine 2 epochs ends at 0.885 (< 0.89), 4 at 0.893: 4 needed
    assert runs["df"]["long"] == {"ran": 5, "best_epoch": 3, "best_val": 0.90, "test_at_best": pytest.approx(0.89)}
    assert runs["df"]["epochs"] == 4 and sorted(runs["df"]["short"]) == [2, 3, 4]
    assert runs["dfo"]["epochs"] is None  # 0.90 is not within 1 point of 0.95
    assert runs["bp"]["long"]["best_val"] == 0.9 and runs["bp"]["short"] == {} and runs["bp"]["epochs"] is None


PAGE = """
[page]
title = "Tiny results"

[[reference]]
title = "tiny references"
store = "{ref}"
command = "onchip-ff sweep ref.toml"
paper = {{ df = "93.89 (paper)" }}

[convergence]
store = "{conv}"
command = "onchip-ff sweep conv.toml"

[[robustness]]
config = "{study}"
dir = "{out}"
command = "onchip-ff robustness study.toml --out OUT"
"""

# the tiny study's [fixed] data and model (synthetic, 16-16), with a validation split and 3 epochs
FIXED = TINY[TINY.index("[fixed]"):TINY.index("[reference]")].replace(
    '"train.epochs" = 1', '"train.epochs" = 3\n"data.val_fraction" = 0.2')
SWEEP = f"""
[sweep]
name = "tiny_ref"
base = "{CONFIGS / 'df_mlp_fmnist.toml'}"
seeds = [0, 1]
{FIXED}
[[variants]]

[[variants]]
base = "{CONFIGS / 'bp_mlp_fmnist.toml'}"
"""


def test_results_page_from_real_stores_and_missing_ones(tmp_path, capsys):
    study = _file(tmp_path, TINY, "study.toml")
    sweep = _file(tmp_path, SWEEP, "ref.toml")
    ref, out = tmp_path / "ref.sqlite", tmp_path / "study"
    page_text = PAGE.format(ref=ref, conv=ref, study=study, out=out)
    page = _file(tmp_path, page_text, "page.toml")
    docs = tmp_path / "docs"
    assert main(["results-page", str(page), "--out", str(docs)]) == 0  # nothing run yet
    text = (docs / "results.md").read_text()
    assert text.count("Not run yet") == 3 and "onchip-ff sweep ref.toml" in text

    assert main(["sweep", str(sweep), "--store", str(ref), "--executor", "inline", "--no-progress"]) == 0
    assert main(["robustness", str(study), "--out", str(out), "--executor", "inline", "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["results-page", str(page), "--out", str(docs)]) == 0
    text = (docs / "results.md").read_text()
    assert "Not run yet" not in text
    assert "| df |" in text and "93.89 (paper)" in text and "| bp |" in text
    assert text.count("(the only one finished)") == 2  # one setting per method in this sweep
    assert "## Epochs to convergence" in text and "| study epochs |" in text
    assert "20 of 20 points finished" in text and "degrade" in text and "Compute: 16 runs finished" in text
    assert "drift, no compensation** (time after programming, s), 1 → 86400: " in text  # the drift answers
    assert "drift, global drift compensation**" in text
    for name in ("results_tiny.png", "results_tiny_drift.png"):
        assert (docs / name).read_bytes()[:8] == PNG and f"]({name})" in text
    assert "float reference" in text and FLOAT not in text.split("## Robustness")[0]


@pytest.mark.jitfree
@pytest.mark.parametrize("edit, message", [
    (("[page]", "[pag]"), "unknown table(s) pag"),
    (('command = "onchip-ff sweep conv.toml"', 'command = "x"\nwithin = 2'), "within must be"),
    (('paper = { df = "93.89 (paper)" }', "paper = { df = 93.89 }"), "paper must map"),
    (('title = "tiny references"', 'title = "t"\nbogus = 1'), "unknown key reference.bogus"),
])
def test_bad_page_files_are_one_line_errors(tmp_path, capsys, edit, message):
    text = PAGE.format(ref="r", conv="c", study="s", out="o").replace(*edit, 1)
    page = _file(tmp_path, text, "page.toml")
    with pytest.raises(Exception) as exc:
        load_page(page)
    assert message in str(exc.value)
    assert main(["results-page", str(page), "--out", str(tmp_path / "d")]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.jitfree
def test_shipped_results_page_file_loads():
    page = load_page(Path(__file__).resolve().parents[1] / "experiments" / "configs" / "results_page.toml")
    assert page.references and page.convergence and page.studies
    for s in page.studies:
        load_spec(Path(__file__).resolve().parents[1] / s.config)


def test_sim_runs_record_the_share_of_weights_at_their_range_limit(tmp_path):
    """metrics.json of a run on the simulator holds weights_at_range_limit; a large learning rate on
    arrays whose range is fixed at the initial weights (headroom 1) drives weights to the limit, a
    wide range (headroom 8) keeps them off it."""
    from tests.test_memory_report import DF_MLP, TRAIN_TINY
    share = {}
    for headroom in (1.0, 8.0):
        out = tmp_path / f"h{headroom}"
        assert main(["train", DF_MLP, *TRAIN_TINY, "--set", "hardware.backend=sim", "--set", "hardware.preset=ideal",
                     "--set", f"hardware.weight_headroom={headroom}", "--set", "train.lr=0.05",
                     "--out", str(out)]) == 0
        share[headroom] = json.loads((out / "metrics.json").read_text())["weights_at_range_limit"]
    assert share[1.0] > 0.05 and share[8.0] < share[1.0] / 5
    out = tmp_path / "torch"
    assert main(["train", DF_MLP, *TRAIN_TINY, "--out", str(out)]) == 0
    assert "weights_at_range_limit" not in json.loads((out / "metrics.json").read_text())


def test_shipped_results_page_is_what_the_committed_stores_give(tmp_path, monkeypatch):
    """docs/results.md is generated: regenerating it from the stores under results/ gives the
    committed text (a study continued without regenerating the page fails here)."""
    root = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(root)
    assert main(["results-page", "--out", str(tmp_path)]) == 0
    assert (tmp_path / "results.md").read_text() == (root / "docs" / "results.md").read_text()
    assert "Not run yet" not in (tmp_path / "results.md").read_text()

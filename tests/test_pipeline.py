"""DeeperForward layer pipeline (torch.distributed, gloo): the split, equality with the sequential
schedule, the CLI, and the train.device checks."""

from __future__ import annotations

import json

import pytest
import torch

from experiments.cli import main
from onchip_ff import config
from onchip_ff.data import load_dataset
from common.errors import ConfigError
from onchip_ff.pipeline import batch_plan, run_pipeline, split_layers
from onchip_ff.methods import build_learner
from onchip_ff.trainer import check_device, set_learning_rates

from conftest import SYNTHETIC

DFW = SYNTHETIC + ["model.arch=cnn", "model.channels=[10, 20, 30]", "objective.method=deeperforward",
                   "train.epochs=2", "train.lr=0.03", "train.lr_schedule=cosine"]


@pytest.mark.jitfree
@pytest.mark.parametrize("costs, stages, expected", [
    ([1, 1, 1, 1], 2, [[0, 1], [2, 3]]),
    ([10, 1, 1, 1], 2, [[0], [1, 2, 3]]),
    ([1, 1, 1, 10], 2, [[0, 1, 2], [3]]),
    ([3, 1, 1, 3, 2], 3, [[0, 1], [2, 3], [4]]),  # stage costs 4, 4, 2; every other split has a 5
    ([5, 5, 5], 3, [[0], [1], [2]]),
    ([5, 5, 5], 1, [[0, 1, 2]]),
])
def test_split_layers_minimizes_the_slowest_stage(costs, stages, expected):
    assert [list(r) for r in split_layers(costs, stages)] == expected


@pytest.mark.jitfree
@pytest.mark.parametrize("stages", [0, 4])
def test_split_layers_rejects_impossible_stage_counts(stages):
    with pytest.raises(ConfigError, match="1..3 stages"):
        split_layers([1, 1, 1], stages)


@pytest.mark.jitfree
def test_batch_plan_is_the_trainers_permutation():
    import numpy as np
    rng = np.random.default_rng(7)
    plan = batch_plan(10, 4, 2, 7, 0)
    assert [len(b) for b in plan] == [4, 4, 2, 4, 4, 2]
    first, second = rng.permutation(10), rng.permutation(10)
    assert np.concatenate(plan[:3]).tolist() == first.tolist()
    assert np.concatenate(plan[3:]).tolist() == second.tolist()
    assert len(batch_plan(10, 4, 2, 7, 4)) == 4


def _sequential_state(cfg, steps):
    torch.set_num_threads(1)  # the stages run 1 thread each: same kernels, same rounding
    data = load_dataset(cfg.data)
    learner = build_learner(cfg, data.input_shape, data.n_classes, torch.Generator().manual_seed(cfg.train.seed))
    plan = batch_plan(len(data.y_train), cfg.train.batch_size, cfg.train.epochs, cfg.train.seed, steps)
    total = cfg.train.epochs * len(batch_plan(len(data.y_train), cfg.train.batch_size, 1, 0, 0))
    for s, idx in enumerate(plan):
        set_learning_rates(learner.optimizers, cfg.train, s, total)
        learner.train_step(torch.from_numpy(data.x_train[idx]), torch.from_numpy(data.y_train[idx]))
    return learner.state_dict()


def test_two_stage_pipeline_equals_the_sequential_schedule_bit_for_bit():
    cfg = config.load(None, DFW)
    result = run_pipeline(cfg, 2, max_steps=15, threads=1, warmup=3)
    expected = _sequential_state(cfg, 15)
    assert result["split"] in ([[0], [1, 2]], [[0, 1], [2]])
    assert sorted(result["state"]) == sorted(expected)
    for k, v in expected.items():
        assert torch.equal(result["state"][k], v), k
    assert result["steps"] == 12 and result["samples"] == 12 * 50  # warm-up steps are not timed
    assert len(result["layer_costs"]) == 3 and all(c > 0 for c in result["layer_costs"])
    first, last = result["stages"]
    assert first["layers"] + last["layers"] == [0, 1, 2]
    assert first["recv_wait_s"] == 0 and last["send_wait_s"] == 0
    assert all(0 < s["compute_s"] <= s["wall_s"] for s in result["stages"])


def test_pipeline_rejects_a_split_that_does_not_cover_the_layers():
    cfg = config.load(None, DFW)
    with pytest.raises(ConfigError, match="contiguous, non-empty range"):
        run_pipeline(cfg, 2, max_steps=4, split=[[0], [2]])
    with pytest.raises(ConfigError, match="warm-up of 4 steps"):
        run_pipeline(cfg, 1, max_steps=4, warmup=4)


def test_pipeline_cli_writes_json_and_table(tmp_path, capsys):
    out = tmp_path / "p"
    argv = ["pipeline", "-", "--processes", "1", "2", "--steps", "6", "--warmup", "1", "--out", str(out)]
    cfg_path = tmp_path / "dfw.toml"
    cfg_path.write_text(config.dumps(config.load(None, DFW)))
    argv[1] = str(cfg_path)
    assert main(argv) == 0
    meta = json.loads((out / "pipeline.json").read_text())
    assert [r["processes"] for r in meta["runs"]] == [1, 2]
    assert all(r["steps"] == 5 and r["samples_per_s"] > 0 for r in meta["runs"])
    table = (out / "pipeline.md").read_text()
    assert "| 2 | 1 |" in table and "speed-up" in table
    assert main(argv) == 2  # refuses to overwrite
    assert "already holds" in capsys.readouterr().err


def test_pipeline_cli_rejects_other_methods(tmp_path, capsys):
    cfg_path = tmp_path / "df.toml"
    cfg_path.write_text(config.dumps(config.load(None, SYNTHETIC + ["objective.method=df"])))
    assert main(["pipeline", str(cfg_path), "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert "deeperforward" in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o").exists()


@pytest.mark.jitfree
def test_cuda_device_needs_a_gpu_and_the_simulator_its_torch_engine():
    sim = config.load(None, SYNTHETIC + ["train.device=cuda", "hardware.backend=sim", "hardware.engine=numba"])
    with pytest.raises(ConfigError, match="hardware.engine = 'numba'"):
        check_device(sim)
    for extra in ([], ["hardware.backend=sim"]):  # the float reference; the simulator's torch engine
        cuda = config.load(None, SYNTHETIC + ["train.device=cuda"] + extra)
        if torch.cuda.is_available():
            assert check_device(cuda) == "cuda"
        else:
            with pytest.raises(ConfigError, match="sees no CUDA GPU"):
                check_device(cuda)
    assert check_device(config.load(None, SYNTHETIC)) == "cpu"
    with pytest.raises(ConfigError, match="train.device"):
        config.load(None, ["train.device=tpu"])

from pathlib import Path

import pytest

from onchip_ff import config
from common.errors import ConfigError

CONFIG_DIR = Path(__file__).resolve().parents[1] / "experiments" / "configs"


def test_defaults_round_trip_through_toml(tmp_path):
    cfg = config.load(None, ["model.hidden=[7, 9]", "objective.scale=20", "train.lr=0.01"])
    path = tmp_path / "c.toml"
    path.write_text(config.dumps(cfg))
    again = config.load(path)
    assert again == cfg
    assert again.model.hidden == (7, 9) and again.objective.scale == 20.0


@pytest.mark.parametrize("override, field", [
    ("objective.scal=3", "objective.scal"),
    ("nosection.key=3", "[nosection]"),
    ("train.epochs=abc", "train.epochs"),
    ("train.epochs=1.5", "train.epochs"),
    ("train.lr=-1", "train.lr"),
    ("train.lr=true", "train.lr"),
    ("model.hidden=[]", "model.hidden"),
    ("model.hidden=[10, 0]", "model.hidden"),
    ("model.hidden=5", "model.hidden"),
    ("objective.method=sgd", "objective.method"),
    ("objective.margin=-0.1", "objective.margin"),
    ("objective.ema_momentum=1", "objective.ema_momentum"),
    ("objective.block_size=0", "objective.block_size"),
    ("hardware.backend=gpu", "hardware.backend"),
    ("data.name=imagenet", "data.name"),
    ("data.normalize=1", "data.normalize"),
    ("train", "section.key=value"),
    ("train=3", "section.key"),
    ("hardware.adc_bits=1", "hardware.adc_bits"),
    ("hardware.tile_rows=0", "hardware.tile_rows"),
    ("hardware.gmax_uS=0", "hardware.gmax_uS"),
    ("hardware.out_noise=-1", "hardware.out_noise"),
    ("hardware.bogus=1", "hardware.bogus"),
])
def test_bad_values_name_the_field(override, field):
    with pytest.raises(ConfigError) as exc:
        config.load(None, [override])
    assert field in str(exc.value)


def test_int_accepted_for_float_and_strings_bare_or_quoted():
    cfg = config.load(None, ["train.lr=1", "objective.centroids=ema"])
    assert cfg.train.lr == 1.0 and isinstance(cfg.train.lr, float)
    assert cfg.objective.centroids == "ema"
    assert config.load(None, ["objective.method=ff", 'objective.negatives="hard"']).objective.negatives == "hard"


def test_objective_holds_the_keys_of_its_method_only():
    """[objective] method picks the registered method's dataclass; keys of other methods are an
    error naming their owner, unless they sit in that method's own [objective.<m>] table, which is
    checked and left out (a base config may carry settings for every method a sweep switches to)."""
    cfg = config.load(None, ["objective.method=ff", "objective.threshold=1.5"])
    assert type(cfg.objective).__name__ == "FFObjective" and cfg.objective.threshold == 1.5
    assert config.to_dict(cfg)["objective"] == {"method": "ff", "threshold": 1.5, "negatives": "random",
                                                 "label_scale": 1.0, "next_input_scale": "sqrt_d",
                                                 "eval_layers": []}
    with pytest.raises(ConfigError, match=r"objective.threshold .* not a key of method 'df'.*\[objective.ff\]"):
        config.load(None, ["objective.threshold=1.5"])
    kept = config.load(None, ["objective.ff.threshold=1.5", "objective.df.scale=20"])
    assert kept.objective.method == "df" and kept.objective.scale == 20.0
    with pytest.raises(ConfigError, match=r"\[objective.ff\].*objective.threshold must be > 0"):  # checked, unused
        config.load(None, ["objective.ff.threshold=-1"])
    with pytest.raises(ConfigError, match=r"\[objective.sgd\].*not a method"):
        config.load(None, ["objective.sgd.lr=1"])
    with pytest.raises(ConfigError, match="set both"):
        config.from_dict({"objective": {"method": "df", "scale": 2, "df": {"scale": 3}}})
    assert config.load(CONFIG_DIR / "df_mlp_fmnist.toml", ["objective.scale=20"]).objective.scale == 20.0
    assert config.load(CONFIG_DIR / "df_mlp_fmnist.toml", ["objective.method=bp"]).objective.method == "bp"


def test_configs_of_older_code_still_load():
    """Older code wrote the flat union of every method's keys into config.toml, checkpoints and
    stores: such a config loads, the other methods' keys dropped."""
    union = {"method": "bp", **{k: v for m in ("df", "ff", "deeperforward", "intff", "sff")
                                for k, v in config.to_dict(config.load(None, [f"objective.method={m}"]))["objective"].items()
                                if k != "method"}}
    assert config.from_dict({"objective": union}).objective.method == "bp"
    partial = {"method": "bp", "scale": 16.0}  # a stored config of a release without some methods
    assert config.from_dict({"objective": partial}, stored=True).objective.method == "bp"
    with pytest.raises(ConfigError, match="not a key of method 'bp'"):
        config.from_dict({"objective": partial})


def test_invalid_toml_and_missing_file(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[train\nepochs = 2")
    with pytest.raises(ConfigError, match="not valid TOML"):
        config.load(bad)
    with pytest.raises(ConfigError, match="not found"):
        config.load(tmp_path / "missing.toml")


@pytest.mark.parametrize("name", ["df_mlp_fmnist", "df_cnn_fmnist", "ff_mlp_fmnist",
                                  "bp_mlp_fmnist", "bp_cnn_fmnist"])
def test_shipped_configs_load_and_build(name):
    import torch

    from onchip_ff.methods import build_learner

    cfg = config.load(CONFIG_DIR / f"{name}.toml")
    assert cfg.hardware.backend == "torch" and cfg.data.name == "fashion_mnist"
    learner = build_learner(cfg, (1, 28, 28), 10, torch.Generator().manual_seed(0))
    scores = learner.scores(torch.zeros(2, 1, 28, 28))
    assert scores.shape == (2, 10) and torch.isfinite(scores).all()


@pytest.mark.jitfree
@pytest.mark.parametrize("key", ["train.seed", "data.val_seed", "data.synthetic_seed", "data.corruption_seed"])
def test_negative_seeds_are_config_errors_not_numpy_tracebacks(key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.") + " must be >= 0"):
        config.load(None, [f"{key}=-1"])

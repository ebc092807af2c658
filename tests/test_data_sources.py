"""Data sources beyond Fashion-MNIST (onchip_ff/data/): your own npz arrays of any sample shape and
class count, any IDX files, CIFAR-10's python batches (a tampered pickle cannot run code), MNIST in
torchvision's layout; a seeded validation split; one-line errors for bad arrays; the data set's
name and content hash in metrics.json; `train`, `sweep`, `robustness` and `deploy` on an npz."""

from __future__ import annotations

import json
import pickle

import numpy as np
import pytest

from common.errors import ConfigError, DataError
from experiments.cli import main
from onchip_ff import config
from onchip_ff.data import load_dataset

from conftest import write_idx, write_random_idx_set


def small_images(n=300, side=8, classes=3, seed=0):
    """uint8 grey images of `classes` noisy prototypes (no 28x28 anywhere)."""
    rng = np.random.default_rng(seed)
    protos = rng.integers(0, 256, (classes, side, side))
    y = rng.integers(0, classes, n)
    x = np.clip(protos[y] + rng.normal(0, 30, (n, side, side)), 0, 255).astype(np.uint8)
    return x, y


def write_npz(path, x, y, n_test=100, **extra):
    np.savez(path, x_train=x[n_test:], y_train=y[n_test:], x_test=x[:n_test], y_test=y[:n_test], **extra)
    return path


def _data(**kw) -> config.DataConfig:
    return config.DataConfig(**kw)


@pytest.mark.parametrize("shape, want", [((300, 8, 8), (1, 8, 8)), ((300, 3, 6, 5), (3, 6, 5)), ((300, 20), (20,))])
def test_npz_of_any_sample_shape_and_class_count(tmp_path, shape, want):
    rng = np.random.default_rng(1)
    x = rng.normal(size=shape).astype(np.float32)
    y = rng.integers(0, 4, 300)
    ds = load_dataset(_data(name="npz", path=str(write_npz(tmp_path / "d.npz", x, y))))
    assert ds.input_shape == want and ds.n_classes == 4 and len(ds.y_train) == 200 and len(ds.y_test) == 100
    assert ds.x_train.dtype == np.float32 and abs(float(ds.x_train.mean())) < 1e-5
    assert len(ds.sha256) == 64 and ds.sha256 != load_dataset(
        _data(name="npz", path=str(write_npz(tmp_path / "e.npz", x + 1, y)))).sha256


def test_uint8_pixels_scale_and_prepare_matches_the_splits(tmp_path):
    x, y = small_images()
    ds = load_dataset(_data(name="npz", path=str(write_npz(tmp_path / "d.npz", x, y)), normalize=False))
    assert ds.x_train.max() <= 1.0 and np.array_equal(ds.x_test, x[:100, None].astype(np.float32) * np.float32(1 / 255))
    norm = load_dataset(_data(name="npz", path=str(tmp_path / "d.npz")))
    np.testing.assert_array_equal(norm.prepare(x[:100]), norm.x_test)
    assert load_dataset(_data(name="npz", path=str(tmp_path / "d.npz"), n_classes=5)).n_classes == 5


BAD = [
    (dict(x_train=np.array([["a"]] * 4)), "must be numbers"),
    (dict(y_train=np.full(200, 0.5)), "labels must be integers"),
    (dict(x_train=np.full((200, 8, 8), np.nan)), "NaN or infinite"),
    (dict(y_train=np.full(200, -1)), "label -1"),
    (dict(y_train=np.zeros(199, np.int64)), "labels of shape"),
    (dict(x_test=np.zeros((100, 9, 9), np.uint8)), "train split's are"),
    (dict(x_test=np.zeros((0, 8, 8), np.uint8), y_test=np.zeros(0, np.int64)), "is empty"),
    (dict(x_train=np.zeros((200, 2, 2, 2, 2))), "must be (N, D) vectors"),
]


@pytest.mark.parametrize("change, needle", BAD, ids=[b[1] for b in BAD])
def test_bad_arrays_are_one_line_errors(tmp_path, change, needle):
    x, y = small_images()
    arrays = dict(x_train=x[100:], y_train=y[100:], x_test=x[:100], y_test=y[:100])
    arrays.update(change)
    np.savez(tmp_path / "bad.npz", **arrays)
    with pytest.raises(DataError) as exc:
        load_dataset(_data(name="npz", path=str(tmp_path / "bad.npz")))
    assert needle in str(exc.value) and "\n" not in str(exc.value)


def test_npz_file_problems_and_class_count(tmp_path):
    x, y = small_images()
    with pytest.raises(DataError, match="needs data.path"):
        load_dataset(_data(name="npz"))
    with pytest.raises(DataError, match="not found"):
        load_dataset(_data(name="npz", path=str(tmp_path / "none.npz")))
    (tmp_path / "junk.npz").write_bytes(b"not a zip")
    with pytest.raises(DataError, match="not a readable .npz"):
        load_dataset(_data(name="npz", path=str(tmp_path / "junk.npz")))
    np.savez(tmp_path / "part.npz", x_train=x, y_train=y)
    with pytest.raises(DataError, match="lacks x_test, y_test"):
        load_dataset(_data(name="npz", path=str(tmp_path / "part.npz")))
    write_npz(tmp_path / "v.npz", x, y, x_val=x[:10])
    with pytest.raises(DataError, match="only one of x_val, y_val"):
        load_dataset(_data(name="npz", path=str(tmp_path / "v.npz")))
    write_npz(tmp_path / "d.npz", x, y)
    with pytest.raises(DataError, match="out of range for 2 classes"):
        load_dataset(_data(name="npz", path=str(tmp_path / "d.npz"), n_classes=2))
    with pytest.raises(ConfigError, match="data.path"):
        config.DataConfig(name="synthetic", path="x.npz")


def test_validation_split_is_seeded_and_disjoint(tmp_path):
    x, y = small_images(400)
    path = str(write_npz(tmp_path / "d.npz", x, y))
    a = load_dataset(_data(name="npz", path=path, val_fraction=0.25, val_seed=3))
    b = load_dataset(_data(name="npz", path=path, val_fraction=0.25, val_seed=3))
    c = load_dataset(_data(name="npz", path=path, val_fraction=0.25, val_seed=4))
    assert len(a.y_val) == 75 and len(a.y_train) == 225
    assert np.array_equal(a.x_val, b.x_val) and not np.array_equal(a.x_val, c.x_val)
    rows = {r.tobytes() for r in a.x_train.reshape(225, -1)}
    assert not any(r.tobytes() in rows for r in a.x_val.reshape(75, -1))
    own = load_dataset(_data(name="npz", path=str(write_npz(tmp_path / "v.npz", x, y, x_val=x[:20], y_val=y[:20]))))
    assert len(own.y_val) == 20
    with pytest.raises(DataError, match="has its own validation split"):
        load_dataset(_data(name="npz", path=str(tmp_path / "v.npz"), val_fraction=0.1))


def test_idx_files_of_any_image_size(tmp_path):
    x, y = small_images(300, side=12)
    write_idx(tmp_path / "train-images-idx3-ubyte.gz", x[100:])
    write_idx(tmp_path / "train-labels-idx1-ubyte.gz", y[100:])
    write_idx(tmp_path / "t10k-images-idx3-ubyte", x[:100], gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte", y[:100], gz=False)
    ds = load_dataset(_data(name="idx", root=str(tmp_path)))
    assert ds.input_shape == (1, 12, 12) and ds.n_classes == 3 and len(ds.y_test) == 100
    write_idx(tmp_path / "t10k-images-idx3-ubyte", x[:100], gz=False, magic=b"\x00\x00\x0d\x03")
    with pytest.raises(DataError, match="element type 0x0d .*float.*npz"):
        load_dataset(_data(name="idx", root=str(tmp_path)))
    with pytest.raises(DataError, match="needs data.root"):
        load_dataset(_data(name="idx"))


def _cifar_batch(path, n, seed):
    rng = np.random.default_rng(seed)
    with open(path, "wb") as f:
        pickle.dump({b"batch_label": b"x", b"labels": rng.integers(0, 10, n).tolist(),
                     b"data": rng.integers(0, 256, (n, 3072)).astype(np.uint8), b"filenames": [b"a"] * n}, f)


def test_cifar10_python_batches_and_a_tampered_pickle(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    for i in range(1, 6):
        _cifar_batch(folder / f"data_batch_{i}", 20, i)
    _cifar_batch(folder / "test_batch", 10, 9)
    ds = load_dataset(_data(name="cifar10", root=str(tmp_path)))
    assert ds.input_shape == (3, 32, 32) and len(ds.y_train) == 100 and ds.n_classes == 10

    class Evil:
        def __reduce__(self):
            import os
            return (os.system, (f"touch {tmp_path / 'pwned'}",))
    with open(folder / "test_batch", "wb") as f:
        pickle.dump({b"data": Evil(), b"labels": []}, f)
    with pytest.raises(DataError, match="refusing"):
        load_dataset(_data(name="cifar10", root=str(folder)))
    assert not (tmp_path / "pwned").exists()


def test_mnist_in_torchvision_layout(tmp_path):
    write_random_idx_set(tmp_path / "MNIST" / "raw")
    ds = load_dataset(_data(name="mnist", root=str(tmp_path), train_limit=50, test_limit=20))
    assert ds.input_shape == (1, 28, 28) and len(ds.y_train) == 50 and ds.n_classes == 10
    with pytest.raises(DataError, match="needs data.root"):
        load_dataset(_data(name="mnist"))


TINY = ["model.hidden=[16]", "train.epochs=1", "train.batch_size=50", "train.threads=1"]


def _sets(path, extra=()):
    out = []
    for s in ['data.name="npz"', f'data.path="{path}"', *TINY, *extra]:
        out += ["--set", s]
    return out


@pytest.mark.parametrize("backend", ["torch", "ideal", "fixed8", "pcm", "reram_pulsed"])
def test_cli_trains_an_npz_of_8x8_images_with_3_classes(tmp_path, backend):
    x, y = small_images()
    path = write_npz(tmp_path / "mine.npz", x, y)
    hw = [] if backend == "torch" else ["hardware.backend=sim", f"hardware.preset={backend}"]
    out = tmp_path / "run"
    assert main(["train", "experiments/configs/df_mlp_fmnist.toml", *_sets(path, hw), "--out", str(out),
                 "--no-progress"]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["dataset"] == "npz" and len(metrics["dataset_sha256"]) == 64
    assert metrics["n_train"] == 200 and 0 <= metrics["test_accuracy"] <= 1


def test_sweep_robustness_deploy_and_model_selection_on_an_npz(tmp_path, capsys):
    x, y = small_images(400)
    path = write_npz(tmp_path / "mine.npz", x, y)
    sweep = tmp_path / "s.toml"
    sweep.write_text(f"""[sweep]\nname = "npz"\nbase = "{(config.Path.cwd() / 'experiments/configs/df_mlp_fmnist.toml')}"\n
seeds = [0, 1]\n[fixed]\n"data.name" = "npz"\n"data.path" = "{path}"\n"data.val_fraction" = 0.2\n
"model.hidden" = [16]\n"train.epochs" = 1\n"train.threads" = 1\n[grid]\n"train.lr" = [1e-3, 1e-2]\n""")
    store = tmp_path / "s.sqlite"
    assert main(["sweep", str(sweep), "--store", str(store), "--workers", "1", "--executor", "inline",
                 "--no-progress"]) == 0
    capsys.readouterr()
    assert main(["results", str(store), "--best"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines[0].split()[:4] == ["objective.method", "train.lr", "seeds", "val_accuracy"] and len(lines) == 2
    assert main(["results", str(store), "--best", "--by", "train.lr"]) == 0
    assert len(capsys.readouterr().out.strip().splitlines()) == 3
    rob = tmp_path / "r.toml"
    rob.write_text(f"""[robustness]\nname = "npz"\nseeds = [0]\n[methods]\ndf = "{config.Path.cwd() / 'experiments/configs/df_mlp_fmnist.toml'}"\n
[fixed]\n"data.name" = "npz"\n"data.path" = "{path}"\n"model.hidden" = [16]\n"train.epochs" = 1\n
"train.threads" = 1\n[[parameter]]\nkey = "hardware.adc_bits"\nlevels = [6, 8]\nnoise_model = "adc"\n
[parameter.set]\n"hardware.backend" = "sim"\n""")
    assert main(["robustness", str(rob), "--out", str(tmp_path / "rob"), "--workers", "1", "--executor", "inline",
                 "--no-progress"]) == 0
    assert (tmp_path / "rob" / "robustness.csv").read_text().count("\n") == 4  # header, float ref, 2 levels
    run = tmp_path / "run"
    assert main(["train", "experiments/configs/df_mlp_fmnist.toml", *_sets(path), "--out", str(run),
                 "--no-progress"]) == 0
    assert main(["deploy", str(run), "--out", str(tmp_path / "dep")]) == 0


def test_memory_command_on_the_shape_of_any_source(tmp_path, capsys):
    x, y = small_images(200)
    path = write_npz(tmp_path / "mine.npz", x, y)
    mem = tmp_path / "m.toml"
    mem.write_text(f"""[memory]\nsteps = 2\ncuda = false\nmap_batch = [8]\nmap_depth = [2]\n
[memory.data]\nname = "npz"\npath = "{path}"\n[[memory.grid]]\nmethod = ["df", "bp"]\narch = ["mlp", "cnn"]\n
batch = [8]\ndepth = [2]\nformat = ["float32"]\noptimizer = ["sgd"]\nmlp_width = 12\ncnn_channels = [4]\n""")
    out = tmp_path / "out"
    assert main(["memory", str(mem), "--out", str(out), "--no-progress"]) == 0
    rows = list(__import__("csv").DictReader(open(out / "memory.csv")))
    peaks = [r for r in rows if r["component"] == "peak"]
    assert len(peaks) == 4 and all(abs(float(r["rel_error"])) <= 0.05 for r in peaks)
    mem.write_text(mem.read_text().replace('name = "npz"', 'name = "npz"\nbogus = 1'))
    assert main(["memory", str(mem), "--out", str(tmp_path / "x")]) == 2
    assert "memory.data.bogus" in capsys.readouterr().err

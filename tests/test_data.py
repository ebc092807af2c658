import gzip

import numpy as np
import pytest

from onchip_ff import config
from onchip_ff.data import load_dataset, load_fashion_mnist_raw, make_synthetic, read_idx
from common.errors import ConfigError, DataError

from conftest import HAVE_FMNIST, write_idx


def test_read_idx_round_trip_gz_and_plain(tmp_path):
    arr = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a.gz", arr)), arr)
    assert np.array_equal(read_idx(write_idx(tmp_path / "a", arr, gz=False)), arr)
    labels = np.array([3, 1, 4], dtype=np.uint8)
    assert np.array_equal(read_idx(write_idx(tmp_path / "l", labels, gz=False)), labels)


@pytest.mark.parametrize("damage, message", [
    ("magic", "bad magic"),
    ("dtype", "element type"),
    ("truncate", "truncated"),
    ("extra", "corrupt"),
    ("badgzip", "corrupt"),
    ("empty", "bad magic"),
])
def test_read_idx_rejects_corrupt_files(tmp_path, damage, message):
    arr = np.ones((4, 5), dtype=np.uint8)
    path = tmp_path / "f"
    if damage == "magic":
        write_idx(path, arr, gz=False, magic=b"\x12\x34\x08\x02")
    elif damage == "dtype":
        write_idx(path, arr, gz=False, magic=b"\x00\x00\x0d\x02")
    elif damage == "truncate":
        raw = write_idx(path, arr, gz=False).read_bytes()
        path.write_bytes(raw[:-3])
    elif damage == "extra":
        write_idx(path, arr, gz=False)
        path.write_bytes(path.read_bytes() + b"\x00")
    elif damage == "badgzip":
        path.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + b"\x00" * 50)[:20])
    else:
        path.write_bytes(b"")
    with pytest.raises(DataError, match=message):
        read_idx(path)


def test_fake_fmnist_loads_in_torchvision_layout(fake_fmnist):
    raw = load_fashion_mnist_raw(fake_fmnist)
    assert raw["train"][0].shape == (60000, 28, 28) and raw["test"][1].shape == (10000,)
    ds = load_dataset(config.DataConfig(root=str(fake_fmnist), train_limit=100, test_limit=50))
    assert ds.x_train.shape == (100, 1, 28, 28) and ds.x_train.dtype == np.float32
    assert ds.y_test.shape == (50,) and ds.y_test.dtype == np.int64
    assert abs(float(ds.x_train.mean())) < 1e-4 and abs(float(ds.x_train.std()) - 1) < 1e-3


def test_missing_files_and_wrong_sizes_say_how_to_get_data(fake_fmnist, tmp_path):
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        load_fashion_mnist_raw(tmp_path / "nowhere")
    (fake_fmnist / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match="t10k-labels-idx1-ubyte.*apt-get"):
        load_fashion_mnist_raw(fake_fmnist)
    write_idx(fake_fmnist / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz", np.zeros(9999))
    with pytest.raises(DataError, match="9999 labels"):
        load_fashion_mnist_raw(fake_fmnist)
    write_idx(fake_fmnist / "FashionMNIST" / "raw" / "t10k-labels-idx1-ubyte.gz", np.full(10000, 11))
    with pytest.raises(DataError, match="out of range"):
        load_fashion_mnist_raw(fake_fmnist)


def test_synthetic_is_deterministic_by_seed():
    a = make_synthetic(50, 20, 8, 10, 0.3, seed=1)
    b = make_synthetic(50, 20, 8, 10, 0.3, seed=1)
    c = make_synthetic(50, 20, 8, 10, 0.3, seed=2)
    assert all(np.array_equal(a[s][i], b[s][i]) for s in a for i in range(2))
    assert not np.array_equal(a["train"][0], c["train"][0])
    assert a["train"][0].shape == (50, 8, 8) and set(np.unique(a["train"][1])) <= set(range(10))


def test_synthetic_color_images_have_channels_and_each_channel_its_own_prototype():
    a = make_synthetic(40, 10, 32, 10, 0.0, seed=1, channels=3)
    x, y = a["train"]
    assert x.shape == (40, 3, 32, 32) and x.dtype == np.float32
    same_class = x[y == y[0]]
    assert np.array_equal(same_class[0], same_class[-1])  # noise 0: the class prototype itself
    assert not np.array_equal(x[0, 0], x[0, 1])  # channels differ
    cfg = config.load(None, ["data.name=synthetic", "data.synthetic_side_px=32", "data.synthetic_channels=3",
                             "data.synthetic_train=20", "data.synthetic_test=10"])
    assert load_dataset(cfg.data).input_shape == (3, 32, 32)
    with pytest.raises(ConfigError, match="data.synthetic_channels"):
        config.load(None, ["data.synthetic_channels=5"])


@pytest.mark.skipif(not HAVE_FMNIST, reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_files():
    raw = load_fashion_mnist_raw()
    assert raw["train"][0].shape == (60000, 28, 28)
    assert np.bincount(raw["train"][1]).tolist() == [6000] * 10
    assert np.bincount(raw["test"][1]).tolist() == [1000] * 10

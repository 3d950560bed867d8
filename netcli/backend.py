"""The array module, the dtype policy and seeding.

Every array the engine creates goes through this module, so that another
array module with numpy's API (cupy) can replace numpy here without touching
layer code. Layers use ``xp`` for math and the helpers below to create arrays
in the current float dtype.
"""
from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
from typing import Iterator

import numpy as np

xp = np  # the array module used by every layer

_DTYPES = {"float32": np.float32, "float64": np.float64}
_float_dtype: type = np.float32


def float_dtype() -> type:
    """The dtype new parameters and activations are created in."""
    return _float_dtype


def set_float_dtype(name: str | type) -> None:
    global _float_dtype
    _float_dtype = _DTYPES[name] if isinstance(name, str) else np.dtype(name).type


@contextlib.contextmanager
def dtype_scope(name: str | type) -> Iterator[None]:
    """Temporarily switch the float dtype (the gradient checker runs in float64)."""
    old = _float_dtype
    set_float_dtype(name)
    try:
        yield
    finally:
        set_float_dtype(old)


def zeros(shape, dtype=None):
    return xp.zeros(shape, dtype=dtype or _float_dtype)


def ones(shape, dtype=None):
    return xp.ones(shape, dtype=dtype or _float_dtype)


def empty(shape, dtype=None):
    return xp.empty(shape, dtype=dtype or _float_dtype)


def full(shape, value, dtype=None):
    return xp.full(shape, value, dtype=dtype or _float_dtype)


def asarray(a, dtype=None):
    """An array in the float dtype (or ``dtype``), copied only when needed."""
    return xp.asarray(a, dtype=dtype or _float_dtype)


def to_numpy(a) -> np.ndarray:
    """Bring an array back to host numpy (a no-op for numpy)."""
    return np.asarray(a)


def format_bytes(n: float) -> str:
    """1536 -> '1.5 KiB'."""
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} TiB"


def available_memory() -> int | None:
    """Bytes of memory the kernel could still hand out (MemAvailable), None where unknown (not Linux)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


def tune_allocator() -> bool:
    """Let glibc's malloc keep freed large arrays for reuse; returns whether it applied.

    A train step frees and allocates the same large temporaries every time. By
    default glibc hands each one (above an adaptive mmap threshold) back to the
    kernel when freed and maps it afresh, and the kernel zero-fills every page
    on first touch: hundreds of page faults per step. A high mmap and trim
    threshold make malloc reuse that memory instead (about 10% off the mnist_cnn
    train step here, the same peak memory). The CLI calls this at start-up; a
    C library other than glibc is left alone.
    """
    name = ctypes.util.find_library("c")
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, TypeError, AttributeError):  # no libc found, or not glibc
        return False
    M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # from glibc's malloc.h
    return bool(mallopt(M_MMAP_THRESHOLD, 256 << 20) and mallopt(M_TRIM_THRESHOLD, 512 << 20))


def make_rng(seed: int) -> np.random.Generator:
    """The one random generator of a run; every layer draws from it."""
    return np.random.default_rng(seed)

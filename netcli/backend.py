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
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Callable, Iterator

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


def as_input(a):
    """A batch of data for the engine: floats in the float dtype (a float64 run computes in float64), others as they are."""
    a = xp.asarray(a)
    return a.astype(_float_dtype) if a.dtype.kind == "f" and a.dtype != _float_dtype else a


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


_threads: int | None = None  # set_threads(); None until first asked for
_pool: ThreadPoolExecutor | None = None
_pool_size = 0  # its worker threads: the engine's threads but this one
_inside = threading.local()  # .share: this thread is running a share of parallel()


def threads() -> int:
    """Threads the engine splits its work over (the first call settles it; see set_threads)."""
    if _threads is None:
        set_threads(None)
    return _threads


def set_threads(n: int | None) -> None:
    """Run the engine on n threads; None: OPENBLAS_NUM_THREADS or OMP_NUM_THREADS, else every usable core.

    The engine parallelises itself: layers split the batch into one chunk per
    thread (``parallel``) and BLAS runs on one thread inside each chunk. Leaving
    the threading to BLAS instead would spread only the matmuls: numpy's
    elementwise passes (half a CNN step) run on one core, and OpenBLAS's idle
    workers spin on the others for a while after each call, so no other thread
    gets them. The environment variables that limit BLAS limit the engine.
    """
    global _threads
    if n is None:
        values = [os.environ.get(name, "") for name in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")]
        n = next((int(v) for v in values if v.isdigit() and int(v) > 0), len(os.sched_getaffinity(0)))
    _one_blas_thread()
    _threads = n


def _one_blas_thread() -> None:
    """Limit every BLAS library loaded so far to one thread, from now on, for the whole process."""
    from threadpoolctl import threadpool_limits  # here: only a process that computes needs it

    threadpool_limits(1, user_api="blas")


def blas_funcs(names: tuple[str, ...], dtype) -> list[Callable]:
    """scipy's BLAS routines ``names`` for ``dtype``, on one thread like numpy's.

    scipy brings its own OpenBLAS, loaded on first use: the limit set_threads
    put on the libraries loaded before does not reach it, and its spinning
    workers would take the cores from the engine's threads (a mnist_cnn epoch
    at 2 threads took 65 s instead of 40).
    """
    from scipy.linalg.blas import get_blas_funcs  # here, not at the top: scipy takes a while to import

    funcs = get_blas_funcs(names, dtype=dtype)
    _one_blas_thread()
    return funcs


def parallel(fn: Callable, items: list) -> list:
    """[fn(item) for item in items], run on the engine's threads: thread j takes items j, j+k, ... (k threads).

    numpy and BLAS let go of the GIL inside their loops, so array work on
    separate parts of a batch runs in parallel on Python threads. This thread
    takes the first share itself. Called from inside a share (a layer whose
    part calls another that splits), it runs serially: waiting on the pool
    from the pool could wait forever.
    """
    global _pool, _pool_size
    k = min(threads(), len(items))
    if k <= 1 or getattr(_inside, "share", False):
        return [fn(item) for item in items]
    if _pool is None or _pool_size != threads() - 1:
        _pool_size = threads() - 1
        _pool = ThreadPoolExecutor(_pool_size, thread_name_prefix="netcli")

    def share(j):
        _inside.share = True
        try:
            return [fn(item) for item in items[j::k]]
        finally:
            _inside.share = False

    others = [_pool.submit(share, j) for j in range(1, k)]
    shares = [share(0)] + [f.result() for f in others]
    return [shares[i % k][i // k] for i in range(len(items))]


min_chunk_cost = 1 << 18  # the least work worth a thread, about 200 us: a hand-off costs tens (tests lower it)


def batch_chunks(a: np.ndarray, entry_cost: float = 1.0) -> list[slice]:
    """Split a's first axis into one slice per engine thread, or fewer where a part would cost under min_chunk_cost.

    The work is a.size * entry_cost: 1 for a pass over each entry; a multiply-add counts 1/32.
    """
    return even_slices(len(a), max(1, min(threads(), len(a), int(a.size * entry_cost) // min_chunk_cost)))


def even_slices(n: int, k: int) -> list[slice]:
    """range(n) cut into k consecutive slices whose lengths differ by at most one."""
    bounds = [i * n // k for i in range(k + 1)]  # plain ints: np.linspace costs 40 us, a dozen times a step
    return [slice(lo, hi) for lo, hi in zip(bounds[:-1], bounds[1:])]


def make_rng(seed: int) -> np.random.Generator:
    """The one random generator of a run; every layer draws from it."""
    return np.random.default_rng(seed)

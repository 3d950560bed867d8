"""Data-parallel training over MPI ranks: ``mpiexec -n N netcli train CONFIG``.

Horovod's and nanoGPT's design: every rank holds the whole model, all ranks
draw the same data order, and each takes its own slice of every global batch
(``data.batch_size`` stays the global batch). After the backward pass one
all-reduce sums the optimizer's flat gradient buffer together with the step's
loss, metrics and a stop flag, which ride in spare entries at the buffer's end
(a signal to any rank stops all at the same step), so every rank takes the same
optimizer step. Rank 0 broadcasts the initial parameters and is the only one
that writes the run directory. (Batch norm adds its own small all-reduces of
per-channel sums, three per layer and step: see ``batch_sums``.)

N ranks reproduce the one-process run (to rounding) because nothing a rank
computes depends on how the batch was cut:

- each rank's loss is the mean over its own b of the global B samples, so its
  gradients are B/b times its share of the global mean's; ``reduce_step``
  weighs them by b/B before summing;
- batch norm sums its statistics over the global batch (``batch_sums``);
- every random draw that has a batch axis (dropout masks, noise, timesteps) is
  drawn for the whole global batch from the shared stream, and each rank keeps
  its rows (``draw``), so the stream advances exactly as in one process.

Without ``mpiexec`` (or with a single rank) nothing here imports mpi4py and
every helper is the identity. A rank that dies cannot answer an all-reduce:
each wait polls a non-blocking request against a deadline
(``NETCLI_MPI_TIMEOUT`` seconds, default 60) and, past it, the waiting rank
exits with one line instead of hanging (``RankLost``).

    world = init()                      # None in a plain process
    idx = my_rows(global_idx)           # this rank's slice of a global batch
    with step_batch(len(idx), len(global_idx)):
        ...forward, backward...
        loss, *metrics, stop = reduce_step(group, [loss, *metrics, stop])   # before the optimizer's step
"""
from __future__ import annotations

import os
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from . import backend as B
from .errors import UserError

# the variables MPI launchers set in each rank's environment: MPICH/Intel (PMI), Open MPI, PMIx, Slurm
_SIZE_VARS = ("PMI_SIZE", "OMPI_COMM_WORLD_SIZE", "PMIX_SIZE", "SLURM_NTASKS")


class RankLost(RuntimeError):
    """Another rank stopped answering (it died or hangs); this one cannot go on."""


@dataclass
class World:
    comm: Any          # mpi4py's COMM_WORLD
    rank: int
    size: int
    local_size: int    # ranks on this machine (they share its cores)
    timeout: float     # seconds a collective may wait before the others count as lost


_world: World | None = None
_batch: tuple[int, int, int] | None = None  # (first row, rows here, rows of the global batch) inside step_batch


def launched_ranks() -> int:
    """How many ranks the launcher says it started (1 without one)."""
    for name in _SIZE_VARS:
        value = os.environ.get(name, "")
        if value.isdigit():
            return int(value)
    return 1


def init() -> World | None:
    """Join the MPI job this process was started in; None in a plain process (nothing imported).

    Sets the engine's threads to this machine's cores / its ranks unless
    OPENBLAS_NUM_THREADS or OMP_NUM_THREADS say otherwise.
    """
    global _world
    if _world is not None or launched_ranks() <= 1:
        return _world
    try:
        from mpi4py import MPI
    except ImportError:
        raise UserError(f"mpiexec started {launched_ranks()} ranks but mpi4py is not installed; "
                        "pip install 'netcli[mpi]'") from None
    comm = MPI.COMM_WORLD
    if comm.Get_size() == 1:
        return None
    comm.Set_errhandler(MPI.ERRORS_RETURN)  # a lost peer raises instead of aborting the job
    local = comm.Split_type(MPI.COMM_TYPE_SHARED).Get_size()
    _world = World(comm, comm.Get_rank(), comm.Get_size(), local,
                   float(os.environ.get("NETCLI_MPI_TIMEOUT", "60")))
    if not any(os.environ.get(v, "").isdigit() for v in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS")):
        B.set_threads(max(1, len(os.sched_getaffinity(0)) // local))
    return _world


def world() -> World | None:
    return _world


def rank() -> int:
    return _world.rank if _world else 0


def size() -> int:
    return _world.size if _world else 1


def is_root() -> bool:
    return rank() == 0


# -- collectives, each under the deadline ---------------------------------------------


def _wait(request, what: str) -> None:
    _wait_all([request], what)


def _wait_all(requests: list, what: str) -> None:
    """Poll ``requests`` until all complete; RankLost past the deadline.

    The first hundred microseconds spin (a step's all-reduce on one machine is
    that fast), then the polls back off to a millisecond so that a rank waiting
    for a slower one leaves the core to it.
    """
    from mpi4py import MPI

    start = time.perf_counter()
    pause = 0.0
    while not MPI.Request.Testall(requests):
        waited = time.perf_counter() - start
        if waited > _world.timeout:
            raise RankLost(f"rank {_world.rank}: no answer from the other ranks in {_world.timeout:g} s "
                           f"during the {what} (a rank died or hangs)")
        if waited > 1e-4:
            pause = min(1e-3, pause + 5e-5)
            time.sleep(pause)


def allreduce_sum(a: np.ndarray, what: str = "gradient all-reduce") -> np.ndarray:
    """Sum a contiguous array over the ranks, in place; returns it."""
    from mpi4py import MPI

    _wait(_world.comm.Iallreduce(MPI.IN_PLACE, a, op=MPI.SUM), what)
    return a


def broadcast_arrays(arrays: list[np.ndarray]) -> None:
    """Overwrite every rank's ``arrays`` with rank 0's (one message)."""
    if not _world or not arrays:
        return
    flat = np.concatenate([np.ascontiguousarray(a).ravel() for a in arrays])
    _wait(_world.comm.Ibcast(flat, root=0), "broadcast of the initial parameters")
    at = 0
    for a in arrays:
        a[...] = flat[at:at + a.size].reshape(a.shape)
        at += a.size


def broadcast(obj: Any) -> Any:
    """Rank 0's ``obj`` on every rank (a small picklable value, e.g. the run directory)."""
    if not _world:
        return obj
    return _world.comm.bcast(obj, root=0)


@contextmanager
def root_first() -> Iterator[None]:
    """Rank 0 runs the block before the others (it fills caches, e.g. a data download, that they then read)."""
    if _world and not is_root():
        _world.comm.Barrier()  # blocking: a download may take longer than the deadline
    try:
        yield
    finally:
        if _world and is_root():
            _world.comm.Barrier()


# -- a global batch cut into per-rank slices ----------------------------------------------


def my_rows(idx: np.ndarray) -> np.ndarray:
    """This rank's consecutive slice of a global batch's sample indices (sizes differ by at most one)."""
    if not _world:
        return idx
    part = B.even_slices(len(idx), _world.size)[_world.rank]
    return idx[part]


def my_slice(n: int) -> slice:
    """This rank's consecutive part of ``n`` samples (validation)."""
    return B.even_slices(n, size())[rank()]


def batch_problem(samples: int, batch_size: int, val_samples: int) -> str | None:
    """Why the ranks cannot share this data's batches, if they cannot: each needs a sample of every batch."""
    n = size()
    last = samples % batch_size or batch_size
    if n == 1 or min(last, batch_size) >= n and (val_samples == 0 or val_samples >= n):
        return None
    if val_samples and val_samples < n:
        return f"{val_samples} validation samples cannot be shared by {n} ranks; use fewer ranks or more data"
    return (f"{n} ranks each need a sample of every global batch, but {samples} training samples in batches "
            f"of {batch_size} leave {min(last, batch_size)} in the {'last' if last < batch_size else 'each'} batch; "
            f"choose a batch_size that leaves at least {n}")


@contextmanager
def step_batch(rows: int, total: int) -> Iterator[None]:
    """Inside: this rank computes ``rows`` of a global batch of ``total`` (for ``draw`` and ``batch_sums``)."""
    global _batch
    if not _world:
        yield
        return
    first = B.even_slices(total, _world.size)[_world.rank].start
    _batch = (first, rows, total)
    try:
        yield
    finally:
        _batch = None


def draw(fn: Callable[[tuple[int, ...]], np.ndarray], shape: tuple[int, ...]) -> np.ndarray:
    """``fn(shape)``, a random draw whose first axis runs over this rank's samples (k rows each).

    Inside a distributed step it draws the whole global batch's values from the
    shared generator and returns this rank's rows: every rank's stream then
    advances as one process's would, and N ranks draw the one-process values.
    """
    if _batch is None or not shape or shape[0] % _batch[1]:
        return fn(shape)
    first, rows, total = _batch
    k = shape[0] // rows  # rows per sample: (N*T, F) inputs are sample-major
    return fn((total * k, *shape[1:]))[first * k:(first + rows) * k]


def global_rows(m: int) -> int:
    """Inside a distributed step: how many rows of the global batch ``m`` of this rank's rows stand for."""
    if _batch is None:
        return m
    first, rows, total = _batch
    return m // rows * total


def batch_sums(local: np.ndarray, gradient: bool = False) -> np.ndarray:
    """Sums over the global batch from each rank's sums over its rows (``local`` itself outside a distributed step).

    ``gradient``: the sums are of loss gradients. Each rank's loss is the mean
    over its own rows, so its gradients are total/rows times the global mean's;
    they are brought to the global scale for the sum and back to this rank's
    after it.
    """
    if _batch is None:
        return local
    _, rows, total = _batch
    share = rows / total
    out = np.ascontiguousarray(local * share if gradient else local)
    allreduce_sum(out, "batch-norm all-reduce")
    return out / share if gradient else out


# -- the step's all-reduce ------------------------------------------------------------------


def reduce_step(params, values: list[float]) -> list[float]:
    """Inside ``step_batch``: the step's all-reduce. Sums the ranks' gradients in place, each weighted by its
    rows / total, and returns each of ``values`` (this rank's means over its rows: the loss, the metrics, a
    stop flag) as the global batch's mean.

    ``params``: the ParamGroup an optimizer steps (an empty one for values alone). The values ride in the
    spare entries past its gradient buffer (``ParamGroup.reduction``), so a model of one dtype sends one
    contiguous array: one all-reduce per step. Outside a distributed step ``values`` come back as they are.
    """
    if _batch is None:
        return values
    from mpi4py import MPI

    _, rows, total = _batch
    share = rows / total
    for g in params.grad_buffers():
        g *= share
    buffers, slots = params.reduction(len(values))
    slots[:] = [v * share for v in values]
    _wait_all([_world.comm.Iallreduce(MPI.IN_PLACE, b, op=MPI.SUM) for b in buffers], "gradient all-reduce")
    return [float(v) for v in slots]


def reduce_sums(sums: dict[str, float]) -> dict[str, float]:
    """Each key's sum over the ranks (validation metric sums)."""
    if not _world:
        return sums
    names = sorted(sums)
    flat = allreduce_sum(np.array([sums[k] for k in names], dtype=np.float64), "validation all-reduce")
    return dict(zip(names, map(float, flat)))


def exit_lost(error: RankLost) -> None:
    """Print the one line and leave at once: MPI's own exit would wait for the lost rank forever."""
    print(f"error: {error}", file=sys.stderr, flush=True)
    os._exit(1)

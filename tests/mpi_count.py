"""Run netcli's CLI in this rank's process, counting the all-reduces it starts (for tests/test_mpi.py).

    mpiexec -n 2 python tests/mpi_count.py DIR train run.yaml ...

writes DIR/allreduce.<rank>.json: the number of elements each all-reduce carried, in order.
"""
import json
import sys
from pathlib import Path

from netcli import distributed as D
from netcli.cli import main


class Counting:
    """COMM_WORLD with its all-reduces recorded."""

    def __init__(self, comm):
        self.comm, self.sizes = comm, []

    def Iallreduce(self, send, recv, op):
        self.sizes.append(len(recv))
        return self.comm.Iallreduce(send, recv, op=op)

    def __getattr__(self, name):
        return getattr(self.comm, name)


join = D.init


def init():
    world = join()
    if world and not isinstance(world.comm, Counting):
        world.comm = Counting(world.comm)
    return world


D.init = init
out, sys.argv = Path(sys.argv[1]), ["netcli", *sys.argv[2:]]
try:
    main()
finally:
    (out / f"allreduce.{D.rank()}.json").write_text(json.dumps(D.world().comm.sizes))

"""Run one rank's netcli command under mpiexec and record its pid and exit code (for tests/test_mpi.py).

    mpiexec -n 2 python tests/mpi_rank.py DIR netcli train ...

writes DIR/pid.<rank> when the command starts and DIR/rc.<rank> when it ends;
SIGINT and SIGTERM from mpiexec reach the command directly. The command,
not this wrapper, is the MPI process: it inherits the launcher's environment.
"""
import os
import signal
import subprocess
import sys
from pathlib import Path

out, cmd = Path(sys.argv[1]), sys.argv[2:]
rank = os.environ.get("PMI_RANK", "0")
child = subprocess.Popen(cmd, close_fds=False)  # hydra's PMI connection is an inherited descriptor
# mpiexec signals the whole process group (the command gets them itself); SIGUSR1 is how
# `mpiexec -disable-auto-cleanup` tells the survivors that a rank died: only the command decides what then
for s in (signal.SIGINT, signal.SIGTERM, signal.SIGUSR1):
    signal.signal(s, lambda signum, frame: None)
(out / f"pid.{rank}").write_text(str(child.pid))
rc = child.wait()
(out / f"rc.{rank}").write_text(str(rc))
sys.exit(rc if rc >= 0 else 128 - rc)

"""Run directories, metrics.jsonl, and atomic checkpoint files.

    runs/<name>/<YYYYmmdd-HHMMSS>[-n]/
      config.yaml  metrics.jsonl  summary.json  eval.json
      checkpoints/last.npz  checkpoints/best.npz
      samples/  .lock

A process that trains a run holds an exclusive ``flock`` on its ``.lock`` file
(run_lock); the OS releases it when the process ends, however it ends, so a
SIGKILL leaves no stale lock. ``lock_holder`` tells whether a run is being
trained and by whom.

Every file is written to a temporary name in the same directory, flushed,
fsynced and renamed into place, so a crash leaves the previous version whole
(a killed process may leave its ``.NAME.*.tmp``; a resume deletes it). The one
exception, metrics.jsonl, is appended to; each checkpoint records how many of
its lines it covers and a resume cuts the rest. A failed write (a full disk)
is a RunError naming the file. Checkpoints are plain ``.npz`` archives loaded
with ``allow_pickle=False``.
"""
from __future__ import annotations

import errno
import fcntl
import json
import os
import re
import socket
import stat
import time
import zipfile
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from .atomic import atomic_file
from .errors import CheckpointError, RunError
from .userfiles import os_reason

# 2: the meta record holds the data description (DataInfo) beside the config; 1 did not
# 3: optimizer state per named optimizer of the model type (optim/<name>/<key>; 2 had optim/<key>)
# 4: parameters below a composite layer are named by attribute (net.0.blocks.0.attn.qkv.W; 3 had net.0.0.1.0.W)
# Other versions are refused.
CHECKPOINT_VERSION = 4
CHECKPOINT_FORMAT = f"netcli-checkpoint/{CHECKPOINT_VERSION}"


def remove_temp_files(run_dir: Path) -> None:
    """Delete the temporary files of writes that a killed process never finished."""
    for tmp in [*Path(run_dir).glob(".*.tmp"), *Path(run_dir).glob("*/.*.tmp")]:
        try:
            tmp.unlink(missing_ok=True)
        except OSError as e:
            raise RunError(f"{tmp}: cannot remove this temporary file of an unfinished write "
                           f"({e.strerror or e})") from None


def write_text(path: Path, text: str) -> None:
    with atomic_file(path, "w") as f:
        f.write(text)


def append_text(path: Path, text: str) -> None:
    try:
        with open(path, "a") as f:
            f.write(text)
    except OSError as e:
        raise RunError(f"{path}: cannot write ({e.strerror or e})") from None


def write_json(path: Path, obj: Any) -> None:
    write_text(path, json.dumps(obj, indent=2, default=json_default) + "\n")


def json_default(o):
    """json.dumps default= for numpy scalars and arrays."""
    if isinstance(o, np.generic):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


# -- run directories ---------------------------------------------------------------


def new_run_dir(runs_root: Path, name: str, config_text: str) -> Path:
    """Make runs_root/name/<timestamp>[-n] holding config.yaml; mkdir is atomic, so two runs in one second get
    -1, -2... A config.yaml that cannot be written (a full disk) takes the new directory away with it."""
    parent = Path(runs_root) / name
    stamp = time.strftime("%Y%m%d-%H%M%S")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        for n in range(1000):
            run = parent / (stamp if n == 0 else f"{stamp}-{n}")
            with suppress(FileExistsError):
                run.mkdir()
                break
        else:
            raise RunError(f"{parent}: too many runs started in the same second")
    except OSError as e:
        raise RunError(f"{parent}: cannot create the run directory ({e.strerror or e})") from None
    try:
        try:
            (run / "checkpoints").mkdir()
        except OSError as e:
            raise RunError(f"{run}: cannot create the run directory ({e.strerror or e})") from None
        write_text(run / "config.yaml", config_text)
    except RunError:
        with suppress(OSError):  # it holds at most an empty checkpoints/
            (run / "checkpoints").rmdir()
        with suppress(OSError):
            run.rmdir()
        raise
    return run


LOCK_FILE = ".lock"


@contextmanager
def run_lock(run_dir: Path) -> Iterator[None]:
    """Hold the run's lock while the block runs: a second process that tries is a RunError naming the holder.

    The lock file keeps the holder's pid, host and start time for ``lock_holder``; it is never deleted
    (deleting it would let two processes lock two different files of the same name).
    """
    path = Path(run_dir) / LOCK_FILE
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
    except OSError as e:
        raise RunError(f"{path}: cannot lock the run ({e.strerror or e})") from None
    try:
        for _ in range(20):  # lock_holder holds it for microseconds: a busy lock is retried for 0.2 s
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError as e:
                if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
                    raise RunError(f"{path}: cannot lock the run ({e.strerror or e})") from None
                time.sleep(0.01)
        else:
            raise RunError(f"{run_dir}: is being trained by {_describe(_read_holder(fd))}; "
                           "wait for it to finish or stop that process")
        info = {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S")}
        try:
            os.ftruncate(fd, 0)
            os.pwrite(fd, json.dumps(info).encode(), 0)
        except OSError:  # a full disk: the lock holds all the same, only its holder goes unnamed
            pass
        yield
    finally:
        os.close(fd)  # releases the lock


def lock_holder(run_dir: Path) -> dict | None:
    """``{"pid", "host", "since"}`` of the process training ``run_dir`` now, or None when none is."""
    try:
        fd = os.open(Path(run_dir) / LOCK_FILE, os.O_RDONLY)
    except OSError:  # no lock file: never trained since locking existed, or not a run
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except OSError as e:
        if e.errno not in (errno.EWOULDBLOCK, errno.EAGAIN):
            raise
        info = _read_holder(fd)
        os.close(fd)
        return info
    os.close(fd)  # we got it: nobody holds the lock
    return None


def _read_holder(fd: int) -> dict:
    """What the lock file says about its holder; fields it lacks (the holder has not written them yet) are None."""
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode())
    except (OSError, ValueError):
        info = {}
    info = info if isinstance(info, dict) else {}
    return {k: info.get(k) for k in ("pid", "host", "since")}


def _describe(holder: dict) -> str:
    if holder["pid"] is None:
        return "another process (starting up)"
    return f"pid {holder['pid']} on host {holder['host']} (since {holder['since']})"


def find_run(path: str | Path) -> Path:
    """A run directory, or the newest run below runs/<name>/ when given that."""
    p = Path(path)
    try:
        if not stat.S_ISDIR(os.stat(p).st_mode):
            raise RunError(f"{p}: no such run directory (not a directory)")
        if (p / "config.yaml").is_file():
            return p
        runs = sorted((d for d in p.iterdir() if (d / "config.yaml").is_file()), key=_started)
    except OSError as e:  # missing, a symlink loop, a name too long, unreadable
        why = "" if e.errno == errno.ENOENT else f" ({os_reason(e)})"
        raise RunError(f"{p}: no such run directory{why}") from None
    if not runs:
        raise RunError(f"{p}: not a run directory (no config.yaml)")
    return runs[-1]


def _started(run: Path) -> tuple[str, int]:
    """Sort key of run directories: <stamp>-10 came after <stamp>-9."""
    m = re.fullmatch(r"(\d{8}-\d{6})(?:-(\d+))?", run.name)
    return (m[1], int(m[2] or 0)) if m else (run.name, 0)


class MetricsLog:
    """Appends one JSON object a line: step, epoch, split, name, value, time; counts the lines written.

    Each of ``sinks`` (e.g. a TensorBoardSink) is called with every record too: ``sink(step, epoch, split, metrics)``.
    """

    def __init__(self, path: Path, lines: int = 0):
        self.path = Path(path)
        self.lines = lines  # in the file, this run's included
        self.t0 = time.time()
        self.sinks: list = []

    def write(self, step: int, epoch: int, split: str, metrics: dict[str, float]) -> None:
        now = round(time.time() - self.t0, 3)
        append_text(self.path, "".join(json.dumps({"step": step, "epoch": epoch, "split": split, "name": k,
                                                   "value": float(v), "time": now}) + "\n"
                                       for k, v in metrics.items()))
        self.lines += len(metrics)
        for sink in self.sinks:
            sink(step, epoch, split, metrics)

    def close(self) -> None:
        for sink in self.sinks:
            sink.close()
        self.sinks = []

    def truncate(self) -> None:
        """Keep only the first ``lines`` lines: a resumed run repeats what came after its checkpoint."""
        if self.path.exists():
            keep = self.path.read_text().splitlines(keepends=True)[:self.lines]
            write_text(self.path, "".join(line if line.endswith("\n") else "" for line in keep))


def read_metrics_after(path: Path, offset: int = 0, file_id: str | None = None,
                       max_bytes: int = 4 << 20) -> dict[str, Any]:
    """The whole lines of metrics.jsonl from byte ``offset`` on (at most about ``max_bytes``), for live readers.

    Returns ``{"records", "next", "file", "reset", "more"}``: pass ``next`` and ``file`` back to read on.
    A log rewritten since ``file_id`` was taken (a resume cuts it and renames a new file in) or one now
    shorter than ``offset`` is read again from 0 with ``reset`` true. A line still being written waits
    for its newline; a damaged line is skipped.
    """
    try:
        with open(path, "rb") as f:
            st = os.fstat(f.fileno())
            fid = f"{st.st_dev}-{st.st_ino}"
            reset = offset > st.st_size or (file_id is not None and file_id != fid)
            offset = 0 if reset else offset
            f.seek(offset)
            data = f.read(max_bytes)
            more = f.read(1) != b""
    except FileNotFoundError:
        return {"records": [], "next": 0, "file": None, "reset": offset > 0 or file_id is not None, "more": False}
    end = data.rfind(b"\n") + 1  # whole lines only
    records = []
    for line in data[:end].splitlines():
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            records.append(rec)
    return {"records": records, "next": offset + end, "file": fid, "reset": reset, "more": more and end > 0}


def read_metrics(path: Path) -> list[dict]:
    if not Path(path).exists():
        return []
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except ValueError:
            break
    return out


# -- checkpoints ---------------------------------------------------------------------


def save_checkpoint(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> None:
    """Write arrays plus a JSON ``meta`` record atomically."""
    meta = {"format": CHECKPOINT_FORMAT, **meta}
    payload = dict(arrays)
    payload["__meta__"] = np.frombuffer(json.dumps(meta, default=json_default).encode(), dtype=np.uint8)
    with atomic_file(path) as f:
        np.savez(f, **payload)


def load_checkpoint(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such checkpoint")
    try:
        with np.load(path, allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        if not all(isinstance(a, np.ndarray) for a in arrays.values()):  # a zip member that is not a .npy
            raise ValueError("a member is not an array")
        if "__meta__" not in arrays:
            raise ValueError("no __meta__ record")
        meta = json.loads(arrays.pop("__meta__").tobytes().decode())
    except (zipfile.BadZipFile, ValueError, EOFError, OSError, MemoryError, RecursionError) as e:
        raise CheckpointError(f"{path}: damaged or not a netcli checkpoint ({e.__class__.__name__}: {e})") from None
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: not a netcli checkpoint")
    fmt = meta.get("format")
    version = fmt.split("/", 1)[1] if isinstance(fmt, str) and fmt.startswith("netcli-checkpoint/") else None
    if version is None:
        raise CheckpointError(f"{path}: not a netcli checkpoint (format {fmt!r})")
    if fmt != CHECKPOINT_FORMAT:
        newer = version.isdigit() and int(version) > CHECKPOINT_VERSION
        raise CheckpointError(f"{path}: checkpoint format {version} was written by {'a newer' if newer else 'an older'} "
                              f"netcli; this one reads format {CHECKPOINT_VERSION} only"
                              + ("" if newer else " (train the run again)"))
    return arrays, meta


def assign_arrays(path: Path, arrays: dict[str, np.ndarray], targets: dict[str, np.ndarray], prefix: str) -> None:
    have = {k[len(prefix) + 1:]: v for k, v in arrays.items() if k.startswith(prefix + "/")}
    missing, extra = sorted(set(targets) - set(have)), sorted(set(have) - set(targets))
    wrong = [f"{k} {have[k].shape} vs {targets[k].shape}" for k in targets
             if k in have and have[k].shape != targets[k].shape]
    if missing or extra or wrong:
        parts = ([f"missing {', '.join(missing[:3])}"] if missing else []) + \
                ([f"unexpected {', '.join(extra[:3])}"] if extra else []) + \
                ([f"shape {', '.join(wrong[:3])}"] if wrong else [])
        raise CheckpointError(f"{path}: does not fit this model ({'; '.join(parts)})")
    for k in targets:
        if have[k].dtype.kind not in "biuf":
            raise CheckpointError(f"{path}: {prefix}/{k} has dtype {have[k].dtype}, not numbers")
        if not np.isfinite(have[k]).all():
            raise CheckpointError(f"{path}: {prefix}/{k} holds non-finite values")
    for k, t in targets.items():
        t[...] = have[k]

"""A user's input files (configs, CSV, npz, IDX): checked before anything is read.

Every OS error on such a path (missing, a symlink loop, a name too long, a file
where a folder should be, no permission) becomes one line naming the path.
Only regular files are read: a device (/dev/zero), a FIFO or a socket would be
read until memory runs out, or block. ``max_bytes`` refuses a file by its size
before a slow parser sees it.
"""
from __future__ import annotations

import errno
import os
import stat
from pathlib import Path
from typing import Callable

from .backend import format_bytes

_KINDS = [(stat.S_ISDIR, "a directory"), (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
          (stat.S_ISFIFO, "a FIFO"), (stat.S_ISSOCK, "a socket")]


def os_reason(e: OSError, what: str = "file") -> str:
    """The OS's words for ``e`` ('Too many levels of symbolic links', ...); 'no such WHAT' for a missing one."""
    if e.errno == errno.ENOENT:
        return f"no such {what}"
    return e.strerror or (os.strerror(e.errno) if e.errno else e.__class__.__name__)


def check_file(path: str | Path, error: Callable[[str], Exception], what: str = "file", hint: str = "",
               max_bytes: int | None = None) -> int:
    """The size of the regular file ``path``; else raise ``error("PATH: why[hint]")``."""
    try:
        st = os.stat(path)
    except OSError as e:
        raise error(f"{path}: {os_reason(e, what)}{hint}") from None
    except ValueError as e:  # a NUL character in the path
        raise error(f"{path}: not a usable path ({e})") from None
    if not stat.S_ISREG(st.st_mode):
        kind = next((name for test, name in _KINDS if test(st.st_mode)), "not a regular file")
        raise error(f"{path}: is {kind}, not a regular file{hint}")
    if max_bytes is not None and st.st_size > max_bytes:
        raise error(f"{path}: {format_bytes(st.st_size)} is too large (at most {format_bytes(max_bytes)}){hint}")
    return st.st_size


def read_bytes(path: str | Path, error: Callable[[str], Exception], what: str = "file", hint: str = "",
               max_bytes: int | None = None) -> bytes:
    """The bytes of the regular file ``path`` (see check_file); an OS error while reading is ``error`` too."""
    check_file(path, error, what, hint, max_bytes)
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as e:
        raise error(f"{path}: {os_reason(e, what)}{hint}") from None


def absolute(path: Path) -> Path:
    """``path`` absolute, symlinks resolved where they resolve; a loop is left for the reader to report."""
    try:
        return path.resolve()
    except (OSError, RuntimeError):  # RuntimeError: a symlink loop (Python < 3.13)
        return Path(os.path.abspath(path))

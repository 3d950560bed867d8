"""The IDX format of MNIST (plain or gzipped).

    magic: 0x00 0x00 <dtype code> <ndim>, then ndim big-endian uint32 sizes, then the data, big-endian, row-major.
"""
from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

from ..userfiles import read_bytes
from .base import DataError

DTYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
CODES = {np.dtype(v).newbyteorder("="): k for k, v in DTYPES.items()}


def parse_idx(data: bytes, name: str = "<bytes>") -> np.ndarray:
    """The array in IDX ``data`` (gunzipped first if it is gzip), in native byte order; ``name`` goes in errors."""
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{name}: broken gzip data ({e}); download the file again") from None
    if len(data) < 4 or data[:2] != b"\0\0" or data[2] not in DTYPES:
        raise DataError(f"{name}: not an IDX file (bad magic number {data[:4].hex()})")
    dtype, ndim = np.dtype(DTYPES[data[2]]), data[3]
    if ndim == 0:
        raise DataError(f"{name}: not an IDX file (0 dimensions; an IDX array has at least one)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise DataError(f"{name}: IDX header is cut short")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", count=ndim, offset=4))
    expected = header + math.prod(shape) * dtype.itemsize  # Python ints: a product of sizes cannot wrap to 0
    if len(data) != expected:
        raise DataError(f"{name}: IDX header says {shape} ({expected} bytes) but the file has {len(data)} bytes;"
                        " the file is truncated or corrupt, download it again")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path: str | Path) -> np.ndarray:
    return parse_idx(read_bytes(path, DataError, "IDX file"), str(path))


def encode_idx(array: np.ndarray) -> bytes:
    """``array`` as IDX bytes (the inverse of ``parse_idx``)."""
    array = np.asarray(array)
    code = CODES.get(array.dtype.newbyteorder("="))
    if code is None:
        raise ValueError(f"IDX cannot hold {array.dtype}; use one of {sorted(str(d) for d in CODES)}")
    header = bytes([0, 0, code, array.ndim]) + np.asarray(array.shape, ">u4").tobytes()
    return header + array.astype(DTYPES[code]).tobytes()

"""HTTP downloads with urllib: streamed to a temporary file, checked (size, MD5), then renamed into place."""
from __future__ import annotations

import hashlib
import http.client
import os
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

from .base import DataError, Progress

TIMEOUT = 5.0  # seconds per socket operation, so that unreachable mirrors fail over fast
CHUNK = 1 << 16


class DownloadError(DataError):
    """One URL failed. ``reachable`` is False when the host could not be reached at all."""

    def __init__(self, message: str, reachable: bool = True):
        super().__init__(message)
        self.reachable = reachable


def download(url: str, dest: Path, *, md5: str, progress: Progress = None, timeout: float = TIMEOUT) -> Path:
    """Stream ``url`` to ``dest``; the file appears there only if its size and MD5 check out."""
    dest = Path(dest)
    fd, tmp = tempfile.mkstemp(dir=dest.parent, prefix=dest.name + ".", suffix=".part")
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
            total, done, digest = int(response.headers.get("Content-Length") or 0), 0, hashlib.md5()
            while chunk := response.read(CHUNK):
                out.write(chunk)
                digest.update(chunk)
                done += len(chunk)
                if progress:
                    progress(done, total, dest.name)
        if total and done != total:
            raise DownloadError(f"{url}: got {done} of {total} bytes")
        if digest.hexdigest() != md5:
            raise DownloadError(f"{url}: MD5 {digest.hexdigest()} does not match the published {md5}")
        os.replace(tmp, dest)
        return dest
    except urllib.error.HTTPError as e:
        raise DownloadError(f"{url}: HTTP {e.code} {e.reason}") from None
    except (urllib.error.URLError, http.client.HTTPException, OSError) as e:  # DNS, refused, timeout, reset
        raise DownloadError(f"{url}: {getattr(e, 'reason', e)}", reachable=False) from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def download_from_mirrors(files: dict[str, str], mirrors: list[str], dest_dir: Path,
                          progress: Progress = None) -> dict[str, Path]:
    """Each of ``files`` ({name: md5}) from the first mirror that serves it intact, into ``dest_dir``.

    A mirror that cannot be reached is not asked again. Raises DownloadError listing every failure.
    """
    paths, dead, failures = {}, set(), []
    for name, md5 in files.items():
        for base in mirrors:
            if base in dead:
                continue
            try:
                paths[name] = download(base + name, Path(dest_dir) / name, md5=md5, progress=progress)
                break
            except DownloadError as e:
                failures.append(str(e))
                if not e.reachable:
                    dead.add(base)
        else:
            raise DownloadError(f"no mirror served {name}: " + ("; ".join(failures) or "none listed"))
    return paths

"""What the UI's JSON API answers, over one runs directory; nothing here writes into it.

A run's id is its directory's path below the runs directory, e.g. ``mnist_cnn/20260101-120000``.
Every path that comes in (a run id, a file) goes through ``resolve_under``: absolute paths,
``..``, and anything that resolves outside the runs directory (a symlink out of it) are refused.
"""
from __future__ import annotations

import json
import os
import threading
import zipfile
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np

from ..runs import LOCK_FILE, read_metrics_after
from ..runs_table import diff_runs, find_run_dirs, read_run


STAMPED = ("config.yaml", "summary.json", "eval.json", LOCK_FILE)  # a record changes only with these (or a lock)


class NotFound(Exception):
    """The request names something that is not there (404)."""


class BadRequest(Exception):
    """The request is malformed or refused (400)."""


def resolve_under(root: Path, rel: str) -> Path:
    """``root / rel`` with symlinks resolved, refused unless it stays inside ``root``."""
    if not rel or "\0" in rel or "\\" in rel:
        raise BadRequest(f"bad path {rel!r}")
    p = PurePosixPath(rel)
    if p.is_absolute() or ".." in p.parts:
        raise BadRequest(f"{rel}: absolute paths and '..' are refused")
    full = (root / p).resolve()
    if full != root and root not in full.parents:
        raise BadRequest(f"{rel}: outside the runs directory")
    return full


class RunsAPI:
    def __init__(self, root: Path | str):
        self.root = Path(root).resolve()
        self._records: dict[Path, tuple[tuple, dict]] = {}  # run dir -> (its files' stat stamp, its record)
        self._lock = threading.Lock()

    def run_dir(self, run_id: str) -> Path:
        d = resolve_under(self.root, run_id)
        if not (d / "config.yaml").is_file():
            raise NotFound(f"no run {run_id!r} under {self.root}")
        return d

    # -- GET /api/runs -------------------------------------------------------------
    def runs(self) -> dict[str, Any]:
        """Every run's record (runs_table.read_run); a run whose files have not changed since the last call
        and that is not training is not read again (1,000 runs: a second's YAML parsing once, then stat calls)."""
        dirs = find_run_dirs(self.root) if self.root.is_dir() else []
        out = []
        for d in dirs:
            if d.is_symlink() and not d.resolve().is_relative_to(self.root):
                continue  # a run reached through a symlink out of the runs directory is left out
            out.append({"id": d.relative_to(self.root).as_posix(), **self.record(d)})
        with self._lock:
            for gone in set(self._records) - set(dirs):
                del self._records[gone]
        return {"root": str(self.root), "runs": out}

    def record(self, d: Path) -> dict[str, Any]:
        stamp = tuple(_stat(d / name) for name in STAMPED)
        with self._lock:
            hit = self._records.get(d)
        if hit is not None and hit[0] == stamp and hit[1]["status"] != "running":
            return hit[1]
        rec = read_run(d).to_dict()
        with self._lock:
            self._records[d] = (stamp, rec)
        return rec

    # -- GET /api/runs/{id} -----------------------------------------------------------
    def run(self, run_id: str) -> dict[str, Any]:
        d = self.run_dir(run_id)
        return {"id": run_id, **self.record(d),
                "config": _text(d / "config.yaml"), "summary": _json(d / "summary.json"),
                "eval": _json(d / "eval.json"), "quality": _json(d / "quality.json"),
                "checkpoints": [checkpoint_info(p) for p in sorted((d / "checkpoints").glob("*.npz"))],
                "samples": [f"{run_id}/samples/{p.name}" for p in sorted((d / "samples").glob("*.png"))],
                "config_changes": _text(d / "config_changes.log")}

    # -- GET /api/runs/{id}/metrics?after=N&file=F ---------------------------------------
    def metrics(self, run_id: str, after: int = 0, file_id: str | None = None) -> dict[str, Any]:
        if after < 0:
            raise BadRequest("after must be a byte offset >= 0")
        return read_metrics_after(self.run_dir(run_id) / "metrics.jsonl", after, file_id)

    # -- GET /api/compare?run=A&run=B ------------------------------------------------------
    def compare(self, run_ids: list[str]) -> dict[str, Any]:
        if len(run_ids) < 2:
            raise BadRequest("compare needs two or more runs: ?run=ID&run=ID")
        diff = diff_runs([self.run_dir(r) for r in run_ids]).to_dict()
        diff["runs"] = list(run_ids)
        return diff

    # -- GET /files/{path} -----------------------------------------------------------------
    def file(self, rel: str) -> Path:
        p = resolve_under(self.root, rel)
        if not p.is_file():
            raise NotFound(f"no file {rel!r} under the runs directory")
        return p


def checkpoint_info(path: Path) -> dict[str, Any]:
    """Name, size, time and training position of a checkpoint, from its small __meta__ member only."""
    st = path.stat()
    info: dict[str, Any] = {"name": path.name, "bytes": st.st_size, "modified": st.st_mtime}
    try:
        with zipfile.ZipFile(path) as z, z.open("__meta__.npy") as f:
            meta = json.loads(np.lib.format.read_array(f, allow_pickle=False).tobytes().decode())
        state = meta.get("state", {})
        info.update(step=state.get("step"), epoch=state.get("epoch"), best=state.get("best"))
    except (OSError, KeyError, ValueError, zipfile.BadZipFile, AttributeError):
        info["damaged"] = True
    return info


def _stat(path: Path) -> tuple[int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_mtime_ns, st.st_size


def _text(path: Path) -> str | None:
    try:
        return path.read_text()
    except (OSError, UnicodeDecodeError):
        return None


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def query_int(query: dict[str, list[str]], key: str, default: int) -> int:
    values = query.get(key)
    if not values:
        return default
    try:
        return int(values[-1])
    except ValueError:
        raise BadRequest(f"{key} must be an integer, got {values[-1]!r}") from None

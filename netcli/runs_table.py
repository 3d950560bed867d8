"""Many runs at once: one record per run directory (``netcli runs``, the UI's runs page) and a comparison.

    records = list_runs("runs")                     # [RunRecord], oldest first
    records = select(records, ["status=running"], sort="-best")
    diff = diff_runs(["runs/a/<run>", "runs/b/<run>"])  # config keys that differ, metrics side by side

A record is read from the run's small files only: config.yaml, summary.json,
eval.json, the lock, and the last line of metrics.jsonl (read from the end of
the file), so a listing of 1,000 runs never reads a metrics log through.

Status: ``running`` while a process holds the run's lock (with its progress from
the last metrics line), else what summary.json says (finished, early_stopping,
max_steps, interrupted, diverged, pruned), else ``stopped`` (the process ended without
a summary: killed, or crashed).
"""
from __future__ import annotations

import fnmatch
import json
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

from .config import differing_keys, flatten
from .errors import UserError
from .runs import find_run, lock_holder

_Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser: 1,000 configs in well under a second


@dataclass
class RunRecord:
    path: str                 # the run directory
    name: str                 # the config's name (runs/<name>/)
    stamp: str                # the run directory's name, <YYYYmmdd-HHMMSS>[-n]
    status: str               # running | finished | early_stopping | max_steps | interrupted | diverged | pruned | stopped
    model: str | None         # model type
    params: int | None        # parameter count (from summary.json)
    epoch: int | None         # epochs completed
    epochs: int | None        # epochs configured
    step: int | None          # optimizer steps taken (the last logged step while running)
    monitor: str | None       # the metric that picks best.npz
    best: float | None        # its best value
    test_metric: str | None   # the eval.json metric shown, e.g. accuracy
    test: float | None        # its value
    wall_s: float | None      # training wall time (while running: since the lock was taken)
    progress: float | None    # while running: share of the configured epochs done, 0..1
    message: str | None       # why a diverged run stopped

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


FIELDS = tuple(RunRecord.__dataclass_fields__)


def find_run_dirs(root: Path | str) -> list[Path]:
    """Every run directory (one holding config.yaml) under ``root``, not descending into runs; oldest first."""
    root = Path(root)
    if not root.is_dir():
        raise UserError(f"{root}: no such directory")
    if (root / "config.yaml").is_file():
        return [root]
    found, todo = [], [root]
    while todo:
        d = todo.pop()
        try:
            entries = list(os.scandir(d))
        except OSError:
            continue
        for e in entries:
            if not e.is_dir() or e.name.startswith("."):
                continue
            p = Path(e.path)
            if (p / "config.yaml").is_file():
                found.append(p)
            elif not e.is_symlink() and e.name != "checkpoints":
                todo.append(p)
    return sorted(found, key=lambda p: (p.name, str(p)))


def list_runs(root: Path | str = "runs") -> list[RunRecord]:
    """One record per run directory under ``root``, oldest first."""
    return [read_run(p) for p in find_run_dirs(root)]


def read_run(run_dir: Path) -> RunRecord:
    run_dir = Path(run_dir)
    cfg = _read_yaml(run_dir / "config.yaml")
    summary = _read_json(run_dir / "summary.json")
    ev = _read_json(run_dir / "eval.json")
    model = cfg.get("model") if isinstance(cfg.get("model"), dict) else {}
    train = cfg.get("train") if isinstance(cfg.get("train"), dict) else {}
    best = summary.get("best") if isinstance(summary.get("best"), dict) else {}
    monitor, best_value = next(iter(best.items()), (None, None))
    test_metric, test = _test_metric(ev.get("metrics"), monitor)
    rec = RunRecord(path=str(run_dir), name=str(cfg.get("name", run_dir.parent.name)), stamp=run_dir.name,
                    status=summary.get("status", "stopped"), model=model.get("type"), params=summary.get("params"),
                    epoch=summary.get("epochs_completed"), epochs=train.get("epochs"), step=summary.get("steps"),
                    monitor=monitor, best=best_value, test_metric=test_metric, test=test,
                    wall_s=summary.get("wall_time_s"), progress=None, message=summary.get("message"))
    holder = lock_holder(run_dir)
    if holder is not None:
        rec.status = "running"
        last = last_metric(run_dir / "metrics.jsonl") or {}
        rec.step, epoch = last.get("step", 0), last.get("epoch", 0)
        rec.epoch = epoch + 1 if last.get("split") in ("train_epoch", "val") else epoch
        if rec.epochs:
            rec.progress = min(rec.epoch / rec.epochs, 1.0) if last.get("split") != "train" else \
                min((epoch + 0.5) / rec.epochs, 1.0)
        since = holder.get("since")
        if since:
            try:
                rec.wall_s = round(time.time() - time.mktime(time.strptime(since, "%Y-%m-%d %H:%M:%S")), 1)
            except ValueError:
                pass
    return rec


def _test_metric(metrics, monitor: str | None) -> tuple[str | None, float | None]:
    """The eval.json metric matching the monitored one (val_accuracy -> accuracy), else the first that is not loss."""
    if not isinstance(metrics, dict) or not metrics:
        return None, None
    base = monitor.removeprefix("val_").removeprefix("train_") if monitor else None
    name = base if base in metrics else next((k for k in metrics if k != "loss"), next(iter(metrics)))
    return name, metrics[name]


def last_metric(path: Path, chunk: int = 8192) -> dict | None:
    """The last whole JSON line of metrics.jsonl, read from the end of the file."""
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            size = f.tell()
            f.seek(max(0, size - chunk))
            lines = f.read().split(b"\n")
    except OSError:
        return None
    for line in reversed(lines[1:] if size > chunk else lines):
        try:
            rec = json.loads(line)
        except ValueError:
            continue
        if isinstance(rec, dict):
            return rec
    return None


def _read_json(path: Path) -> dict:
    try:
        obj = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return obj if isinstance(obj, dict) else {}


def _read_yaml(path: Path) -> dict:
    try:
        obj = yaml.load(path.read_text(), Loader=_Loader)
    except (OSError, yaml.YAMLError):
        return {}
    return obj if isinstance(obj, dict) else {}


# -- filtering and sorting -----------------------------------------------------------


def select(records: list[RunRecord], filters: list[str] = (), sort: str | None = None) -> list[RunRecord]:
    """Keep records matching every ``field=glob`` filter; sort by ``field`` (``-field``: descending).

    Records without a value for the sort field go last either way.
    """
    for f in filters:
        key, sep, pattern = f.partition("=")
        if not sep or key not in FIELDS:
            raise UserError(f"--filter {f}: give FIELD=PATTERN with FIELD one of {', '.join(FIELDS)}")
        records = [r for r in records if fnmatch.fnmatchcase(_text(getattr(r, key)), pattern)]
    if sort:
        key, desc = sort.removeprefix("-"), sort.startswith("-")
        if key not in FIELDS:
            raise UserError(f"--sort {sort}: unknown field; one of {', '.join(FIELDS)} (-FIELD: descending)")
        have = sorted((r for r in records if getattr(r, key) is not None), key=lambda r: getattr(r, key),
                      reverse=desc)
        records = have + [r for r in records if getattr(r, key) is None]
    return records


def _text(v) -> str:
    return "" if v is None else str(v)


# -- comparison -------------------------------------------------------------------------


@dataclass
class RunsDiff:
    runs: list[str]                         # the run directories, in the order given
    config: dict[str, list[Any]]            # dotted config key -> each run's value (None: not set), keys that differ
    metrics: dict[str, list[float | None]]  # "final val_loss", "best val_accuracy", "test accuracy" -> values

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def diff_runs(paths: list[Path | str]) -> RunsDiff:
    """The config keys whose values differ between the runs, and their final, best and test metrics side by side."""
    if len(paths) < 2:
        raise UserError("give two or more runs to compare")
    dirs = [find_run(p) for p in paths]
    flats = [flatten(_read_yaml(d / "config.yaml")) for d in dirs]
    config = {k: [f.get(k) for f in flats] for k in differing_keys(flats)}
    tables: list[dict[str, float]] = []
    for d in dirs:
        summary, ev = _read_json(d / "summary.json"), _read_json(d / "eval.json")
        row = {f"final {k}": v for k, v in (summary.get("metrics") or {}).items()}
        row.update({f"best {k}": v for k, v in (summary.get("best") or {}).items()})
        row.update({f"test {k}": v for k, v in (ev.get("metrics") or {}).items()})
        if "wall_time_s" in summary:
            row["wall time s"] = summary["wall_time_s"]
        tables.append(row)
    names = list(dict.fromkeys(k for t in tables for k in t))
    return RunsDiff([str(d) for d in dirs], config, {k: [t.get(k) for t in tables] for k in names})

"""Hyperparameter sweeps with Optuna (the ``sweep`` extra): a sweep file, workers that pull trials, a report.

A sweep file::

    base: ../mnist_mlp.yaml                  # the experiment, relative to this file
    set: {train.epochs: 4}                   # fixed overrides of every trial (optional)
    space:                                   # any config key, as --set writes it
      optimizer.lr: {loguniform: [1.0e-4, 1.0e-2]}
      model.layers.2.rate: {uniform: [0.0, 0.5]}
      data.batch_size: {int: [32, 256]}
      model.layers.0.units: {choice: [128, 256, 512]}
    objective: {metric: val_accuracy, direction: maximize}
    trials: 20
    sampler: tpe                             # tpe | random | grid
    pruner: {type: median, startup_trials: 3, warmup_epochs: 1}   # or: none

``run_sweep`` creates the study once (SQLite ``study.db`` in the sweep directory,
or ``--storage postgresql://...`` shared by machines that run the same command),
then K worker processes each ask the study for a trial, train it as an ordinary
run (``runs/<sweep>-<NNNN>/<stamp>/``, linked as ``trials/NNNN`` from the sweep
directory), report each epoch's objective value to the pruner and tell the
result, until the study holds ``trials`` trials. A trial that diverges or fails
is recorded as failed with its message. Ctrl-C stops every worker at its next
step boundary; their trials are recorded as interrupted and queued again with
the same parameters, so running the command again resumes the sweep.
"""
from __future__ import annotations

import math
import multiprocessing
import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal, Optional, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .config import _where, load_config, parse_yaml, read_config_text
from .errors import ConfigError, UserError, require_extra
from .userfiles import absolute
from .runs import find_run, write_text
from .train import Reporter, train


# -- the sweep file ----------------------------------------------------------------


class _Dim(BaseModel):
    model_config = ConfigDict(extra="forbid")


class LogUniform(_Dim):
    loguniform: tuple[float, float] = Field(description="[low, high], both > 0, sampled on a log scale")


class Uniform(_Dim):
    uniform: tuple[float, float] = Field(description="[low, high]")


class IntRange(_Dim):
    int_: tuple[int, int] = Field(alias="int", description="[low, high], both included")


class Choice(_Dim):
    choice: list[Any] = Field(min_length=1, description="the values to choose from")


class Objective(BaseModel):
    model_config = ConfigDict(extra="forbid")
    metric: str = Field(description="an epoch metric of the runs, e.g. val_accuracy or val_loss")
    direction: Literal["maximize", "minimize"]


class Pruner(BaseModel):
    model_config = ConfigDict(extra="forbid")
    type: Literal["median", "none"] = "median"
    startup_trials: int = Field(3, ge=0, description="trials that run to the end before any is pruned")
    warmup_epochs: int = Field(1, ge=0, description="epochs of each trial that are never pruned")


class SweepConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base: Path = Field(description="the experiment file, relative to the sweep file")
    name: Optional[str] = Field(None, pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$", max_length=80,
                                description="default: the sweep file's name")
    set: dict[str, Any] = Field(default_factory=dict, description="fixed overrides of every trial")
    space: dict[str, Union[LogUniform, Uniform, IntRange, Choice]] = Field(min_length=1)
    objective: Objective
    trials: Optional[int] = Field(None, ge=1, description="default: the grid's size with sampler grid, else 20")
    sampler: Literal["tpe", "random", "grid"] = "tpe"
    pruner: Pruner = Field(default_factory=Pruner)
    seed: int = Field(0, ge=0)

    @field_validator("pruner", mode="before")
    @classmethod
    def _pruner_by_name(cls, v):
        return {"type": v} if isinstance(v, str) else v


@dataclass
class Sweep:
    cfg: SweepConfig
    path: Path        # the sweep file
    name: str
    base: Path        # the experiment file
    dir: Path         # the sweep's directory: study.db, trials/, best.yaml, history.png
    runs_dir: Path    # where trial runs go
    storage: str      # an SQLAlchemy URL
    trials: int


def load_sweep(path: Path | str, sweep_dir: Path | None = None, runs_dir: Path | str = "runs",
               storage: str | None = None) -> Sweep:
    """Read and check a sweep file: its keys, and that every space key and fixed override fits the base config."""
    _optuna()  # before anything is said or written
    path = Path(path)
    raw, lines = parse_yaml(read_config_text(path, "sweep file"), str(path))
    try:
        cfg = SweepConfig.model_validate(raw)
    except ValidationError as e:
        raise ConfigError([_problem(err, str(path), lines) for err in e.errors()]) from None
    problems = []
    for key, dim in cfg.space.items():
        problem = _bad_range(dim)
        if problem:
            problems.append(f"{_where(str(path), lines, ('space', key))}: space.{key}: {problem}")
    if cfg.sampler == "grid":
        problems += [f"{_where(str(path), lines, ('space', key))}: space.{key}: the grid sampler needs "
                     f"choice or int values" for key, dim in cfg.space.items() if isinstance(dim, (LogUniform, Uniform))]
    if problems:
        raise ConfigError(problems)
    base = absolute(path.parent / cfg.base) if not cfg.base.is_absolute() else cfg.base
    fixed = [f"{k}={_yaml(v)}" for k, v in cfg.set.items()]
    load_config(base, fixed)  # the base and the fixed overrides, with their own file:line errors
    for key, dim in cfg.space.items():  # each space key takes its values (config errors name the sweep file's line)
        for value in _corners(dim):
            try:
                load_config(base, [*fixed, f"{key}={_yaml(value)}"])
            except ConfigError as e:
                why = "; ".join(p.split(": ", 2)[-1] for p in e.problems)
                raise ConfigError([f"{_where(str(path), lines, ('space', key))}: space.{key}: "
                                   f"{value!r} does not fit {base.name}: {why}"]) from None
    name = cfg.name or path.stem
    sweep_dir = Path(sweep_dir) if sweep_dir else Path("sweeps") / name
    if storage is None:
        storage = f"sqlite:///{(sweep_dir / 'study.db').resolve()}"
    elif storage.startswith("postgresql://"):  # psycopg 3 (the sweep extra), not SQLAlchemy's default psycopg2
        storage = "postgresql+psycopg://" + storage[len("postgresql://"):]
    trials = cfg.trials or (math.prod(len(_grid_values(d)) for d in cfg.space.values()) if cfg.sampler == "grid"
                            else 20)
    return Sweep(cfg, path, name, base, sweep_dir, Path(runs_dir), storage, trials)


def _problem(err: dict, source: str, lines: dict) -> str:
    loc = tuple(p for p in err["loc"] if p not in ("LogUniform", "Uniform", "IntRange", "Choice"))
    msg = err["msg"] + (f" (got {err['input']!r})" if "input" in err and not isinstance(err["input"], (dict, list))
                        else "")
    if err["type"] == "extra_forbidden" and loc[:1] == ("space",):
        msg = f"unknown kind of values '{loc[-1]}'; give loguniform, uniform, int or choice"
        loc = loc[:-1]
    return f"{_where(source, lines, loc)}: {'.'.join(map(str, loc))}: {msg}"


def _bad_range(dim) -> str | None:
    if isinstance(dim, (LogUniform, Uniform, IntRange)):
        low, high = next(iter(dim.model_dump().values()))
        if not low < high:
            return f"low {low} must be below high {high}"
        if isinstance(dim, LogUniform) and low <= 0:
            return f"loguniform needs low > 0 (got {low})"
    return None


def _corners(dim) -> list:
    """The values that show whether a key takes the dimension's range: its ends, or every choice."""
    return list(dim.choice) if isinstance(dim, Choice) else list(next(iter(dim.model_dump().values())))


def _grid_values(dim) -> list:
    return list(dim.choice) if isinstance(dim, Choice) else list(range(dim.int_[0], dim.int_[1] + 1))


def _yaml(value) -> str:
    """A value as --set parses it back (YAML flow style)."""
    return yaml.safe_dump(value, default_flow_style=True).strip().removesuffix("\n...").strip()


# -- the study --------------------------------------------------------------------------


def _optuna():
    return require_extra("optuna", "sweep")


def _storage(sweep: Sweep):
    optuna = _optuna()
    if sweep.storage.startswith("postgresql"):
        require_extra("psycopg", "sweep")
    kwargs = {"connect_args": {"timeout": 60}} if sweep.storage.startswith("sqlite") else {"pool_pre_ping": True}
    for attempt in range(3):
        try:
            return optuna.storages.RDBStorage(sweep.storage, engine_kwargs=kwargs)
        except Exception as e:  # an unreachable server, a bad URL: SQLAlchemy's and the driver's errors alike
            if "already exists" in str(e) and attempt < 2:  # another machine created the tables at the same moment
                time.sleep(0.5)
                continue
            raise UserError(f"--storage {_redact(sweep.storage)}: cannot open the study storage "
                            f"({' '.join(str(e).split())[:300]})") from None


def _redact(url: str) -> str:
    """The URL without its password."""
    head, sep, tail = url.rpartition("@")
    if not sep or ":" not in head.split("//", 1)[-1]:
        return url
    scheme, _, cred = head.partition("//")
    return f"{scheme}//{cred.split(':', 1)[0]}:***@{tail}"


def _sampler(sweep: Sweep, worker_seed: int):
    optuna = _optuna()
    if sweep.cfg.sampler == "grid":
        class Grid(optuna.samplers.GridSampler):
            def after_trial(self, *args):  # the budget ends a sweep: its study.stop() works inside optimize() only
                pass

        return Grid({k: _grid_values(d) for k, d in sweep.cfg.space.items()}, seed=worker_seed)
    if sweep.cfg.sampler == "random":
        return optuna.samplers.RandomSampler(seed=worker_seed)
    return optuna.samplers.TPESampler(seed=worker_seed, n_startup_trials=min(10, max(2, sweep.trials // 4)))


def _pruner(sweep: Sweep):
    optuna = _optuna()
    p = sweep.cfg.pruner
    if p.type == "none":
        return optuna.pruners.NopPruner()
    return optuna.pruners.MedianPruner(n_startup_trials=p.startup_trials, n_warmup_steps=p.warmup_epochs)


def create_study(sweep: Sweep):
    """Create the study (or open the existing one), once, before any worker starts: concurrent creation races."""
    optuna = _optuna()
    sweep.dir.mkdir(parents=True, exist_ok=True)
    (sweep.dir / "trials").mkdir(exist_ok=True)
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(study_name=sweep.name, storage=_storage(sweep), load_if_exists=True,
                                direction=sweep.cfg.objective.direction, sampler=_sampler(sweep, sweep.cfg.seed),
                                pruner=_pruner(sweep))
    if study.direction.name.lower() != sweep.cfg.objective.direction:
        raise UserError(f"{sweep.path}: objective.direction is {sweep.cfg.objective.direction}, but the study "
                        f"'{sweep.name}' in {_redact(sweep.storage)} was created to {study.direction.name.lower()}")
    return study


def _load_study(sweep: Sweep, worker_seed: int):
    optuna = _optuna()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    return optuna.load_study(study_name=sweep.name, storage=_storage(sweep), sampler=_sampler(sweep, worker_seed),
                             pruner=_pruner(sweep))


# the trials a sweep's budget counts: interrupted ones are queued again, surplus ones never ran
def _counted(study) -> list:
    return [t for t in study.get_trials(deepcopy=False)
            if not t.user_attrs.get("interrupted") and not t.user_attrs.get("surplus")]


def _waiting(study) -> bool:
    """Queued trials (an interrupted trial's parameters) that the next ask will take."""
    return any(t.state.name == "WAITING" for t in study.get_trials(deepcopy=False))


# -- a worker ------------------------------------------------------------------------------


class _Stop(Exception):
    """A signal asked the worker to stop after the trial in progress."""


class ObjectiveMissing(UserError):
    """The objective's metric is not among a trial's epoch metrics: a mistake in the sweep file, so the sweep stops."""


class TrialReporter(Reporter):
    """Feeds each epoch's objective value to the trial; asks the run to stop when the pruner says so."""

    def __init__(self, sweep: Sweep, trial, epochs: int):
        self.sweep, self.trial, self.epochs = sweep, trial, epochs
        self.values: list[float] = []

    def epoch_end(self, epoch: int, metrics: dict[str, float]) -> str | None:
        metric = self.sweep.cfg.objective.metric
        if metric not in metrics:
            raise ObjectiveMissing(f"{self.sweep.path}: objective.metric: {metric} is not an epoch metric of these "
                                   f"runs; they have: {', '.join(sorted(metrics))}")
        value = metrics[metric]
        self.values.append(value)
        if math.isfinite(value):
            self.trial.report(value, epoch)
            if epoch + 1 < self.epochs and self.trial.should_prune():  # after the last epoch there is nothing to save
                return "pruned"
        return None

    def best(self) -> float | None:
        finite = [v for v in self.values if math.isfinite(v)]
        return (max if self.sweep.cfg.objective.direction == "maximize" else min)(finite) if finite else None


def run_trial(sweep: Sweep, study, trial) -> tuple[str, float | None, str]:
    """Train one trial as an ordinary run; tell the study how it ended; return (state, value, message)."""
    optuna = _optuna()
    number = trial.number
    params = {key: _suggest(trial, key, dim) for key, dim in sweep.cfg.space.items()}
    overrides = [f"{k}={_yaml(v)}" for k, v in {**sweep.cfg.set, **params}.items()]
    overrides += [f"name={sweep.name}-{number:04d}", f"train.monitor={sweep.cfg.objective.metric}"]
    trial.set_user_attr("overrides", overrides)
    fail = optuna.trial.TrialState.FAIL
    try:
        cfg = load_config(sweep.base, overrides)
        reporter = TrialReporter(sweep, trial, cfg.train.epochs)
        result = train(cfg, sweep.runs_dir, base_dir=sweep.base.parent, reporter=reporter)
    except KeyboardInterrupt:  # a second Ctrl-C: the run stopped without its last checkpoint
        _requeue(study, trial, params)
        raise _Stop() from None
    except UserError as e:  # diverged, or values that do not work together (e.g. shapes): this trial failed
        message = " ".join(str(e).split())
        run_dir = _newest_run(sweep, number)
        _link(sweep, number, run_dir)
        trial.set_user_attr("message", message)
        if run_dir:
            trial.set_user_attr("run", str(run_dir.resolve()))
        study.tell(trial, state=fail)
        if isinstance(e, ObjectiveMissing):
            raise
        return "failed", None, message
    _link(sweep, number, result.run_dir)
    trial.set_user_attr("run", str(result.run_dir.resolve()))
    if result.stopped == "interrupted":
        _requeue(study, trial, params)
        raise _Stop()
    value = reporter.best()
    if result.stopped == "pruned":
        study.tell(trial, state=optuna.trial.TrialState.PRUNED)
        return "pruned", value, f"pruned after epoch {len(reporter.values)}"
    if value is None:
        message = f"{sweep.cfg.objective.metric} was never finite"
        trial.set_user_attr("message", message)
        study.tell(trial, state=fail)
        return "failed", None, message
    study.tell(trial, value)
    return "complete", value, ""


def _requeue(study, trial, params: dict) -> None:
    """Record an interrupted trial (not counted) and queue its parameters again for the next worker."""
    trial.set_user_attr("interrupted", True)
    trial.set_user_attr("message", "interrupted; its parameters are queued again")
    study.tell(trial, state=_optuna().trial.TrialState.FAIL)
    study.enqueue_trial(params, skip_if_exists=False)


def _suggest(trial, key: str, dim):
    if isinstance(dim, LogUniform):
        return trial.suggest_float(key, *dim.loguniform, log=True)
    if isinstance(dim, Uniform):
        return trial.suggest_float(key, *dim.uniform)
    if isinstance(dim, IntRange):
        return trial.suggest_int(key, *dim.int_)
    return trial.suggest_categorical(key, dim.choice)


def _newest_run(sweep: Sweep, number: int) -> Path | None:
    try:
        return find_run(sweep.runs_dir / f"{sweep.name}-{number:04d}")
    except UserError:  # the run failed before its directory existed
        return None


def _link(sweep: Sweep, number: int, run_dir: Path | None) -> None:
    """trials/NNNN -> the trial's run directory (relative, so the two can move together)."""
    if run_dir is None:
        return
    link = sweep.dir / "trials" / f"{number:04d}"
    link.unlink(missing_ok=True)
    link.symlink_to(os.path.relpath(Path(run_dir).resolve(), link.parent.resolve()))


def work(sweep: Sweep, worker: int = 0, say=print) -> None:
    """Pull trials until the study holds ``sweep.trials`` of them (interrupted and surplus ones not counted)."""
    optuna = _optuna()
    seed = sweep.cfg.seed * 1000 + worker * 97 + len(_load_study(sweep, 0).get_trials(deepcopy=False))
    study = _load_study(sweep, seed)  # its own seed: workers must not all draw the same parameters
    while len(_counted(study)) < sweep.trials or _waiting(study):
        trial = study.ask()
        counted = [t.number for t in _counted(study)]
        if trial.number in counted[sweep.trials:]:  # another worker asked at the same moment: the budget is spent
            trial.set_user_attr("surplus", True)
            study.tell(trial, state=optuna.trial.TrialState.FAIL)
            break
        t0 = time.time()
        try:
            state, value, message = run_trial(sweep, study, trial)
        except BaseException:  # a Ctrl-C outside the run's own handler: the trial must not stay RUNNING
            if study.get_trials(deepcopy=False)[trial.number].state == optuna.trial.TrialState.RUNNING:
                _requeue(study, trial, trial.params)
            raise
        shown = f"{sweep.cfg.objective.metric} {value:.5g}" if value is not None else message
        say(f"trial {trial.number} ({state}, worker {worker}, {time.time() - t0:.0f} s): {shown}  "
            f"{', '.join(f'{k}={_short(v)}' for k, v in trial.params.items())}")


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _worker_main(sweep: Sweep, worker: int, threads: int) -> None:
    """A worker process: its own process group, so only the parent's forwarded signal stops it (once)."""
    os.setpgrp()
    from . import backend as B

    B.set_threads(threads)
    try:
        work(sweep, worker)
    except (_Stop, KeyboardInterrupt):
        os._exit(130)
    except UserError as e:
        print(f"error: {e}", flush=True)
        os._exit(2)


def run_sweep(sweep: Sweep, workers: int = 1, say=print) -> int:
    """Create the study, run ``workers`` worker processes (1: this process) to the end; 130 when interrupted."""
    create_study(sweep)
    write_text(sweep.dir / "sweep.yaml", sweep.path.read_text())
    if workers == 1:
        try:
            work(sweep, 0, say)
        except _Stop:
            return 130
        return 0
    from . import backend as B

    ctx = multiprocessing.get_context("spawn")
    procs = [ctx.Process(target=_worker_main, args=(sweep, i, max(1, B.threads() // workers)), daemon=False)
             for i in range(workers)]
    for p in procs:
        p.start()
    stopped = False

    def forward(signum, frame):
        nonlocal stopped
        for p in procs:
            if p.is_alive() and p.pid:
                os.kill(p.pid, signal.SIGINT if not stopped else signal.SIGKILL)
        stopped = True

    old = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        for p in procs:
            p.join()
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    codes = [p.exitcode for p in procs]
    if stopped or 130 in codes:
        return 130
    return next((c for c in codes if c), 0)


# -- the report ------------------------------------------------------------------------------


def trial_rows(sweep: Sweep) -> list[dict[str, Any]]:
    """Every trial the sweep ran: number, state, value, params, epochs, duration, run, message, overrides."""
    study = _load_study(sweep, 0)
    rows = []
    for t in study.get_trials(deepcopy=False):
        if t.user_attrs.get("surplus"):
            continue
        state = "interrupted" if t.user_attrs.get("interrupted") else \
            {"FAIL": "failed"}.get(t.state.name, t.state.name.lower())  # complete, pruned, running, waiting
        value = t.value if t.value is not None else (t.intermediate_values[max(t.intermediate_values)]
                                                     if t.intermediate_values else None)
        duration = (t.datetime_complete - t.datetime_start).total_seconds() \
            if t.datetime_complete and t.datetime_start else None
        rows.append({"number": t.number, "state": state, "value": value, "params": dict(t.params),
                     "epochs": len(t.intermediate_values), "duration_s": duration,
                     "run": _here(t.user_attrs.get("run")), "message": t.user_attrs.get("message", ""),
                     "overrides": t.user_attrs.get("overrides", [])})
    return rows


def _here(path: str | None) -> str | None:
    """A trial's run directory (stored absolute), relative to the working directory when below it."""
    if path is None or not Path(path).is_relative_to(Path.cwd()):
        return path
    return str(Path(path).relative_to(Path.cwd()))


def finish(sweep: Sweep) -> dict[str, Any]:
    """Write best.yaml (the best trial's config, ready to train) and, with the plot extra, history.png."""
    rows = trial_rows(sweep)
    done = [r for r in rows if r["state"] == "complete"]
    report: dict[str, Any] = {"rows": rows, "best": None, "best_yaml": None, "history_png": None}
    if done:
        best = (max if sweep.cfg.objective.direction == "maximize" else min)(done, key=lambda r: r["value"])
        report["best"] = best
        cfg = load_config(sweep.base, [*(o for o in best["overrides"] if not o.startswith("name=")),
                                       f"name={sweep.name}-best"])  # the trial's config, under a name of its own
        from .config import dump_config

        header = (f"# best of sweep {sweep.name} ({sweep.path}): trial {best['number']}, "
                  f"{sweep.cfg.objective.metric} {best['value']:.6g}\n# {', '.join(f'{k}: {v}' for k, v in best['params'].items())}\n")
        write_text(sweep.dir / "best.yaml", header + dump_config(cfg))
        report["best_yaml"] = sweep.dir / "best.yaml"
    try:
        from .plot import plot_history

        if any(r["value"] is not None for r in rows):
            report["history_png"] = plot_history(rows, sweep.dir / "history.png", sweep.cfg.objective.metric,
                                                 sweep.cfg.objective.direction)
    except UserError:  # no matplotlib: the table and best.yaml are the report
        pass
    return report

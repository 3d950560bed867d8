"""The training loop and a run's life cycle, generic over model types.

    exp = build_experiment(cfg)              # data, model, its named optimizers, schedule
    result = train(cfg, runs_root="runs")    # a new run directory, trained

The trainer loops over batches, hands each to ``model.train_step`` with a
``step(name, loss)`` callback (check, clip and apply that optimizer),
validates with ``model.eval_metrics``, schedules, logs, checkpoints and stops;
it never asks which type of model it holds. Loading a finished run and
evaluating it are application code (netcli/app/evaluate.py).

Everything a run needs to continue exactly where it stopped (parameters,
buffers, optimizer state, schedule position, both random generators, data order,
the partial epoch's metric sums) goes into each checkpoint.
"""
from __future__ import annotations

import math
import platform
import signal
import threading
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import TypeAdapter

from . import __version__
from . import backend as B
from . import distributed as D
from .config import ExperimentConfig, config_from_dict, differing_keys, dump_config, flatten, load_config, locate
from .data import DataInfo, Splits, load_data, select
from .errors import CheckpointError, ConfigError, RunError, UserError
from .layers.base import ShapeError, walk
from .models.base import LossError, Model
from .optim import Optimizer
from .params import ParamGroup
from .registry import DATASETS, MODELS, OPTIMIZERS
from .runs import (MetricsLog, append_text, assign_arrays, find_run, load_checkpoint, new_run_dir,
                   remove_temp_files, run_lock, save_checkpoint, write_json, write_text)
from .schedules import ScheduleError, make_schedule


class _SkipBatch(Exception):
    """nan_policy skip: drop this batch's gradients (the message says what went non-finite)."""


class Diverged(UserError):
    """Training met a non-finite loss or gradient (exit code 3: not a config mistake)."""

    exit_code = 3


@dataclass
class Experiment:
    cfg: ExperimentConfig
    splits: Any
    model: Model
    optimizers: dict[str, Optimizer]  # the model's named optimizers, each over its networks' parameters
    schedule: Any
    steps_per_epoch: int
    total_steps: int


def build_experiment(cfg: ExperimentConfig, base_dir: Path | None = None, progress=None) -> Experiment:
    """Load the data and build model, optimizer and schedule from a validated config.

    A layer that cannot take its input shape is reported as a config error at
    its key (``model.layers.3``), with the line of the file (or the --set) it came from.
    """
    B.set_float_dtype(cfg.dtype)

    def where(*key) -> str:
        return locate(cfg, key)

    with D.root_first():  # under mpiexec rank 0 fetches a data set once, the others then read the cache
        splits = load_data(cfg.data, cfg.seed, base_dir=base_dir, progress=progress)
    if len(splits.train_x) == 0:
        raise ConfigError([f"{where('data', 'val_fraction')}: no training samples ({len(splits.val_x)} of {len(splits.val_x)} "
                           f"went to validation with val_fraction {cfg.data.val_fraction})"])
    problem = D.batch_problem(len(splits.train_x), cfg.data.batch_size, len(splits.val_x))
    if problem:
        raise ConfigError([f"{where('data', 'batch_size')}: {problem}"])
    check_task(cfg, splits, where)
    model = build_model(cfg, splits.info(), where)
    try:  # the loss against the data's targets (a model built from a checkpoint's description has none)
        model.check_targets(splits.train_y)
    except LossError as e:
        raise ConfigError([f"{where('loss')}: {e}"]) from None
    optimizers = {name: OPTIMIZERS.build(cfg.optimizer, model.parameters.subset(f"{net}." for net in nets))
                  for name, nets in model.optimizers().items()}
    n, bs = len(splits.train_x), cfg.data.batch_size
    steps_per_epoch = n // bs if cfg.data.drop_last and n >= bs else math.ceil(n / bs)  # keep one batch at least
    smallest = min(bs, n) if cfg.data.drop_last or n % bs == 0 else n % bs
    need = max((layer.min_train_batch for net in model.networks().values() for _, layer in walk(net)), default=1)
    if smallest < need:
        raise ConfigError([f"{where('data', 'batch_size')}: training batches of {smallest} sample"
                           f"{'s' if smallest > 1 else ''} ({n} samples in batches of {bs}), but the model's "
                           f"batchnorm needs at least {need} to normalise over; "
                           + ("set data.drop_last: true or change batch_size" if smallest < min(bs, n)
                              else "use a larger batch_size")])
    total = steps_per_epoch * cfg.train.epochs
    if cfg.train.max_steps:
        total = min(total, cfg.train.max_steps)
    try:
        schedule = make_schedule(cfg.schedule, cfg.optimizer.lr, total)
    except ScheduleError as e:  # e.g. more warmup steps than the run has
        raise ConfigError([f"{where('schedule', *[e.key] if e.key else [])}: {e}"]) from None
    return Experiment(cfg, splits, model, optimizers, schedule, steps_per_epoch, total)


def check_task(cfg: ExperimentConfig, splits: Splits, where) -> None:
    """A model type that trains on one task refuses data of the other at ``model.type`` (a classifier would
    otherwise be built for None classes), naming where the targets came from and what would fit them."""
    wanted = MODELS.get(cfg.model.type).task
    if wanted is None or wanted == splits.task:
        return
    y = splits.train_y
    if splits.task == "regression":
        labels_too = bool(np.array_equal(y, np.round(y)) and y.min(initial=0) >= 0)  # could be read as classes
        fractional = y[y != np.round(y)]
        have = "whole numbers stored as floats, read as values" if labels_too else \
            f"real numbers (e.g. {(fractional if fractional.size else y).flat[0]:g})"
    else:
        labels_too = splits.class_names is None  # numbered classes can be fitted as values; named ones cannot
        have = "integers, read as class labels" if labels_too else "class labels"
    fits = [name for name, model in MODELS.items() if model.task == splits.task]
    hints = [f"use type: {' or '.join(fits)}"] if fits else []
    if labels_too and "task" in type(cfg.data).model_fields:
        as_what = "class labels" if wanted == "classification" else "values"
        hints.append(f"set data.task: {wanted} to read them as {as_what}")
    need = {"classification": "integer class labels", "regression": "real-valued targets"}[wanted]
    source = DATASETS.get(cfg.data.dataset).targets_source(cfg.data)
    raise ConfigError([f"{where('model', 'type')}: a {cfg.model.type} needs {need}, but the targets in {source} "
                       f"are {have}; {', or '.join(hints) or 'use another model type'}"])


def build_model(cfg: ExperimentConfig, info: DataInfo, where=lambda *key: ".".join(map(str, key))) -> Model:
    """The config's model, built for data described by ``info``; ``where(*key)`` names a config key in errors."""
    model = MODELS.get(cfg.model.type)(cfg.model, cfg.loss)
    try:
        model.setup(info, B.make_rng(cfg.seed))
    except ShapeError as e:
        raise ConfigError([f"{where('model', *e.path)}: {e.message}"]) from None
    except LossError as e:
        raise ConfigError([f"{where('loss')}: {e}"]) from None
    except MemoryError as e:  # numpy refuses an array larger than memory before touching any of it
        raise ConfigError([f"{where('model')}: the parameters do not fit in memory ({e}); make the layers smaller"]) \
            from None
    return model


# -- state ----------------------------------------------------------------------


@dataclass
class TrainState:
    step: int = 0            # optimizer steps taken
    epoch: int = 0           # epoch in progress (0-based)
    batch: int = 0           # next batch within the epoch
    best: float | None = None
    bad_epochs: int = 0      # epochs without improvement (early stopping)
    skipped: int = 0         # batches skipped by nan_policy: skip
    sums: dict[str, float] = field(default_factory=dict)  # this epoch's train metric sums x samples
    seen: int = 0            # samples in sums
    ranks: int = 1           # MPI ranks that trained up to here
    epoch_rng: dict | None = None  # data generator state at the start of this epoch
    log_lines: int = 0       # lines in metrics.jsonl when this state was saved (a resume cuts the rest)


def model_arrays(model: Model) -> dict[str, np.ndarray]:
    arrays = {f"param/{n}": p for n, p, _ in model.params()}
    arrays.update({f"buffer/{n}": b for n, b, _, _ in model.buffers()})
    return arrays


def save_run_checkpoint(path: Path, exp: Experiment, state: TrainState, model_rng, data_rng) -> None:
    arrays = model_arrays(exp.model)
    arrays.update({f"optim/{name}/{k}": v for name, opt in exp.optimizers.items()
                   for k, v in opt.state_dict().items()})
    meta = {"config": exp.cfg.model_dump(mode="json"), "data": exp.splits.info().model_dump(mode="json"),
            "netcli_version": __version__, "state": state.__dict__,
            "model_rng": model_rng.bit_generator.state, "data_rng": data_rng.bit_generator.state}
    save_checkpoint(path, arrays, meta)


def load_weights(path: Path, model: Model) -> dict:
    """Load a checkpoint's parameters and buffers into ``model``; return its meta."""
    arrays, meta = load_checkpoint(path)
    assign_model(path, arrays, model)
    return {"arrays": arrays, **meta}


def assign_model(path: Path, arrays: dict[str, np.ndarray], model: Model) -> None:
    """Copy a checkpoint's ``param/*`` and ``buffer/*`` arrays into ``model``; any mismatch is a CheckpointError."""
    assign_arrays(path, arrays, {n: p for n, p, _ in model.params()}, "param")
    assign_arrays(path, arrays, {n: b for n, b, _, _ in model.buffers()}, "buffer")


# -- the loop -----------------------------------------------------------------------


class Reporter:
    """Progress callbacks; the CLI renders them with rich, the library stays silent."""

    def start(self, run_dir: Path, step: int, total_steps: int, monitor: str) -> None:
        """The loop begins at optimizer step ``step`` of at most ``total_steps``; ``monitor``: the watched metric."""
    def epoch_start(self, epoch: int, epochs: int, batches: int, start: int) -> None: ...
    def step(self, state: TrainState, metrics: dict[str, float], lr: float) -> None: ...
    def epoch_end(self, epoch: int, metrics: dict[str, float]) -> str | None:
        """May return why the run should stop after this epoch (a sweep's pruner: "pruned"); it becomes the status."""
    def message(self, text: str) -> None: ...

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None: ...


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, float]
    stopped: str  # "finished" | "early_stopping" | "max_steps" | "interrupted"
    experiment: Experiment | None = None  # the trained model and its data


def train(cfg: ExperimentConfig | None, runs_root: Path | str = "runs", *, base_dir: Path | None = None,
          reporter: Reporter | None = None, resume: Path | None = None, init_from: Path | None = None,
          allow_config_change: bool = False, data_progress=None,
          overrides: list[str] = ()) -> TrainResult:
    """Train ``cfg`` in a new run directory, or continue the run ``resume``.

    A resumed run without ``cfg`` uses its own config.yaml with ``overrides`` applied (each change
    refused unless ``allow_config_change``). The run directory is locked (runs.run_lock) while it trains.
    """
    reporter = reporter or Reporter()
    D.init()
    if resume is not None and init_from is not None:
        raise UserError("--resume and --init-from cannot be combined: resume continues a run, "
                        "init-from starts a new one from another run's weights")
    if resume is not None:
        run_dir = find_run(resume)
        with _lock(run_dir):
            if cfg is None:
                cfg = load_config(run_dir / "config.yaml", overrides)
            return _resume(run_dir, cfg, reporter, base_dir, data_progress, allow_config_change)
    exp = build_experiment(cfg, base_dir, progress=data_progress)
    if init_from is not None:
        if Path(init_from).suffix == ".safetensors":  # a `netcli export` file
            from .export import read_safetensors

            src = Path(init_from)
            assign_model(src, read_safetensors(src)[0], exp.model)
        else:
            src = find_run(init_from)
            load_weights(_best_or_last(src), exp.model)
        reporter.message(f"initialised from {src}")
    run_dir = D.broadcast(new_run_dir(Path(runs_root), cfg.name, dump_config(cfg)) if D.is_root() else None)
    if D.size() > 1:
        threads = B.threads()
        reporter.message(f"training on {_ranks(D.size())} x {threads} thread{'s' if threads > 1 else ''}")
    with _lock(run_dir):
        return _run(Trainer(exp, run_dir, reporter, exp.model.rng, np.random.default_rng([cfg.seed, 1])), TrainState())


def _lock(run_dir: Path):
    """The run's lock, held by rank 0 for all ranks under mpiexec."""
    return run_lock(run_dir) if D.is_root() else nullcontext()


def _ranks(n: int) -> str:
    return f"{n} MPI rank{'s' if n > 1 else ''}" if n > 1 else "1 process"


def _resume(run_dir: Path, cfg: ExperimentConfig, reporter: Reporter, base_dir: Path | None,
            data_progress, allow_config_change: bool) -> TrainResult:
    """Continue ``run_dir`` from checkpoints/last.npz with ``cfg``; the caller holds the run's lock."""
    if D.is_root():
        remove_temp_files(run_dir)  # of writes a killed process never finished; nothing else writes them now
    ckpt = run_dir / "checkpoints" / "last.npz"
    if not ckpt.exists():
        raise RunError(f"{run_dir}: no checkpoint to resume from (the run stopped before writing its first); "
                       "start it again")
    arrays, meta = load_checkpoint(ckpt)
    changes = _config_changes(ckpt, meta, cfg, allow_config_change)
    exp = build_experiment(cfg, base_dir, progress=data_progress)
    data_rng = np.random.default_rng([cfg.seed, 1])
    state = restore(ckpt, arrays, meta, exp, data_rng)
    if D.is_root():
        if changes:
            append_text(run_dir / "config_changes.log", f"{time.strftime('%Y-%m-%d %H:%M:%S')} step {state.step}: "
                                                         f"resumed with changes: {', '.join(changes)}\n")
            write_text(run_dir / "config.yaml", dump_config(cfg))
        MetricsLog(run_dir / "metrics.jsonl", state.log_lines).truncate()
    ranks = "" if state.ranks == D.size() == 1 else f" with {_ranks(D.size())} (it was trained with {_ranks(state.ranks)})"
    reporter.message(f"resuming {run_dir} at step {state.step} (epoch {state.epoch + 1}){ranks}")
    return _run(Trainer(exp, run_dir, reporter, exp.model.rng, data_rng), state)


def _run(trainer: Trainer, state: TrainState) -> TrainResult:
    """Run the loop; a diverged run records its summary (for `netcli runs` and sweeps), then the error goes on."""
    D.broadcast_arrays(list(model_arrays(trainer.exp.model).values()))  # rank 0's parameters on every rank
    try:
        return trainer.run(state)
    except Diverged as e:
        trainer.write_summary(state, "diverged", {}, 0, message=str(e))
        raise
    finally:
        trainer.log.close()


def _config_changes(ckpt: Path, meta: dict, cfg: ExperimentConfig, allow_change: bool) -> list[str]:
    """How ``cfg`` differs from the config the checkpoint was trained with; an error unless allowed."""
    try:
        saved = config_from_dict(meta["config"], str(ckpt))
    except (KeyError, TypeError, ConfigError):
        raise CheckpointError(f"{ckpt}: holds no valid netcli config; it was not written by this run") from None
    changes = _diff(saved.model_dump(mode="json"), cfg.model_dump(mode="json"))
    if changes and not allow_change:
        raise UserError(f"{ckpt.parent.parent}: the config differs from the one the run was trained with "
                        f"({'; '.join(changes)}); pass --allow-config-change to resume with the new one")
    return changes


def _diff(a: dict, b: dict) -> list[str]:
    """``key: old -> new`` for each dotted config key whose value differs."""
    fa, fb = flatten(a), flatten(b)
    return [f"{k}: {fa.get(k)!r} -> {fb.get(k)!r}" for k in differing_keys([fa, fb])]


def restore(ckpt: Path, arrays: dict, meta: dict, exp: Experiment, data_rng) -> TrainState:
    """Put a checkpoint's training state into ``exp``: params, buffers, optimizer, generators; any mismatch is an error."""
    assign_model(ckpt, arrays, exp.model)
    try:
        for name, opt in exp.optimizers.items():
            prefix = f"optim/{name}/"
            opt.load_state_dict({k[len(prefix):]: v for k, v in arrays.items() if k.startswith(prefix)})
        state = TypeAdapter(TrainState).validate_python(meta["state"])
        exp.model.rng.bit_generator.state = meta["model_rng"]
        data_rng.bit_generator.state = meta["data_rng"]
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"{ckpt}: cannot resume from it ({' '.join(str(e).split())})") from None
    return state


def _best_or_last(run_dir: Path) -> Path:
    best = run_dir / "checkpoints" / "best.npz"
    return best if best.exists() else run_dir / "checkpoints" / "last.npz"


class Trainer:
    def __init__(self, exp: Experiment, run_dir: Path, reporter: Reporter, model_rng, data_rng):
        self.exp, self.run_dir, self.reporter = exp, run_dir, reporter
        self.model_rng, self.data_rng = model_rng, data_rng
        self.log = MetricsLog(run_dir / "metrics.jsonl") if D.is_root() else _Unwritten(run_dir / "metrics.jsonl")
        self.stop_requested: str | None = None  # a signal arrived (set by the handler)
        self.stop_agreed: str | None = None  # ... to this or another rank, as of the last step's all-reduce
        self.stopped_by_reporter: str | None = None
        self.step_metrics: dict[str, float] | None = None  # the step's metrics over the global batch (agree)
        self.grads_from_output = [(f"{path}{key}", layer.type_name, g)  # backward order: output to input
                                  for name, net in exp.model.networks().items()
                                  for path, layer in walk(net, f"{name}.") for key, g in layer.grads.items()][::-1]
        t = exp.cfg.train
        self.monitor = t.monitor or (t.early_stopping.metric if t.early_stopping and t.early_stopping.metric
                                     else exp.model.monitor)
        self.mode = t.monitor_mode or exp.model.metric_mode(self.monitor)

    def checkpoint(self, state: TrainState, name: str = "last") -> None:
        """Save ``state`` as checkpoints/NAME.npz, replacing the previous one only once the new one is whole."""
        bad = next((n for n, p, _ in self.exp.model.params() if not np.isfinite(p).all()), None)
        if bad:  # an update overflowed: keep the last good checkpoint
            raise Diverged(f"step {state.step}: parameter {bad} is not finite after the update; "
                           f"training stopped, {self.last_good()}")
        state.log_lines, state.ranks = self.log.lines, D.size()
        if not D.is_root():
            return
        save_run_checkpoint(self.run_dir / "checkpoints" / f"{name}.npz", self.exp, state,
                            self.model_rng, self.data_rng)

    def run(self, state: TrainState) -> TrainResult:
        exp, cfg, self.t0 = self.exp, self.exp.cfg, time.time()
        x, y, n = exp.splits.train_x, exp.splits.train_y, len(exp.splits.train_x)
        bs, spe, samples = cfg.data.batch_size, exp.steps_per_epoch, 0
        metrics: dict[str, float] = {}  # of the last finished epoch
        self.log.lines = state.log_lines
        if cfg.train.tensorboard and D.is_root():
            from .tensorboard import TensorBoardSink

            self.log.sinks.append(TensorBoardSink(self.run_dir / "tensorboard", state.step))
        total = cfg.train.epochs * spe
        self.reporter.start(self.run_dir, state.step, min(total, cfg.train.max_steps or total), self.monitor)
        stopped = self.stop_reason(state)
        if stopped or state.epoch >= cfg.train.epochs:  # a resumed run that was done: keep its files as they are
            stopped = stopped or "finished"
            self.reporter.message(f"{self.run_dir}: nothing left to train ({stopped} at step {state.step})")
            return TrainResult(self.run_dir, metrics, stopped, exp)
        # numpy's overflow warnings are noise here: the divergence guard names what went non-finite
        with _graceful_stop(self), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            while state.epoch < cfg.train.epochs and not stopped:
                if state.epoch_rng is None:
                    state.epoch_rng = self.data_rng.bit_generator.state
                self.data_rng.bit_generator.state = state.epoch_rng
                order = self.data_rng.permutation(n) if cfg.data.shuffle else np.arange(n)
                self.reporter.epoch_start(state.epoch, cfg.train.epochs, spe, state.batch)
                while state.batch < spe and not stopped:
                    idx = order[state.batch * bs:(state.batch + 1) * bs]
                    mine = D.my_rows(idx)  # this rank's slice of the global batch (all of it in one process)
                    self.train_step(state, B.as_input(x[mine]), B.as_input(y[mine]), len(idx))
                    samples += len(idx)
                    stopped = self.stop_reason(state)
                if state.batch < spe or stopped == "interrupted":
                    break  # inside the epoch, or at its end by a signal: the epoch ends on resume
                metrics = self.end_epoch(state)
                stopped = stopped or self.stop_reason(state)
            if state.seen:  # stopped inside an epoch: report its partial means (and, at max_steps, validate)
                metrics = {f"train_{k}": v for k, v in self._epoch_means(state).items()}
                if stopped == "max_steps" and self.has_val():
                    metrics.update(self.validate(state))
            self.checkpoint(state)
        stopped = stopped or "finished"
        if stopped == "interrupted":
            self.reporter.message(f"{self.stop_requested or self.stop_agreed}: checkpoint written at step "
                                  f"{state.step}; continue with: netcli train --resume {self.run_dir}")
        self.write_summary(state, stopped, metrics, samples)
        return TrainResult(self.run_dir, metrics, stopped, exp)

    def write_summary(self, state: TrainState, status: str, metrics: dict[str, float], samples: int,
                      message: str | None = None) -> None:
        if not D.is_root():
            return
        wall = time.time() - self.t0
        write_json(self.run_dir / "summary.json", {
            "status": status, "steps": state.step, "epochs_completed": state.epoch, "metrics": metrics,
            "best": {self.monitor: state.best}, "wall_time_s": round(wall, 3),
            "samples_per_s": round(samples / wall, 1) if wall > 0 else None,
            "params": self.exp.model.num_params(), "ranks": D.size(), "versions": versions(), **({"message": message} if message else {})})

    def stop_reason(self, state: TrainState) -> str | None:
        """Why the run stops at this step boundary, if it does (max_steps first: a run that is done is done)."""
        max_steps = self.exp.cfg.train.max_steps
        if max_steps and state.step >= max_steps:
            return "max_steps"
        if self.stop_requested if D.world() is None else self.stop_agreed:  # ranks stop at the same step
            return "interrupted"
        if self.should_stop_early(state):
            return "early_stopping"
        if self.stopped_by_reporter:
            return self.stopped_by_reporter
        return None

    def train_step(self, state: TrainState, xb, yb, total: int) -> None:
        """One batch through the model's own step; each optimizer it steps is checked, clipped and applied.

        ``xb`` is this rank's slice of a global batch of ``total`` samples (all of it in one process):
        under mpiexec each optimizer's gradients are averaged over the ranks before they are checked
        (apply), the metrics and the stop flag with the last optimizer's.
        """
        exp, tc = self.exp, self.exp.cfg.train
        lr = exp.schedule(state.step)
        before = self.skippable_state() if tc.nan_policy == "skip" else None
        self.step_metrics = None
        try:
            with D.step_batch(len(xb), total):
                metrics = exp.model.train_step(
                    xb, yb, lambda name, loss, metrics=None: self.apply(name, loss, lr, state, metrics))
                if self.step_metrics is None:  # the model did not hand them to its last step: one more all-reduce
                    self.agree(metrics, D.reduce_step(ParamGroup([]), self.step_values(metrics)))
        except _SkipBatch as skip:
            self.restore_state(before)
            state.skipped += 1
            exp.model.parameters.zero_grad()
            self.reporter.message(f"step {state.step + 1}: skipped a batch ({skip}); "
                                  f"{state.skipped} of at most {tc.max_skips} skipped")
            state.batch += 1
            return
        metrics = self.step_metrics
        state.step += 1
        state.batch += 1
        for k, v in metrics.items():
            state.sums[k] = state.sums.get(k, 0.0) + v * total
        state.seen += total
        self.reporter.step(state, metrics, lr)
        if state.step % tc.log_every == 0:
            self.log.write(state.step, state.epoch, "train", {**metrics, "lr": lr})
        if tc.checkpoint_every and state.step % tc.checkpoint_every == 0:
            self.checkpoint(state)

    def skippable_state(self) -> tuple:
        """Copies of what a batch may change before it is found non-finite and skipped: the buffers (the
        forward folds the batch into batch-norm statistics), the model's generator, and the parameters and
        optimizer states (a model with several optimizers may have stepped one before the next finds a NaN).
        Taken only under nan_policy skip."""
        exp = self.exp
        arrays = [b for _, b, _, _ in exp.model.buffers()] + [p for _, p, _ in exp.model.params()]
        states = {name: opt.state_dict() for name, opt in exp.optimizers.items()}
        return [(a, a.copy()) for a in arrays], states, self.model_rng.bit_generator.state

    def restore_state(self, saved: tuple) -> None:
        """Undo a skipped batch: every array and generator as skippable_state() found them."""
        arrays, states, rng = saved
        for a, copy in arrays:
            a[...] = copy
        for name, d in states.items():
            self.exp.optimizers[name].load_state_dict(d)
        self.model_rng.bit_generator.state = rng

    def apply(self, name: str, loss: float, lr: float, state: TrainState, metrics: dict[str, float] | None) -> None:
        """The update of optimizer ``name``: refuse non-finite values (skip or stop), clip, step.

        Under mpiexec the gradients, the loss and (with the model's last step) the batch's ``metrics`` and
        the stop flag are averaged over the ranks first, in one all-reduce.
        """
        tc, opt = self.exp.cfg.train, self.exp.optimizers[name]
        loss, *rest = D.reduce_step(opt.group, [loss, *(self.step_values(metrics) if metrics is not None else [])])
        if metrics is not None:
            self.agree(metrics, rest)
        bad = self.non_finite(loss)
        if bad:
            if tc.nan_policy == "skip" and state.skipped < tc.max_skips:
                raise _SkipBatch(bad)
            skipped = f" after {state.skipped} skipped batches" if tc.nan_policy == "skip" else ""
            raise Diverged(f"step {state.step + 1}: {bad}; training stopped{skipped}, {self.last_good()}")
        if tc.divergence_threshold is not None and loss > tc.divergence_threshold:  # before this update
            raise Diverged(f"step {state.step + 1}: loss {loss:.4g} exceeds train.divergence_threshold "
                           f"{tc.divergence_threshold:g}; training stopped, {self.last_good()}")
        if tc.clip_value:
            opt.group.clip_grad_value(tc.clip_value)
        if tc.clip_norm:
            opt.group.clip_grad_norm(tc.clip_norm)
        opt.step(lr)

    def step_values(self, metrics: dict[str, float]) -> list[float]:
        """What a step's all-reduce averages beside the gradients: the metrics (in the model's order, the same
        on every rank) and whether this rank was asked to stop (> 0 after it: some rank was)."""
        return [*metrics.values(), float(self.stop_requested is not None)]

    def agree(self, metrics: dict[str, float], values: list[float]) -> None:
        """Take the averaged ``step_values``: the step's metrics, and a stop that any rank was asked for."""
        *means, stop = values
        self.step_metrics = dict(zip(metrics, means))
        if stop:
            self.stop_agreed = self.stop_requested or "a signal to another rank"

    def non_finite(self, loss: float) -> str | None:
        """Name what went non-finite: the loss, and the gradient nearest the output (where it started)."""
        grad = None if self.exp.model.parameters.grads_finite() else \
            next((f"gradient of {name} ({kind} layer) is not finite" for name, kind, g in self.grads_from_output
                  if not np.isfinite(g).all()), None)
        if math.isfinite(loss):
            return grad and f"{grad} (loss {loss:.4g})"
        return f"loss is {loss}" + (f"; {grad}" if grad else "")

    def last_good(self) -> str:
        last = self.run_dir / "checkpoints" / "last.npz"
        return f"last good checkpoint: {last}" if last.exists() else "no checkpoint had been written yet"

    def end_epoch(self, state: TrainState) -> dict[str, float]:
        """Log the epoch's metrics, validate, track the best value; return train_* and val_* metrics."""
        cfg = self.exp.cfg
        train_means = self._epoch_means(state)
        self.log.write(state.step, state.epoch, "train_epoch", train_means)
        val = self.validate(state) if (state.epoch + 1) % cfg.train.eval_every == 0 and self.has_val() else {}
        watched = {**{f"train_{k}": v for k, v in train_means.items()}, **val}
        improved = False
        if self.monitor in watched:
            value = watched[self.monitor]
            delta = cfg.train.early_stopping.min_delta if cfg.train.early_stopping else 0.0
            improved = state.best is None or (value > state.best + delta if self.mode == "max"
                                              else value < state.best - delta)
            if improved:
                state.best = value
                state.bad_epochs = 0
            else:
                state.bad_epochs += 1
        self.stopped_by_reporter = D.broadcast(self.reporter.epoch_end(state.epoch, watched))  # rank 0 reports
        state.epoch, state.batch, state.sums, state.seen, state.epoch_rng = state.epoch + 1, 0, {}, 0, None
        if improved:
            self.checkpoint(state, "best")
        self.checkpoint(state)
        return watched

    def has_val(self) -> bool:
        return self.exp.splits.val_x is not None and len(self.exp.splits.val_x) > 0

    def validate(self, state: TrainState) -> dict[str, float]:
        exp, x, y = self.exp, self.exp.splits.val_x, self.exp.splits.val_y
        if D.world() is None:
            val = {f"val_{k}": v for k, v in exp.model.eval_metrics(x, y, exp.cfg.data.batch_size).items()}
        else:  # each rank its part of the split, then the sums of all parts
            part = D.my_slice(len(x))
            means = exp.model.eval_metrics(select(x, part), y[part], exp.cfg.data.batch_size)
            sums = D.reduce_sums({k: v * (part.stop - part.start) for k, v in means.items()})
            val = {f"val_{k}": v / len(x) for k, v in sums.items()}
        self.log.write(state.step, state.epoch, "val", val)
        return val

    def should_stop_early(self, state: TrainState) -> bool:
        es = self.exp.cfg.train.early_stopping
        return bool(es and state.bad_epochs >= es.patience)

    @staticmethod
    def _epoch_means(state: TrainState) -> dict[str, float]:
        return {k: v / state.seen for k, v in state.sums.items()} if state.seen else {}


class _Unwritten(MetricsLog):
    """The metrics log of a rank other than 0: counts what rank 0 writes, writes nothing."""

    def write(self, step: int, epoch: int, split: str, metrics: dict[str, float]) -> None:
        self.lines += len(metrics)


@contextmanager
def _graceful_stop(trainer: Trainer):
    """SIGINT/SIGTERM ask the loop to checkpoint and stop at the next step boundary."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def ask(signum, frame):
        if trainer.stop_requested:  # a second Ctrl-C stops at once
            raise KeyboardInterrupt
        trainer.stop_requested = signal.Signals(signum).name

    old = {s: signal.signal(s, ask) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, h in old.items():
            signal.signal(s, h)


def versions() -> dict[str, str]:
    import pydantic

    return {"netcli": __version__, "numpy": np.__version__, "pydantic": pydantic.VERSION,
            "python": platform.python_version()}


# -- from a file to a built experiment --------------------------------------------------


def prepare_config(path: Path, overrides: list[str] = ()) -> ExperimentConfig:
    return load_config(path, overrides)


def prepare_experiment(path: Path, overrides: list[str] = ()) -> tuple[ExperimentConfig, Experiment]:
    """Validate a config file and build it (data, model), so shape errors surface before training."""
    cfg = prepare_config(path, overrides)
    return cfg, build_experiment(cfg, Path(path).parent)

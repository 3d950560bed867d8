"""The training loop, evaluation and a run's life cycle.

    exp = build_experiment(cfg)              # data, model, optimizer, schedule
    result = train(cfg, runs_root="runs")    # a new run directory, trained
    metrics = evaluate_run("runs/x/<run>")   # test-split metrics -> eval.json

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
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from . import __version__
from . import backend as B
from .config import ExperimentConfig, config_from_dict, dump_config, locate
from .data import load_data
from .errors import ConfigError, RunError, UserError
from .layers.base import ShapeError
from .models.base import Model
from .optim import clip_grad_norm, clip_grad_value
from .registry import MODELS, OPTIMIZERS
from .runs import (MetricsLog, assign_arrays, find_run, load_checkpoint, new_run_dir, save_checkpoint,
                   write_json, write_text)
from .schedules import make_schedule


class Diverged(UserError):
    """Training met a non-finite loss or gradient (exit code 3: not a config mistake)."""

    exit_code = 3


@dataclass
class Experiment:
    cfg: ExperimentConfig
    splits: Any
    model: Model
    optimizer: Any
    schedule: Any
    steps_per_epoch: int
    total_steps: int


def build_experiment(cfg: ExperimentConfig, base_dir: Path | None = None, progress=None,
                     source: Path | None = None) -> Experiment:
    """Load the data and build model, optimizer and schedule from a validated config.

    A layer that cannot take its input shape is reported as a config error at
    its key (``model.layers.3``), with the line in ``source`` when given.
    """
    B.set_float_dtype(cfg.dtype)
    splits = load_data(cfg.data, cfg.seed, base_dir=base_dir, progress=progress)
    model = MODELS.get(cfg.model.type)(cfg.model, cfg.loss)
    try:
        model.setup(splits, B.make_rng(cfg.seed))
    except ShapeError as e:
        key = ("model", *e.path)
        where = locate(source, key) if source else "<config>"
        raise ConfigError([f"{where}: {'.'.join(map(str, key))}: {e.message}"]) from None
    optimizer = OPTIMIZERS.get(cfg.optimizer.type)(cfg.optimizer, model.params())
    steps_per_epoch = math.ceil(len(splits.train_x) / cfg.data.batch_size)
    total = steps_per_epoch * cfg.train.epochs
    if cfg.train.max_steps:
        total = min(total, cfg.train.max_steps)
    try:
        schedule = make_schedule(cfg.schedule, cfg.optimizer.lr, total)
    except ValueError as e:  # e.g. more warmup steps than the run has
        raise ConfigError([f"{locate(source, ('schedule',)) if source else '<config>'}: schedule: {e}"]) from None
    return Experiment(cfg, splits, model, optimizer, schedule, steps_per_epoch, total)


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
    epoch_rng: dict | None = None  # data generator state at the start of this epoch


def model_arrays(model: Model) -> dict[str, np.ndarray]:
    arrays = {f"param/{n}": p for n, p, _ in model.params()}
    arrays.update({f"buffer/{n}": b for n, b, _, _ in model.buffers()})
    return arrays


def save_run_checkpoint(path: Path, exp: Experiment, state: TrainState, model_rng, data_rng) -> None:
    arrays = model_arrays(exp.model)
    arrays.update({f"optim/{k}": v for k, v in exp.optimizer.state_dict().items()})
    meta = {"config": exp.cfg.model_dump(mode="json"), "state": state.__dict__,
            "model_rng": model_rng.bit_generator.state, "data_rng": data_rng.bit_generator.state}
    save_checkpoint(path, arrays, meta)


def load_weights(path: Path, model: Model) -> dict:
    """Load a checkpoint's parameters and buffers into ``model``; return its meta."""
    arrays, meta = load_checkpoint(path)
    targets = {k.split("/", 1)[1]: v for k, v in model_arrays(model).items() if k.startswith("param/")}
    assign_arrays(path, arrays, targets, "param")
    buffers = {k.split("/", 1)[1]: v for k, v in model_arrays(model).items() if k.startswith("buffer/")}
    assign_arrays(path, arrays, buffers, "buffer")
    return {"arrays": arrays, **meta}


# -- the loop -----------------------------------------------------------------------


class Reporter:
    """Progress callbacks; the CLI renders them with rich, the library stays silent."""

    def epoch_start(self, epoch: int, epochs: int, batches: int, start: int) -> None: ...
    def step(self, state: TrainState, metrics: dict[str, float], lr: float) -> None: ...
    def epoch_end(self, epoch: int, metrics: dict[str, float]) -> None: ...
    def message(self, text: str) -> None: ...


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict[str, float]
    stopped: str  # "finished" | "early_stopping" | "max_steps" | "interrupted"


def train(cfg: ExperimentConfig, runs_root: Path | str = "runs", *, base_dir: Path | None = None,
          reporter: Reporter | None = None, resume: Path | None = None, init_from: Path | None = None,
          allow_config_change: bool = False, data_progress=None, source: Path | None = None) -> TrainResult:
    """Train ``cfg`` in a new run directory (or continue the run ``resume``)."""
    reporter = reporter or Reporter()
    if resume is not None and init_from is not None:
        raise UserError("--resume and --init-from cannot be combined: resume continues a run, "
                        "init-from starts a new one from another run's weights")
    if resume is not None:
        run_dir = find_run(resume)
        ckpt = run_dir / "checkpoints" / "last.npz"
        arrays, meta = load_checkpoint(ckpt)
        cfg = _resume_config(run_dir, meta, cfg, allow_config_change)
    exp = build_experiment(cfg, base_dir, progress=data_progress, source=source)
    model_rng, data_rng = exp.model.rng, np.random.default_rng([cfg.seed, 1])
    state = TrainState()
    if resume is not None:
        assign_arrays(ckpt, arrays, {n: p for n, p, _ in exp.model.params()}, "param")
        assign_arrays(ckpt, arrays, {n: b for n, b, _, _ in exp.model.buffers()}, "buffer")
        exp.optimizer.load_state_dict({k[6:]: v for k, v in arrays.items() if k.startswith("optim/")})
        state = TrainState(**meta["state"])
        model_rng.bit_generator.state = meta["model_rng"]
        data_rng.bit_generator.state = meta["data_rng"]
        MetricsLog(run_dir / "metrics.jsonl").truncate_after(state.step)
        reporter.message(f"resuming {run_dir} at step {state.step} (epoch {state.epoch + 1})")
    else:
        if init_from is not None:
            src = find_run(init_from)
            load_weights(_best_or_last(src), exp.model)
            reporter.message(f"initialised from {src}")
        run_dir = new_run_dir(Path(runs_root), cfg.name)
        write_text(run_dir / "config.yaml", dump_config(cfg))
    return Trainer(exp, run_dir, reporter, model_rng, data_rng).run(state)


def _resume_config(run_dir: Path, meta: dict, cfg: ExperimentConfig | None, allow_change: bool) -> ExperimentConfig:
    saved = config_from_dict(meta["config"], str(run_dir / "config.yaml"))
    if cfg is None or cfg.model_dump() == saved.model_dump():
        return saved
    if not allow_change:
        raise UserError(f"{run_dir}: the config differs from the run's "
                        f"({', '.join(_diff(saved.model_dump(), cfg.model_dump()))}); "
                        "pass --allow-config-change to resume with the new one")
    changes = _diff(saved.model_dump(), cfg.model_dump())
    with open(run_dir / "config_changes.log", "a") as f:
        f.write(f"{time.strftime('%Y-%m-%d %H:%M:%S')} resumed with changes: {', '.join(changes)}\n")
    write_text(run_dir / "config.yaml", dump_config(cfg))
    return cfg


def _diff(a, b, prefix="") -> list[str]:
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(set(a) | set(b), key=str) for d in _diff(a.get(k), b.get(k), f"{prefix}{k}.")]
    return [] if a == b else [f"{prefix.rstrip('.')}: {a!r} -> {b!r}"]


def _best_or_last(run_dir: Path) -> Path:
    best = run_dir / "checkpoints" / "best.npz"
    return best if best.exists() else run_dir / "checkpoints" / "last.npz"


class Trainer:
    def __init__(self, exp: Experiment, run_dir: Path, reporter: Reporter, model_rng, data_rng):
        self.exp, self.run_dir, self.reporter = exp, run_dir, reporter
        self.model_rng, self.data_rng = model_rng, data_rng
        self.log = MetricsLog(run_dir / "metrics.jsonl")
        self.stop_requested: str | None = None
        t = exp.cfg.train
        self.monitor = t.monitor or (t.early_stopping.metric if t.early_stopping and t.early_stopping.metric
                                     else exp.model.monitor)
        self.mode = "max" if self.monitor.endswith(("accuracy", "acc")) else "min"

    def checkpoint(self, state: TrainState, name: str = "last") -> None:
        save_run_checkpoint(self.run_dir / "checkpoints" / f"{name}.npz", self.exp, state,
                            self.model_rng, self.data_rng)

    def run(self, state: TrainState) -> TrainResult:
        exp, cfg, t0 = self.exp, self.exp.cfg, time.time()
        x, y, n = exp.splits.train_x, exp.splits.train_y, len(exp.splits.train_x)
        bs, stopped, samples = cfg.data.batch_size, "finished", 0
        val_metrics: dict[str, float] = {}
        with _graceful_stop(self):
            while state.epoch < cfg.train.epochs and stopped == "finished":
                if state.epoch_rng is None:
                    state.epoch_rng = self.data_rng.bit_generator.state
                self.data_rng.bit_generator.state = state.epoch_rng
                order = self.data_rng.permutation(n) if cfg.data.shuffle else np.arange(n)
                self.reporter.epoch_start(state.epoch, cfg.train.epochs, exp.steps_per_epoch, state.batch)
                while state.batch < exp.steps_per_epoch:
                    idx = order[state.batch * bs:(state.batch + 1) * bs]
                    self.train_step(state, x[idx], y[idx])
                    samples += len(idx)
                    if state.step >= exp.total_steps and cfg.train.max_steps:
                        stopped = "max_steps"
                        break
                    if self.stop_requested:
                        stopped = "interrupted"
                        break
                if stopped == "interrupted":
                    break
                val_metrics = self.end_epoch(state)
                if self.should_stop_early(state):
                    stopped = "early_stopping"
            self.checkpoint(state)
        if stopped == "interrupted":
            self.reporter.message(f"{self.stop_requested}: checkpoint written at step {state.step}; "
                                  f"continue with: netcli train --resume {self.run_dir}")
        wall = time.time() - t0
        final = {**{f"train_{k}": v for k, v in self._epoch_means(state).items()}, **val_metrics}
        write_json(self.run_dir / "summary.json", {
            "status": stopped, "steps": state.step, "epochs_completed": state.epoch, "metrics": final,
            "best": {self.monitor: state.best}, "wall_time_s": round(wall, 3),
            "samples_per_s": round(samples / wall, 1) if wall > 0 else None,
            "params": exp.model.num_params(), "versions": versions()})
        return TrainResult(self.run_dir, final, stopped)

    def train_step(self, state: TrainState, xb, yb) -> None:
        exp, tc = self.exp, self.exp.cfg.train
        metrics = exp.model.train_batch(xb, yb)
        grads = [g for _, _, g in exp.model.params()]
        bad = self.non_finite(metrics["loss"])
        if bad:
            if tc.nan_policy == "skip" and state.skipped < tc.max_skips:
                state.skipped += 1
                for g in grads:
                    g[...] = 0
                self.reporter.message(f"step {state.step + 1}: skipped a batch ({bad})")
                state.batch += 1
                return
            raise Diverged(f"step {state.step + 1}: {bad}; training stopped, last good checkpoint: "
                           f"{self.run_dir / 'checkpoints' / 'last.npz'}")
        if tc.clip_value:
            clip_grad_value(grads, tc.clip_value)
        if tc.clip_norm:
            clip_grad_norm(grads, tc.clip_norm)
        lr = exp.schedule(state.step)
        exp.optimizer.step(lr)
        state.step += 1
        state.batch += 1
        for k, v in metrics.items():
            state.sums[k] = state.sums.get(k, 0.0) + v * len(xb)
        state.seen += len(xb)
        self.reporter.step(state, metrics, lr)
        if state.step % tc.log_every == 0:
            self.log.write(state.step, state.epoch, "train", {**metrics, "lr": lr})
        if tc.checkpoint_every and state.step % tc.checkpoint_every == 0:
            self.checkpoint(state)

    def non_finite(self, loss: float) -> str | None:
        """Name what went non-finite: the loss, or the first parameter whose gradient did."""
        if not math.isfinite(loss):
            return f"loss is {loss}"
        for name, _, g in self.exp.model.params():
            if not np.isfinite(g).all():
                return f"gradient of {name} is not finite (loss {loss:.4g})"
        return None

    def end_epoch(self, state: TrainState) -> dict[str, float]:
        exp, cfg = self.exp, self.exp.cfg
        train_means = self._epoch_means(state)
        self.log.write(state.step, state.epoch, "train_epoch", train_means)
        val: dict[str, float] = {}
        improved = False
        if (state.epoch + 1) % cfg.train.eval_every == 0 and exp.splits.val_x is not None and len(exp.splits.val_x):
            val = {f"val_{k}": v for k, v in evaluate(exp.model, exp.splits.val_x, exp.splits.val_y,
                                                      cfg.data.batch_size).items()}
            self.log.write(state.step, state.epoch, "val", val)
        watched = {**{f"train_{k}": v for k, v in train_means.items()}, **val}
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
        self.reporter.epoch_end(state.epoch, {**{f"train_{k}": v for k, v in train_means.items()}, **val})
        state.epoch, state.batch, state.sums, state.seen, state.epoch_rng = state.epoch + 1, 0, {}, 0, None
        if improved:
            self.checkpoint(state, "best")
        self.checkpoint(state)
        return val

    def should_stop_early(self, state: TrainState) -> bool:
        es = self.exp.cfg.train.early_stopping
        return bool(es and state.bad_epochs >= es.patience)

    @staticmethod
    def _epoch_means(state: TrainState) -> dict[str, float]:
        return {k: v / state.seen for k, v in state.sums.items()} if state.seen else {}


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


# -- evaluation -----------------------------------------------------------------------


def evaluate(model: Model, x, y, batch_size: int = 256) -> dict[str, float]:
    """Sample-weighted means of the model's eval metrics over a whole split."""
    sums: dict[str, float] = {}
    for i in range(0, len(x), batch_size):
        m = model.eval_batch(x[i:i + batch_size], y[i:i + batch_size])
        for k, v in m.items():
            sums[k] = sums.get(k, 0.0) + v * len(x[i:i + batch_size])
    return {k: v / len(x) for k, v in sums.items()}


def load_run(run: Path | str, checkpoint: str = "best", base_dir: Path | None = None) -> tuple[Path, Experiment]:
    """Rebuild a run's experiment from its config.yaml and load its best (or last) checkpoint."""
    run_dir = find_run(run)
    from .config import load_config  # the saved, resolved config

    cfg = load_config(run_dir / "config.yaml")
    exp = build_experiment(cfg, base_dir, source=run_dir / "config.yaml")
    path = run_dir / "checkpoints" / f"{checkpoint}.npz"
    if checkpoint == "best" and not path.exists():
        path = run_dir / "checkpoints" / "last.npz"
    if not path.exists():
        raise RunError(f"{run_dir}: no checkpoint yet (checkpoints/best.npz or last.npz)")
    load_weights(path, exp.model)
    return run_dir, exp


def evaluate_run(run: Path | str, split: str = "test", base_dir: Path | None = None) -> dict[str, Any]:
    """Test-split metrics of a run's best checkpoint; writes eval.json into the run."""
    run_dir, exp = load_run(run, base_dir=base_dir)
    x, y = getattr(exp.splits, f"{split}_x"), getattr(exp.splits, f"{split}_y")
    if x is None:
        raise UserError(f"the data set of {run_dir} has no {split} split")
    bs = max(exp.cfg.data.batch_size, 256)
    result: dict[str, Any] = {"split": split, "samples": len(x), "metrics": evaluate(exp.model, x, y, bs)}
    if exp.cfg.model.type == "classifier" and y.ndim == 1:
        pred = np.concatenate([exp.model.predict(x[i:i + bs]).argmax(-1) for i in range(0, len(x), bs)])
        k = exp.splits.num_classes
        cm = np.zeros((k, k), dtype=np.int64)
        np.add.at(cm, (y.astype(np.int64), pred), 1)
        result["per_class_accuracy"] = (np.diag(cm) / np.maximum(cm.sum(1), 1)).round(4).tolist()
        result["confusion_matrix"] = cm.tolist()
    write_json(run_dir / "eval.json", result)
    return result


def versions() -> dict[str, str]:
    import pydantic

    return {"netcli": __version__, "numpy": np.__version__, "pydantic": pydantic.VERSION,
            "python": platform.python_version()}


# -- from a file to a built experiment --------------------------------------------------


def prepare_config(path: Path, overrides: list[str] = ()) -> ExperimentConfig:
    from .config import load_config

    return load_config(path, overrides)


def prepare_experiment(path: Path, overrides: list[str] = ()) -> tuple[ExperimentConfig, Experiment]:
    """Validate a config file and build it (data, model), so shape errors surface before training."""
    cfg = prepare_config(path, overrides)
    return cfg, build_experiment(cfg, Path(path).parent, source=Path(path))

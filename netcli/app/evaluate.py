"""A trained run, loaded and evaluated: `netcli eval RUN`.

    run_dir, exp = load_run("runs/x/<run>")  # config.yaml rebuilt, best (or last) checkpoint loaded
    result = evaluate_run("runs/x/<run>")    # test-split report of the model type -> eval.json

Every report says what it scored (``evaluated``): the run, the checkpoint file, its step
and epoch, and the run's status when it was read (``running`` while a process trains it),
so a report of an unfinished run cannot pass for the finished model's.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import load_config
from ..errors import UserError
from ..runs import find_run, write_json
from ..runs_table import read_run
from ..train import Experiment, build_experiment, load_weights
from ..trained import checkpoint_path

SPLITS = ("test", "val", "train")
FINISHED = ("finished", "early_stopping", "max_steps")  # the run ended as its config said it would


def load_run(run: Path | str, checkpoint: str = "best", base_dir: Path | None = None) -> tuple[Path, Experiment]:
    """Rebuild a run's experiment from its config.yaml and load its best (or last) checkpoint."""
    run_dir, exp, _ = load_evaluated(run, checkpoint, base_dir)
    return run_dir, exp


def load_evaluated(run: Path | str, checkpoint: str = "best",
                   base_dir: Path | None = None) -> tuple[Path, Experiment, dict[str, Any]]:
    """``load_run`` and what was loaded: {"run", "checkpoint", "step", "epoch", "epochs", "batch", "status"}.

    ``epoch`` counts the epochs done when the checkpoint was written (``batch``: batches of the next one).
    The status is read before the checkpoint: a run said to be finished has its final files.
    """
    run_dir = find_run(run)
    record = read_run(run_dir)
    cfg = load_config(run_dir / "config.yaml")
    exp = build_experiment(cfg, base_dir)
    path = checkpoint_path(run_dir, checkpoint)
    state = load_weights(path, exp.model).get("state") or {}
    evaluated = {"run": str(run_dir), "checkpoint": str(path.relative_to(run_dir)), "step": state.get("step"),
                 "epoch": state.get("epoch"), "epochs": cfg.train.epochs, "batch": state.get("batch", 0),
                 "status": record.status}
    return run_dir, exp, evaluated


def describe(evaluated: dict[str, Any]) -> str:
    """`RUN: checkpoints/best.npz, step 1,688, epoch 2 of 4`, one line."""
    e = evaluated
    where = f"epoch {e['epoch']} of {e['epochs']}" + (f" and {e['batch']} batches" if e["batch"] else "")
    step = f"step {e['step']:,}" if e["step"] is not None else "step unknown"
    return f"{e['run']}: {e['checkpoint']}, {step}, {where}"


def unfinished(evaluated: dict[str, Any]) -> str | None:
    """A one-line warning when the evaluated run is still training or stopped before its end, else None."""
    run, status = evaluated["run"], evaluated["status"]
    if status in FINISHED:
        return None
    if status == "running":
        return f"{run} is still training: this scores its {evaluated['checkpoint']} so far, not the finished model"
    resume = f"; netcli train --resume {run} continues it" if status in ("interrupted", "stopped") else ""
    return f"{run} did not finish ({status}): this scores its {evaluated['checkpoint']}{resume}"


def evaluate_run(run: Path | str, split: str = "test", base_dir: Path | None = None) -> dict[str, Any]:
    """The model's evaluation report on a split of the run's data (its best checkpoint); writes eval.json."""
    if split not in SPLITS:
        raise UserError(f"--split {split}: no such split; valid splits: {', '.join(SPLITS)}")
    run_dir, exp, evaluated = load_evaluated(run, base_dir=base_dir)
    present = [s for s in SPLITS if _size(exp, s)]
    if split not in present:
        others = [s for s in present if s != "train"] or present
        raise UserError(f"{run_dir}: its data set has no {split} split; evaluate another with "
                        f"--split {others[0]} (it has: {', '.join(present)})")
    x, y = getattr(exp.splits, f"{split}_x"), getattr(exp.splits, f"{split}_y")
    result: dict[str, Any] = {"split": split, "samples": len(x), "evaluated": evaluated,
                              **exp.model.evaluate(x, y, max(exp.cfg.data.batch_size, 256))}
    write_json(run_dir / "eval.json", result)
    return result


def _size(exp: Experiment, split: str) -> int:
    x = getattr(exp.splits, f"{split}_x")
    return 0 if x is None else len(x)

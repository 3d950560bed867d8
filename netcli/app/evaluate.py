"""A finished run, loaded and evaluated: `netcli eval RUN`.

    run_dir, exp = load_run("runs/x/<run>")  # config.yaml rebuilt, best (or last) checkpoint loaded
    result = evaluate_run("runs/x/<run>")    # test-split report of the model type -> eval.json
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from ..config import load_config
from ..errors import UserError
from ..runs import find_run, write_json
from ..train import Experiment, build_experiment, load_weights
from ..trained import checkpoint_path


def load_run(run: Path | str, checkpoint: str = "best", base_dir: Path | None = None) -> tuple[Path, Experiment]:
    """Rebuild a run's experiment from its config.yaml and load its best (or last) checkpoint."""
    run_dir = find_run(run)
    cfg = load_config(run_dir / "config.yaml")
    exp = build_experiment(cfg, base_dir)
    path = checkpoint_path(run_dir, checkpoint)
    load_weights(path, exp.model)
    return run_dir, exp


def evaluate_run(run: Path | str, split: str = "test", base_dir: Path | None = None) -> dict[str, Any]:
    """The model's evaluation report on a split of the run's data (its best checkpoint); writes eval.json."""
    run_dir, exp = load_run(run, base_dir=base_dir)
    x, y = getattr(exp.splits, f"{split}_x"), getattr(exp.splits, f"{split}_y")
    if x is None:
        raise UserError(f"the data set of {run_dir} has no {split} split")
    result: dict[str, Any] = {"split": split, "samples": len(x),
                              **exp.model.evaluate(x, y, max(exp.cfg.data.batch_size, 256))}
    write_json(run_dir / "eval.json", result)
    return result

"""The commands that apply to a trained run, from what its model can do (its capabilities) and its data:
what `netcli train` prints at the end.

    next_commands(result.run_dir, result.experiment)   # ["netcli eval runs/x/<run>", "netcli predict ...", ...]
"""
from __future__ import annotations

import importlib.util
from pathlib import Path

# what a predict command is given, by the data description's kind (DataInfo.description)
INPUT_HINT = {"image": "IMAGE.png ...", "table": "ROWS.csv"}


def next_commands(run_dir: Path, exp) -> list[str]:
    """Each command line that works on ``run_dir`` (trained from the Experiment ``exp``), most used first."""
    model, splits = exp.model, exp.splits
    held_out = "test" if splits.test_x is not None else "val" if splits.val_x is not None and len(splits.val_x) else None
    commands = []
    if held_out:  # every model type evaluates on a held-out split
        commands.append(f"netcli eval {run_dir}" + (" --split val" if held_out == "val" else ""))
    if "sample" in model.capabilities or ("reconstruct" in model.capabilities and held_out):
        commands.append(f"netcli sample {run_dir}")
    if "predict" in model.capabilities:
        kind = splits.info().description.get("kind")
        commands.append(f"netcli predict {run_dir} {INPUT_HINT.get(kind, 'INPUT.npy')}")
    export = f"netcli export {run_dir} --format safetensors"
    if importlib.util.find_spec("safetensors") is None:
        export += '   (after pip install "netcli[export]")'
    return [*commands, export]

"""`netcli export`: a run's weights as a safetensors file that describes itself.

    path = export_safetensors("runs/mnist_cnn")          # runs/mnist_cnn/<run>/mnist_cnn.safetensors
    arrays, meta = read_safetensors(path)                # param/* and buffer/* arrays; config and data description

Tensors keep the checkpoint's stable names (``param/net.layers.0.W``,
``buffer/...``); the metadata holds the resolved config and the data description
as JSON strings, so ``netcli.load_run(path)`` and ``--init-from path`` work from
the file alone. Needs the ``export`` extra (safetensors).
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from . import __version__
from .atomic import atomic_file
from .errors import CheckpointError, require_extra
from .runs import CHECKPOINT_FORMAT, load_checkpoint
from .trained import checkpoint_path, read_described

SAFETENSORS_FORMAT = "netcli-safetensors/1"


def _safetensors():
    require_extra("safetensors", "export")
    from safetensors import numpy as st

    return st


def export_safetensors(run: Path | str, out: Path | None = None, checkpoint: str = "best") -> Path:
    """Write the weights of a run's checkpoint with its config and data description; return the file."""
    st = _safetensors()
    path = checkpoint_path(run, checkpoint)
    arrays, meta = load_checkpoint(path)
    cfg, _ = read_described(path, meta)
    tensors = {k: np.ascontiguousarray(v) for k, v in arrays.items() if k.startswith(("param/", "buffer/"))}
    metadata = {"format": SAFETENSORS_FORMAT, "checkpoint_format": CHECKPOINT_FORMAT, "netcli_version": __version__,
                "config": json.dumps(meta["config"]), "data": json.dumps(meta["data"])}
    out = Path(out) if out else path.parent.parent / f"{cfg.name}.safetensors"
    with atomic_file(out) as f:
        f.write(st.save(tensors, metadata))
    return out


def read_safetensors(path: Path) -> tuple[dict[str, np.ndarray], dict]:
    """The arrays and the checkpoint-style meta record (config, data) of an exported file."""
    st = _safetensors()
    path = Path(path)
    try:
        data = path.read_bytes()
        arrays = st.load(data)
        header_len = int.from_bytes(data[:8], "little")
        metadata = json.loads(data[8:8 + header_len]).get("__metadata__") or {}
        if metadata.get("format") != SAFETENSORS_FORMAT:
            raise ValueError(f"format {metadata.get('format')!r}, not {SAFETENSORS_FORMAT}")
        meta = {"config": json.loads(metadata["config"]), "data": json.loads(metadata["data"])}
    except FileNotFoundError:
        raise CheckpointError(f"{path}: no such file") from None
    except Exception as e:  # the safetensors library raises its own error types on damaged files
        raise CheckpointError(f"{path}: not a netcli safetensors export ({' '.join(str(e).split())[:200]})") from None
    return arrays, meta

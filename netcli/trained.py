"""A trained run as a ready model, built from its checkpoint alone (no data set is loaded).

    from netcli import load_run
    model = load_run("runs/mnist_cnn")        # the newest run below runs/mnist_cnn, its best checkpoint
    model.predict(x)                          # x (N, *input_shape): classes (N,) [(N, T) per token], or values (N, k)
    model.predict_proba(x)                    # class probabilities (N, [T,] C)
    model.sample(16, seed=0)                  # VAE / DDPM runs: (16, *input_shape) samples
    model.info                                # DataInfo: input shape and dtype, classes, how raw inputs are read

A checkpoint (format 2 on; this netcli reads 4) holds the resolved config and the data description
(``DataInfo``); the model is built from them and its parameters and buffers
are loaded under their names. ``run`` may be a run directory, ``runs/<name>``
(its newest run), a checkpoint file or a safetensors export (netcli.export).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import numpy as np

from . import backend as B
from .config import ExperimentConfig, config_from_dict
from .data import DataInfo
from .errors import CheckpointError, ConfigError, RunError, UserError
from .models.base import Model, require
from .runs import find_run, load_checkpoint
from .train import assign_model, build_model


class InputError(UserError):
    """An input a model cannot take (wrong shape, dtype, values); the message names the input."""


def checkpoint_path(run: Path | str, checkpoint: str = "best") -> Path:
    """The checkpoint file ``run`` means: a file as given, else the run's best (falling back to last) or last."""
    p = Path(run)
    if p.is_file():
        return p
    if checkpoint not in ("best", "last"):
        raise UserError(f"--checkpoint is best or last, not {checkpoint!r}")
    run_dir = find_run(p)
    path = run_dir / "checkpoints" / f"{checkpoint}.npz"
    if checkpoint == "best" and not path.exists():
        path = run_dir / "checkpoints" / "last.npz"
    if not path.exists():
        raise RunError(f"{run_dir}: no checkpoint yet (checkpoints/{checkpoint}.npz)")
    return path


def read_described(path: Path, meta: dict) -> tuple[ExperimentConfig, DataInfo]:
    """The config and data description a checkpoint's meta record carries."""
    try:
        cfg = config_from_dict(meta["config"], str(path))
        info = DataInfo.model_validate(meta["data"])
    except (KeyError, TypeError, ValueError, ConfigError) as e:
        raise CheckpointError(f"{path}: its config or data description is missing or invalid "
                              f"({' '.join(str(e).split())[:200]})") from None
    return cfg, info


def model_from_arrays(path: Path, arrays: dict[str, np.ndarray], meta: dict) -> "TrainedModel":
    """Build the model a checkpoint describes and load its ``param/*`` and ``buffer/*`` arrays into it."""
    cfg, info = read_described(path, meta)
    B.set_float_dtype(cfg.dtype)
    model = build_model(cfg, info, lambda *key: f"{path}: config {'.'.join(map(str, key))}")
    assign_model(path, arrays, model)
    return TrainedModel(path, cfg, info, model)


def load_run(run: Path | str, checkpoint: str = "best") -> "TrainedModel":
    """A run's best (or last) checkpoint, or a checkpoint file, as a ready model; no data set is loaded."""
    path = checkpoint_path(run, checkpoint)
    if path.suffix == ".safetensors":
        from .export import read_safetensors

        return model_from_arrays(path, *read_safetensors(path))
    return model_from_arrays(path, *load_checkpoint(path))


class TrainedModel:
    """A model with its config and data description; every method takes and returns numpy arrays, batched."""

    def __init__(self, path: Path, cfg: ExperimentConfig, info: DataInfo, model: Model):
        self.path, self.config, self.info, self.model = path, cfg, info, model
        self.batch_size = max(cfg.data.batch_size, 256)

    def __repr__(self) -> str:
        return f"<TrainedModel {self.config.name} ({self.config.model.type}) from {self.path}>"

    @property
    def is_classifier(self) -> bool:
        return self.info.task == "classification"

    def check(self, x, name: str = "input") -> np.ndarray:
        """``x`` as a batch (N, *input_shape) of the model's dtype; one sample of input_shape becomes a batch of 1."""
        x = np.asarray(x)
        shape = tuple(self.info.input_shape)
        if x.shape == shape:
            x = x[None]
        if x.shape[1:] != shape:
            raise InputError(f"{name}: shape {x.shape} does not fit the model, which takes {shape} "
                             f"(one sample) or (N, {', '.join(map(str, shape))})")
        if x.dtype.kind not in "biuf":
            raise InputError(f"{name}: dtype {x.dtype} is not numbers")
        if self.info.input_dtype.startswith("int"):  # token ids
            vocab = self.info.description.get("vocab")
            if not np.array_equal(x, np.round(x)) or x.min(initial=0) < 0 or (vocab and x.max(initial=0) >= vocab):
                raise InputError(f"{name}: token ids must be integers 0..{(vocab or 1) - 1}")
            return x.astype(self.info.input_dtype)
        if not np.isfinite(x).all():
            raise InputError(f"{name}: holds NaN or inf")
        return x.astype(B.float_dtype(), copy=False)

    def output(self, x, name: str = "input") -> np.ndarray:
        """The network's raw output for a batch: logits (N, [T,] C) or values (N, k), in batches of ``batch_size``."""
        require(self.model, "predict", f"{self.path}: predict")
        x = self.check(x, name)
        if not len(x):
            raise InputError(f"{name}: no samples")
        return np.concatenate([self.model.predict(x[i:i + self.batch_size]) for i in range(0, len(x), self.batch_size)])

    def predict_proba(self, x, name: str = "input") -> np.ndarray:
        """Class probabilities (N, [T,] C) of a classifier."""
        if not self.is_classifier:
            raise UserError(f"{self.path}: a regressor has no class probabilities (use predict)")
        logits = self.output(x, name).astype(np.float64)
        e = np.exp(logits - logits.max(-1, keepdims=True))
        return e / e.sum(-1, keepdims=True)

    def predict(self, x, name: str = "input") -> np.ndarray:
        """Classes (N,) or (N, T) of a classifier; values (N, k) of a regressor."""
        out = self.output(x, name)
        return out.argmax(-1) if self.is_classifier else out

    def sample(self, n: int, seed: int = 0, steps: int | None = None,
               progress: Callable[[int, int], None] | None = None) -> np.ndarray:
        """``n`` samples (n, *input_shape) of a generative run (DDPM: ancestral, or DDIM with ``steps``)."""
        require(self.model, "sample", f"{self.path}: sample")
        return self.model.sample(n, np.random.default_rng(seed), steps=steps, progress=progress)

"""Tiny real runs and a live `netcli ui` server for the UI tests (HTTP and browser).

Every run is trained here with the real trainer, on tiny data (a few seconds in all):
two tiny classifiers on npz files that differ in the learning rate (one evaluated:
eval.json with a confusion matrix), a small MNIST CNN for the drawing pad, a VAE, a
DDPM and a digit-reversing transformer on a few hundred samples.
"""
from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import yaml

from netcli.config import config_from_dict
from netcli.app.evaluate import evaluate_run
from netcli.train import train

NPZ = {
    "name": "tiny", "seed": 3,
    "data": {"dataset": "npz", "batch_size": 8, "val_fraction": 0.2},
    "model": {"type": "classifier", "layers": [{"type": "conv2d", "filters": 2, "kernel": 3, "padding": 1}, "relu",
                                               "flatten", {"type": "dense", "units": 2}]},
    "optimizer": {"type": "adam", "lr": 0.01},
    "train": {"epochs": 3, "log_every": 1},
}
MNIST_CNN = {
    "name": "digits", "seed": 0,
    "data": {"dataset": "mnist", "batch_size": 32, "val_fraction": 0.1, "limit": 3000},
    "model": {"type": "classifier", "layers": [
        {"type": "conv2d", "filters": 8, "kernel": 3, "padding": 1}, "relu", {"type": "maxpool2d", "size": 2},
        "flatten", {"type": "dense", "units": 10}]},
    "optimizer": {"type": "adam", "lr": 3.0e-3},
    "train": {"epochs": 2},
}
MNIST_VAE = {
    "name": "vae", "seed": 0,
    "data": {"dataset": "mnist", "flatten": True, "batch_size": 64, "val_fraction": 0.1, "limit": 1000},
    "model": {"type": "vae", "latent_dim": 4,
              "encoder": [{"type": "dense", "units": 32}, "relu", {"type": "dense", "units": 8}],
              "decoder": [{"type": "dense", "units": 32}, "relu", {"type": "dense", "units": 784}]},
    "optimizer": {"type": "adam", "lr": 1.0e-3},
    "train": {"epochs": 1},
}
MNIST_DDPM = {
    "name": "ddpm", "seed": 0,
    "data": {"dataset": "mnist", "batch_size": 32, "val_fraction": 0.1, "limit": 200},
    "model": {"type": "ddpm", "timesteps": 50, "schedule": "cosine", "ema_decay": 0.9, "sample_steps": 5,
              "denoiser": [{"type": "unet", "base_channels": 4, "channel_mults": [1, 2], "time_dim": 8}]},
    "optimizer": {"type": "adam", "lr": 1.0e-3},
    "train": {"epochs": 1},
}
REVERSE = {
    "name": "reverse", "seed": 0,
    "data": {"dataset": "reverse_digits", "seq_len": 6, "train_size": 600, "test_size": 50, "batch_size": 32},
    "model": {"type": "classifier", "layers": [
        {"type": "embedding", "vocab_size": 10, "dim": 16}, {"type": "sinusoidal_position"},
        {"type": "transformer_encoder", "blocks": 1, "heads": 2, "ffn": 32, "dropout": 0.0},
        {"type": "dense", "units": 10}]},
    "optimizer": {"type": "adam", "lr": 3.0e-3},
    "train": {"epochs": 2},
}


def write_npz_data(folder: Path, n_train: int = 48, side: int = 4) -> dict:
    """Two separable classes of 1 x side x side images; returns the data section with absolute paths."""
    rng = np.random.default_rng(0)
    for name, n in (("train.npz", n_train), ("test.npz", 16)):
        y = rng.integers(0, 2, n)
        x = rng.normal(size=(n, 1, side, side)).astype(np.float32) + y[:, None, None, None]
        np.savez(folder / name, x=x, y=y)
    return {**NPZ["data"], "path": str(folder / "train.npz"), "test_path": str(folder / "test.npz")}


def experiment(spec: dict, **changes) -> dict:
    """A copy of ``spec`` with dotted keys changed: experiment(NPZ, **{"optimizer.lr": 0.1})."""
    out = yaml.safe_load(yaml.safe_dump(spec))
    for key, value in changes.items():
        *path, last = key.split(".")
        d = out
        for p in path:
            d = d[p]
        d[last] = value
    return out


def train_spec(spec: dict, root: Path) -> Path:
    return train(config_from_dict(spec), root).run_dir


def make_runs(root: Path, data_dir: Path) -> dict[str, Path]:
    """Train every tiny run under ``root``; return {role: run directory}."""
    data = write_npz_data(data_dir)
    runs = {"a": train_spec(experiment(NPZ, data=data), root),
            "b": train_spec(experiment(NPZ, data=data, **{"optimizer.lr": 0.05, "name": "tiny_fast"}), root)}
    evaluate_run(runs["a"])
    runs["digits"] = train_spec(MNIST_CNN, root)
    runs["vae"] = train_spec(MNIST_VAE, root)
    runs["ddpm"] = train_spec(MNIST_DDPM, root)
    runs["reverse"] = train_spec(REVERSE, root)
    return runs


class LiveServer:
    """`netcli ui`'s server on a free port, serving from a thread until stopped."""

    def __init__(self, root: Path):
        from netcli.ui import make_server

        self.server = make_server(root, "127.0.0.1", 0)
        self.url = self.server.url
        self.thread = threading.Thread(target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def snapshot(root: Path) -> dict[str, tuple[int, int]]:
    """Every file under ``root`` with its size and modification time (to show nothing was written)."""
    return {str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(root.rglob("*")) if p.is_file()}

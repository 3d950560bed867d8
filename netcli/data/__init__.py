"""Datasets: a registry of loaders, fetch + verify + cache, user file formats, synthetic sets.

The API the rest of netcli uses:

    from netcli.data import DataConfig, DataError, Splits, data_config_type, parse_data_config
    from netcli.data import fetch, list_cached, load_data

    config = parse_data_config({"dataset": "mnist", "batch_size": 64, "flatten": True})
    splits = load_data(config, seed=0, progress=None, base_dir=None)  # -> Splits
    fetch("mnist", progress=None)   # -> {name, path, size, sha256, source}   (`netcli data fetch NAME`)
                                    #    already cached and verified: no download, source as recorded;
                                    #    DataError for datasets that are files or generated;
                                    #    netcli.registry.UnknownNameError (a KeyError) for unknown names
    list_cached()                   # -> [{name, path, size, verified}, ...]   (`netcli data ls`)

- Every dataset is a class in ``netcli.registry.DATASETS`` with a nested pydantic ``Config`` that
  subclasses ``DataConfig`` (extra="forbid") and is told apart by ``dataset: Literal[name]``.
  ``data_config_type()`` is the discriminated union of them all, for the experiment file's ``data:``.
  Common fields: batch_size (64), val_fraction (0.1), limit (None; N: first N train, N//5 (>= 1) test samples),
  shuffle (True; for the trainer's epochs, this package does not shuffle).
- ``Splits``: train_x, train_y, val_x, val_y, test_x, test_y (numpy; test None when there is no test
  split; val arrays have length 0 when val_fraction is 0), task ("classification" | "regression"),
  num_classes (int or None), input_shape and target_shape (one sample, no batch axis), class_names
  (None: 0..K-1) and a description of how raw inputs become samples; ``splits.info()`` is all of that
  without the arrays (a ``DataInfo``, saved in every checkpoint so a trained model needs no data).
  The validation set comes out of the training set through a permutation drawn from ``seed``
  (same seed, same split); train and val keep the original sample order.
- ``progress(bytes_done, bytes_total, description)`` is called during downloads (bytes_total 0: unknown).
- ``base_dir``: relative paths in user-file configs resolve against it (pass the config file's folder).
- Mistakes a user can fix raise ``DataError`` (a ValueError) with one line naming the file and the fix.

Datasets (see each Config for every option):

    mnist, fashion_mnist   x float32 in [0, 1] (N, 1, 28, 28); as_sequence: (N, 28, 28); flatten: (N, 784);
                           normalize: standard -> (x - mean) / std. y int64 (N,), 10 classes.
    npz                    path, x_key, y_key, test_path, task
    npy                    features, targets, test_features, test_targets, task (features memory-mapped:
                           Rows, read batch by batch; targets read whole)
    csv                    path, label_column (numbers or class names), test_path, task, delimiter
    idx                    images, labels, test_images, test_labels (uint8 images scaled to [0, 1])
    sine                   x (N, seq_len, 1) float32, y (N, horizon) float32; regression
    reverse_digits         x (N, T) int64 digits, y (N, T) the reversed sequence; 10 classes per position
    sort_digits            x (N, T) int64 digits, y (N, T) the sorted sequence; 10 classes per position

User regression targets of shape (N,) come back as (N, 1); class labels as int64.
MNIST and Fashion-MNIST live in ``$NETCLI_DATA`` (default ``~/.cache/netcli``) as uint8 .npz files whose
contents' SHA-256 is recorded next to them and checked on every load (see cache.py, mnist.py).
"""
from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Union

from pydantic import Field, TypeAdapter

from ..registry import DATASETS
from . import files, mnist, synthetic  # noqa: F401  (registers the datasets)
from .base import DataConfig, DataError, DataInfo, Dataset, Progress, Rows, Splits, register_dataset, select
from .cache import list_cached


def data_config_type() -> Any:
    """The discriminated union of every registered dataset's Config (for pydantic models and JSON schema)."""
    configs = tuple(cls.Config for _, cls in DATASETS.items())
    return Annotated[Union[configs], Field(discriminator="dataset")]


def parse_data_config(data: dict) -> DataConfig:
    """Validate a ``data:`` mapping into its dataset's Config (pydantic.ValidationError on mistakes)."""
    return TypeAdapter(data_config_type()).validate_python(data)


def load_data(config: DataConfig, seed: int, *, progress: Progress = None, base_dir: Path | None = None) -> Splits:
    """Load (fetching if needed) the dataset ``config`` describes and split it with ``seed``."""
    return DATASETS.get(config.dataset)(config).load(seed, progress=progress, base_dir=base_dir)


def fetch(name: str, progress: Progress = None) -> dict:
    """Fetch, verify and cache dataset ``name``: {name, path, size, sha256, source}."""
    return DATASETS.get(name).fetch(progress)


__all__ = ["DataConfig", "DataError", "DataInfo", "Dataset", "Progress", "Rows", "Splits", "data_config_type", "fetch",
           "list_cached", "load_data", "parse_data_config", "register_dataset", "select"]

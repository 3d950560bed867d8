"""The user's own data: named arrays in .npz, .npy files read memory-mapped, a .csv with a header, or IDX
image + label files.

Relative paths resolve against ``base_dir`` (the config file's folder) when load_data is given one.
Every problem names the file and says what to change. Task inference when ``task`` is not set:
integer (or, in a CSV, text) labels mean classification, anything else regression.
"""
from __future__ import annotations

import csv
import math
import zipfile
from pathlib import Path
from typing import Literal, Optional

import numpy as np
from pydantic import Field

from ..registry import did_you_mean
from ..userfiles import check_file
from .base import DataConfig, DataError, Dataset, Progress, Rows, Splits, Task, make_splits, register_dataset
from .idx import read_idx
from .mnist import LayoutConfig, layout, layout_name

MAX_INFERRED_CLASSES = 1000  # more distinct integer labels than this is most likely a regression target
CHUNK_BYTES = 1 << 26  # checks over features read this much at a time (a memory-mapped file is never read whole)


def resolve(path: Path, base_dir: Path | None) -> Path:
    path = Path(path).expanduser()
    return path if path.is_absolute() or base_dir is None else Path(base_dir) / path


def check_x(x: np.ndarray, name: str) -> np.ndarray | Rows:
    """Features (N, ...) as float32, refusing text, 1-D and non-finite data; a memory-mapped array stays
    on disk (Rows, converted batch by batch)."""
    if not (np.issubdtype(x.dtype, np.number) or x.dtype == bool) or np.issubdtype(x.dtype, np.complexfloating):
        raise DataError(f"{name}: features have dtype {x.dtype}; expected real numbers")
    if x.ndim < 2:
        raise DataError(f"{name}: features have shape {x.shape}; expected (samples, features...), "
                        "reshape 1-D data to (N, 1)")
    step = max(1, CHUNK_BYTES // max(1, x[:1].nbytes))
    for start in range(0, len(x) if np.issubdtype(x.dtype, np.inexact) else 0, step):
        finite = np.isfinite(x[start:start + step].reshape(-1, math.prod(x.shape[1:])))  # (rows, features)
        if not finite.all():
            bad = start + int(np.argwhere(~finite)[0, 0])
            raise DataError(f"{name}: features contain NaN or inf (first in sample {bad}); clean or drop those rows")
    return Rows(x) if isinstance(x, np.memmap) else x.astype(np.float32)


def check_y(y: np.ndarray, n: int, task: Task | None, name: str) -> tuple[np.ndarray, Task]:
    """Targets for ``n`` samples: int64 class labels, or float32 (N, k) regression targets."""
    if y.ndim == 0 or len(y) != n:
        raise DataError(f"{name}: {y.size if y.ndim else 0} targets for {n} samples; they must match one to one")
    if not np.issubdtype(y.dtype, np.number) or np.issubdtype(y.dtype, np.complexfloating):
        raise DataError(f"{name}: targets have dtype {y.dtype}; expected real numbers")
    inferred = task is None
    task = task or ("classification" if np.issubdtype(y.dtype, np.integer) else "regression")
    if task == "regression":
        if not np.isfinite(y).all():
            raise DataError(f"{name}: targets contain NaN or inf; clean or drop those rows")
        return y.astype(np.float32).reshape(n, -1) if y.ndim == 1 else y.astype(np.float32), task
    if not np.array_equal(y, np.round(y)) or y.min(initial=0) < 0:
        raise DataError(f"{name}: class labels must be integers 0..K-1"
                        + ("" if inferred else "; for real-valued targets set task: regression"))
    if inferred and y.max(initial=0) >= MAX_INFERRED_CLASSES:
        raise DataError(f"{name}: integer targets up to {y.max()} read as class labels; "
                        "set task: regression if they are values, or task: classification to keep them")
    return y.astype(np.int64), task


def finish(config: DataConfig, seed: int, task: Task | None, train: tuple, train_name: str,
           test: tuple | None = None, test_name: str = "", transform=lambda x: x, **describe) -> Splits:
    """Check the (x, y) arrays of train and test against each other, then split them."""
    x = check_x(train[0], train_name)
    y, task = check_y(train[1], len(x), task, train_name)
    if test is not None:
        tx = check_x(test[0], test_name)
        if tx.shape[1:] != x.shape[1:]:
            raise DataError(f"{test_name}: test samples have shape {tx.shape[1:]} but training samples {x.shape[1:]}")
        ty, _ = check_y(test[1], len(tx), task, test_name)
        if ty.shape[1:] != y.shape[1:]:
            raise DataError(f"{test_name}: test targets have shape {ty.shape[1:]} but training targets {y.shape[1:]}")
        test = (tx, ty)
    num_classes = None
    if task == "classification":
        num_classes = int(max(y.max(initial=0), test[1].max(initial=0) if test else 0)) + 1
    return make_splits(config, seed, (x, y), test, task=task, num_classes=num_classes, transform=transform,
                       **describe)


class FileConfig(DataConfig):
    path: Path = Field(description="The training data file (relative paths: from the config file's folder).")
    test_path: Optional[Path] = Field(None, description="A test file of the same layout (optional).")
    task: Optional[Task] = Field(None, description="classification or regression; default: inferred from the labels "
                                                   "(integers: classification).")


# -- npz --------------------------------------------------------------------

def check_data_file(path: Path) -> None:
    """A data file must be a regular file; any OS error is one line naming it."""
    check_file(path, DataError, hint="; check the path in the data section")


def read_npz(path: Path, keys: tuple[str, str]) -> tuple[np.ndarray, ...]:
    check_data_file(path)
    try:
        with np.load(path, allow_pickle=False) as f:
            missing = [k for k in keys if k not in f.files]
            if missing:
                raise DataError(f"{path}: no array '{missing[0]}' (it has: {', '.join(f.files) or 'none'}); "
                                "set x_key / y_key in the data section")
            return tuple(f[k] for k in keys)
    except (OSError, ValueError, EOFError, zipfile.BadZipFile) as e:
        raise DataError(f"{path}: not a readable .npz of plain arrays ({e}); save it with numpy.savez") from None


@register_dataset("npz")
class NpzDataset(Dataset):
    class Config(FileConfig):
        dataset: Literal["npz"] = Field("npz", description="Named arrays in a .npz file (numpy.savez).")
        x_key: str = Field("x", description="Name of the features array, (N, ...).")
        y_key: str = Field("y", description="Name of the targets array, (N,) labels or (N, k) values.")

    @classmethod
    def targets_source(cls, config):
        return f"{config.path} (array '{config.y_key}')"

    def load(self, seed: int, *, progress: Progress = None, base_dir: Path | None = None) -> Splits:
        c = self.config
        path = resolve(c.path, base_dir)
        test_path = resolve(c.test_path, base_dir) if c.test_path else None
        keys = (c.x_key, c.y_key)
        test = read_npz(test_path, keys) if test_path else None
        return finish(c, seed, c.task, read_npz(path, keys), str(path), test, str(test_path))


# -- npy --------------------------------------------------------------------
def read_npy(path: Path) -> np.ndarray:
    """A .npy file memory-mapped read-only: nothing is read until it is indexed."""
    check_data_file(path)
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (OSError, ValueError, EOFError) as e:
        raise DataError(f"{path}: not a readable .npy of plain numbers ({e}); save it with numpy.save") from None


@register_dataset("npy")
class NpyDataset(Dataset):
    """Features and targets in two .npy files. The features are memory-mapped: a training set larger than
    memory trains, reading only its batches (under mpiexec each rank its slices of them). The targets
    (labels or values, small beside the features) are read whole."""

    class Config(DataConfig):
        dataset: Literal["npy"] = Field("npy", description="Features and targets in two .npy files (numpy.save); "
                                                           "the features are read memory-mapped, batch by batch.")
        features: Path = Field(description="The training features, (N, ...) (relative paths: from the config "
                                           "file's folder).")
        targets: Path = Field(description="The training targets, (N,) labels or (N, k) values.")
        test_features: Optional[Path] = Field(None, description="Test features of the same layout (optional).")
        test_targets: Optional[Path] = Field(None, description="The test targets (with test_features).")
        task: Optional[Task] = Field(None, description="classification or regression; default: inferred from the "
                                                       "labels (integers: classification).")

    @classmethod
    def targets_source(cls, config):
        return str(config.targets)

    def load(self, seed: int, *, progress: Progress = None, base_dir: Path | None = None) -> Splits:
        c = self.config
        if (c.test_features is None) != (c.test_targets is None):
            raise DataError("npy data: set both test_features and test_targets, or neither")
        def pair(features: Path, targets: Path) -> tuple[np.ndarray, np.ndarray]:  # targets: plain arrays
            return read_npy(resolve(features, base_dir)), np.asarray(read_npy(resolve(targets, base_dir)))

        train = pair(c.features, c.targets)
        test = pair(c.test_features, c.test_targets) if c.test_features else None
        return finish(c, seed, c.task, train, str(resolve(c.features, base_dir)), test,
                      str(resolve(c.test_features, base_dir)) if c.test_features else "")


# -- csv --------------------------------------------------------------------
def read_table(path: Path, delimiter: str = ",") -> tuple[list[str], np.ndarray]:
    """The header and the text cells (N, columns) of a CSV file, every row as long as the header."""
    check_data_file(path)
    try:  # utf-8-sig: spreadsheet programs start a CSV with a byte-order mark
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f, delimiter=delimiter))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{path}: cannot read as CSV ({e})") from None
    rows = [r for r in rows if r]  # blank lines
    if len(rows) < 2:
        raise DataError(f"{path}: needs a header line and at least one data row")
    header = [h.strip() for h in rows[0]]
    for line, row in enumerate(rows[1:], start=2):
        if len(row) != len(header):
            raise DataError(f"{path}:{line}: {len(row)} fields, the header has {len(header)}")
    return header, np.array(rows[1:], dtype=str)


def numbers(path: Path, cells: np.ndarray, names: list[str]) -> np.ndarray:
    """Text cells (N, F) of the columns ``names`` as float64; a cell that is not a number names its line and column."""
    try:
        return cells.astype(np.float64)
    except ValueError:
        line, col = next((i, j) for i, row in enumerate(cells) for j, v in enumerate(row) if not _is_number(v))
        raise DataError(f"{path}:{line + 2}: column '{names[col]}' has '{cells[line, col]}', not a number") from None


def read_csv(path: Path, label_column: str, delimiter: str) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """float64 features (N, F) from every column but ``label_column``, that column's text (N,), the feature names."""
    header, table = read_table(path, delimiter)
    if label_column not in header:
        raise DataError(f"{path}: no column '{label_column}'{did_you_mean(label_column, header)}; "
                        f"columns: {', '.join(header)}")
    label = header.index(label_column)
    names = [h for h in header if h != label_column]
    return numbers(path, np.delete(table, label, axis=1), names), np.char.strip(table[:, label]), names


def _is_number(text: str) -> bool:
    try:
        float(text)
        return True
    except ValueError:
        return False


def csv_targets(labels: np.ndarray, classes: list[str] | None, path: Path) -> np.ndarray:
    """Label text as numbers: the index in ``classes`` for text labels, else the value (int64 if integral)."""
    if classes is None:
        try:
            values = labels.astype(np.float64)
        except ValueError:
            raise DataError(f"{path}: the label column has text where the training file has numbers") from None
        return values.astype(np.int64) if np.array_equal(values, np.round(values)) else values
    unknown = sorted(set(labels) - set(classes))
    if unknown:
        raise DataError(f"{path}: label '{unknown[0]}' does not occur in the training file")
    return np.searchsorted(classes, labels).astype(np.int64)


@register_dataset("csv")
class CsvDataset(Dataset):
    class Config(FileConfig):
        dataset: Literal["csv"] = Field("csv", description="A CSV file with a header line: numeric feature columns "
                                                           "and one label column (numbers, or class names).")
        label_column: str = Field(description="Header name of the target column; every other column is a feature.")
        delimiter: str = Field(",", min_length=1, max_length=1, description="Field separator.")

    @classmethod
    def targets_source(cls, config):
        return f"{config.path} (column '{config.label_column}')"

    def load(self, seed: int, *, progress: Progress = None, base_dir: Path | None = None) -> Splits:
        c = self.config
        path = resolve(c.path, base_dir)
        x, labels, names = read_csv(path, c.label_column, c.delimiter)
        classes = None if all(_is_number(v) for v in labels) else sorted(set(labels))
        describe = {"class_names": classes,
                    "description": {"kind": "table", "columns": names, "label_column": c.label_column}}
        if classes is not None and c.task == "regression":
            raise DataError(f"{path}: column '{c.label_column}' holds text, which cannot be a regression target")
        train = (x, csv_targets(labels, classes, path))
        if not c.test_path:
            return finish(c, seed, c.task, train, str(path), **describe)
        test_path = resolve(c.test_path, base_dir)
        tx, tlabels, test_names = read_csv(test_path, c.label_column, c.delimiter)
        if test_names != names:
            raise DataError(f"{test_path}: feature columns {', '.join(test_names)} differ from the training file's "
                            f"{', '.join(names)}")
        return finish(c, seed, c.task, train, str(path), (tx, csv_targets(tlabels, classes, test_path)), str(test_path),
                      **describe)


# -- idx --------------------------------------------------------------------
@register_dataset("idx")
class IdxDataset(Dataset):
    class Config(LayoutConfig):
        dataset: Literal["idx"] = Field("idx", description="MNIST-style IDX files (plain or .gz): images and labels.")
        images: Path = Field(description="IDX file of the training images, (N, H, W) (uint8 is scaled to [0, 1]).")
        labels: Path = Field(description="IDX file of the N training labels.")
        test_images: Optional[Path] = Field(None, description="IDX file of the test images (optional).")
        test_labels: Optional[Path] = Field(None, description="IDX file of the test labels (with test_images).")

    @classmethod
    def targets_source(cls, config):
        return str(config.labels)

    def load(self, seed: int, *, progress: Progress = None, base_dir: Path | None = None) -> Splits:
        c = self.config
        if (c.test_images is None) != (c.test_labels is None):
            raise DataError("idx data: set both test_images and test_labels, or neither")
        train = self._read(c.images, c.labels, base_dir)
        x = train[0]
        description = {"kind": "array"} if x.ndim != 3 else {
            "kind": "image", "height": x.shape[1], "width": x.shape[2], "channels": 1, "layout": layout_name(c),
            "scale": 255 if self.uint8 else 1, "normalize": None, "polarity": "light_on_dark", "fit": "resize"}
        test = self._read(c.test_images, c.test_labels, base_dir) if c.test_images else None
        return finish(c, seed, "classification", train, str(resolve(c.images, base_dir)), test,
                      str(resolve(c.test_images, base_dir)) if c.test_images else "", transform=self._layout,
                      description=description)

    def _read(self, images: Path, labels: Path, base_dir: Path | None) -> tuple[np.ndarray, np.ndarray]:
        images, labels = resolve(images, base_dir), resolve(labels, base_dir)
        x, y = read_idx(images), read_idx(labels)
        if len(x) != len(y):
            raise DataError(f"{labels}: {len(y)} labels for {len(x)} images in {images}")
        if not np.issubdtype(y.dtype, np.integer) or y.ndim != 1:
            raise DataError(f"{labels}: labels must be integers, one per image; got {y.dtype}{y.shape}")
        self.uint8 = x.dtype == np.uint8  # of the last images read (the training images', for the description)
        return (x / np.float32(255) if self.uint8 else x), y

    def _layout(self, x: np.ndarray) -> np.ndarray:
        if x.ndim != 3:
            if self.config.as_sequence or self.config.flatten:
                raise DataError(f"idx data: as_sequence / flatten need (N, H, W) images, not (N, {x.shape[1:]})")
            return x
        return layout(x, layout_name(self.config))

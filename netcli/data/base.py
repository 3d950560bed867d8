"""What every dataset shares: its config base, the Splits it returns, the validation split, errors."""
from __future__ import annotations

import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar, Literal, Optional

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from ..registry import register_dataset  # noqa: F401  (the public decorator, re-exported)

# progress(bytes_done, bytes_total, description); bytes_total is 0 when unknown
Progress = Optional[Callable[[int, int, str], None]]
Task = Literal["classification", "regression"]


class DataError(ValueError):
    """A problem with data the user can fix: a missing or corrupt file, a wrong shape, no route to fetch."""


class Rows:
    """Samples of an array on disk (a memory-mapped .npy), read only when indexed.

    ``rows[idx]`` (an index array or a slice) reads those samples and returns them as a float32 array;
    ``select(rows, idx)`` is another Rows over some of them, with nothing read. Training then touches
    only its batches (under mpiexec each rank only its slices of them), and the memory a data set takes
    is its batches plus an index of 8 bytes a sample.
    """

    dtype = np.dtype(np.float32)

    def __init__(self, source: np.ndarray, index: np.ndarray | None = None):
        self.source = source            # (M, ...) e.g. a memory-mapped .npy (files.read_npy)
        self.index = index              # (N,) the rows of source that these are; None: all of them

    def __len__(self) -> int:
        return len(self.source) if self.index is None else len(self.index)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self), *self.source.shape[1:])

    @property
    def ndim(self) -> int:
        return self.source.ndim

    def __getitem__(self, key) -> np.ndarray:
        return np.array(self.source[key if self.index is None else self.index[key]], dtype=self.dtype)

    def select(self, key) -> "Rows":
        return Rows(self.source, np.arange(len(self))[key] if self.index is None else self.index[key])


def select(x, key):
    """The samples ``x[key]``: for Rows another Rows (nothing read), for an array the array's own indexing."""
    return x.select(key) if isinstance(x, Rows) else x[key]


class DataConfig(BaseModel):
    """Options every dataset has. Each dataset's Config subclasses this with `dataset: Literal[name]`."""

    model_config = ConfigDict(extra="forbid")
    dataset: str = Field(description="Name of the dataset (the discriminator of the data section).")
    batch_size: int = Field(64, gt=0, description="Samples per training step.")
    val_fraction: float = Field(
        0.1, ge=0, lt=1, description="Fraction of the training set held out for validation (a seeded permutation).")
    limit: Optional[int] = Field(
        None, gt=0, description="Use only the first N training and N//5 (at least 1) test samples (for tiny runs).")
    shuffle: bool = Field(True, description="Reshuffle the training samples every epoch.")
    drop_last: bool = Field(False, description="Leave out each epoch's last training batch when it is smaller "
                                               "than batch_size (the samples in it change with the shuffle).")


class DataInfo(BaseModel):
    """What a trained model expects and returns, without the data: saved in every checkpoint.

    ``description`` says how raw inputs become model inputs, by ``kind``:
      image   height, width, channels, layout (nchw | flat | sequence), scale (pixels are divided by it),
              normalize ({mean, std} after scaling, or None), polarity (light_on_dark: MNIST's white ink on
              black), fit (mnist: the ink's bounding box scaled into 20x20 and centred by mass; resize: the
              whole picture resized to height x width)
      table   columns (the feature columns' names, in order), label_column
      tokens  vocab (token ids 0..vocab-1)
      series, array   no conversion: arrays of input_shape
    """

    model_config = ConfigDict(extra="forbid")
    task: Task
    num_classes: Optional[int] = None
    class_names: Optional[list[str]] = None  # None: the classes are 0..num_classes-1
    input_shape: tuple[int, ...]   # one sample, no batch axis
    input_dtype: str = "float32"
    target_shape: tuple[int, ...]  # one target: () a class label, (T,) per-position labels, (k,) regression
    description: dict[str, Any] = Field(default_factory=dict)

    def class_name(self, k: int) -> str:
        return self.class_names[k] if self.class_names else str(k)


@dataclass
class Splits:
    """A loaded dataset: numpy arrays with the sample axis first. ``test_x``/``test_y`` may be None.

    Features read from .npy files are ``Rows`` (on disk until indexed); index them, or ``select`` from them.
    """

    train_x: np.ndarray
    train_y: np.ndarray
    val_x: np.ndarray
    val_y: np.ndarray
    test_x: np.ndarray | None
    test_y: np.ndarray | None
    task: Task
    num_classes: int | None
    input_shape: tuple[int, ...]   # one sample, no batch axis
    target_shape: tuple[int, ...]  # one target: () for a class label, (T,) per-position labels, (k,) regression
    class_names: list[str] | None = None
    description: dict[str, Any] | None = None  # see DataInfo

    def info(self) -> DataInfo:
        return DataInfo(task=self.task, num_classes=self.num_classes, class_names=self.class_names,
                        input_shape=self.input_shape, input_dtype=str(self.train_x.dtype),
                        target_shape=self.target_shape, description=self.description or {"kind": "array"})


class Dataset:
    """A registered dataset: ``Dataset(config).load(seed)`` returns Splits; ``fetch`` caches a download."""

    Config: ClassVar[type[DataConfig]]
    type_name: ClassVar[str]

    def __init__(self, config: DataConfig):
        self.config = config

    def load(self, seed: int, *, progress: Progress = None, base_dir: Path | None = None) -> Splits:
        raise NotImplementedError

    @classmethod
    def targets_source(cls, config: DataConfig) -> str:
        """Where the targets come from, for messages: a file and its column or array, or the data set."""
        return f"data set '{cls.type_name}'"

    @classmethod
    def fetch(cls, progress: Progress = None) -> dict:
        raise DataError(f"dataset '{cls.type_name}' has nothing to fetch: it is read from your files or generated")


def seeded_rng(seed: int, stream: str) -> np.random.Generator:
    """A generator for one named use of the run's seed, independent of the model's ``make_rng(seed)``."""
    return np.random.default_rng([seed, zlib.crc32(stream.encode())])


def validation_indices(n: int, val_fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Sorted (train, val) indices of ``n`` samples: the val set is the head of a permutation drawn from ``seed``."""
    perm = seeded_rng(seed, "validation").permutation(n)
    n_val = int(round(n * val_fraction))
    return np.sort(perm[n_val:]), np.sort(perm[:n_val])


def make_splits(config: DataConfig, seed: int, train: tuple[np.ndarray, np.ndarray],
                test: tuple[np.ndarray, np.ndarray] | None, *, task: Task, num_classes: int | None,
                transform: Callable[[np.ndarray], np.ndarray] = lambda x: x, class_names: list[str] | None = None,
                description: dict[str, Any] | None = None) -> Splits:
    """Apply ``limit``, split off the validation set, and ``transform`` each x (e.g. uint8 -> float images).

    Indexing happens before ``transform`` so that only the selected samples are converted.
    """
    (x, y), limit = train, config.limit
    if limit is not None:
        x, y = select(x, slice(limit)), y[:limit]
        if test is not None:
            test = (select(test[0], slice(max(1, limit // 5))), test[1][: max(1, limit // 5)])
    tr, va = validation_indices(len(x), config.val_fraction, seed)
    train_x = transform(select(x, tr))
    return Splits(
        train_x=train_x, train_y=y[tr], val_x=transform(select(x, va)), val_y=y[va],
        test_x=None if test is None else transform(test[0]), test_y=None if test is None else test[1],
        task=task, num_classes=num_classes,
        input_shape=tuple(train_x.shape[1:]), target_shape=tuple(y.shape[1:]), class_names=class_names,
        description={"dataset": config.dataset, **(description or {"kind": "array"})})
